"""What noisy, slow evaluations cost and save: reports, confirmation, early stopping.

Prints JSON:

* ``reports``: an evaluator calling ``report(step, {"loss": x})`` ``--reports`` times as fast
  as it can: the evaluation's wall time with a listener (every report forwarded to the
  client), without one (reports read and checked by the server, not forwarded) and for
  the same evaluator reporting nothing; reports delivered per second.
* ``confirm``: a would-be best re-evaluated on 2 more seeds, each run ``--run`` seconds,
  with ``concurrency=2``: the wall time of the confirmation against the 2 runs' sum.
* ``early_stop``: a clearly worse run of ``--run`` seconds stopped by a listener at a quarter
  of its steps: its wall time against the full run's.

    python benchmarks/noise.py [--reports 10000] [--run 2.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from aster_nb.sandbox import LocalExecutor
from aster_nb.task import Limits

EVALUATOR = """
import importlib.util
import time


def evaluate(program_path, *, seed=None, report=None):
    spec = importlib.util.spec_from_file_location("program", program_path)
    program = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(program)
    steps, pause = int(program.STEPS), float(program.PAUSE)
    for i in range(steps):
        if program.REPORT:
            report(i, {"loss": 1.0 / (i + 1)})
        if pause:
            time.sleep(pause)
    return {"score": 1.0 + 0.01 * (seed or 0)}
"""


def program(*, steps: int, pause: float, report: bool) -> str:
    return f"STEPS = {steps}\nPAUSE = {pause}\nREPORT = {report}\n"


async def _timed(ex: LocalExecutor, code: str, **kw: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    r = await ex.submit(code, **kw)
    return time.perf_counter() - t0, r


async def main(n_reports: int, run: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "evaluator.py"
        path.write_text(EVALUATOR)
        async with LocalExecutor(
            evaluator=path, limits=Limits(timeout=120), concurrency=2, noisy=True
        ) as ex:
            await ex.start()
            out: dict[str, Any] = {}
            busy = program(steps=n_reports, pause=0.0, report=True)
            got: list[int] = []
            with_listener, r1 = await _timed(
                ex, busy, seed=1, listener=lambda s, v: got.append(s) or False
            )
            without, r2 = await _timed(ex, busy, seed=2)
            silent, _ = await _timed(ex, program(steps=n_reports, pause=0.0, report=False), seed=3)
            assert r1.ok and r2.ok, (r1.error, r2.error)
            out["reports"] = {
                "reports": n_reports,
                "delivered": len(got),
                "seconds_with_listener": round(with_listener, 4),
                "seconds_without_listener": round(without, 4),
                "seconds_not_reporting": round(silent, 4),
                "delivered_per_second": round(len(got) / with_listener),
            }

            steps = 20
            slow = program(steps=steps, pause=run / steps, report=True)
            t0 = time.perf_counter()
            runs = await asyncio.gather(*(ex.submit(slow, seed=s) for s in (11, 12)))
            wall = time.perf_counter() - t0
            out["confirm"] = {
                "runs": 2,
                "seconds_each": [round(r.seconds, 3) for r in runs],
                "wall_seconds": round(wall, 3),
                "speedup_vs_serial": round(sum(r.seconds for r in runs) / wall, 2),
            }

            full, _ = await _timed(ex, slow, seed=21)
            stopped, r = await _timed(ex, slow, seed=22, listener=lambda s, v: s >= steps // 4)
            out["early_stop"] = {
                "status": str(r.status),
                "stopped_at_step": r.metrics.get("step"),
                "full_seconds": round(full, 3),
                "stopped_seconds": round(stopped, 3),
                "saved_share": round(1 - stopped / full, 3),
            }
            return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=10_000)
    ap.add_argument("--run", type=float, default=2.0, help="seconds one slow run takes")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main(args.reports, args.run)), indent=2))
