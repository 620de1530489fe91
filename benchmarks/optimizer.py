"""optimizer_search with the offline model: what a search finds, against tuned AdamW.

For each seed, one CLI run (``python -m aster_nb run optimizer_search``: 2 workers, 3
rounds, 4 agents, the offline model) spends ``--budget`` evaluations from the task's
initial program (AdamW written out, lr 2e-3). Then the initial program, the run's best and
``torch.optim.AdamW`` at lr 1e-2 (the issue's tuned baseline) are each re-evaluated at
model/batch seeds 0, 1 and 2 in the sandbox. Reported:

* per run: the best score found (seed 0, as the search saw it) and the best program's
  validation loss re-evaluated over the 3 seeds (mean ± std);
* ``adamw``: AdamW lr 1e-2 at the same shape and step count, mean ± std over the 3 seeds
  (the issue measured 1.941 ± 0.014 at 800 steps; the noise an improvement must clear);
* ``eval_seconds``: seconds one evaluation took in the sandbox (mean, p95), and each run's
  ``wall_s``.

    python benchmarks/optimizer.py [--seeds 3] [--budget 300] [--runs runs.jsonl] [--json out.json]

Each finished run (and the baseline) is appended to ``--runs`` as a JSON line, and a rerun
with the same file skips what is there. A run cut short (a session ends: one seed at 300
evaluations takes hours on 2 cores) is continued from its store in ``--work``: the round it was in goes on
with the evaluations it had stored counted against its budget. Needs
``tinyshakespeare.txt`` (``ASTER_TEXT_DATA``, default ``../shared/data/text``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a plain checkout too

from aster_nb.sandbox import LocalExecutor  # noqa: E402
from aster_nb.store import Store  # noqa: E402
from aster_nb.task import Task  # noqa: E402

SEEDS = (0, 1, 2)
SECONDS: list[float] = []  # of every re-evaluation, for seconds per evaluation
ADAMW = """import torch


def make_optimizer(params):
    return torch.optim.AdamW(params, lr=1e-2)
"""


async def _reevaluate(task: Task, code: str, seeds: tuple[int, ...]) -> list[float]:
    """Validation losses of ``code`` at each seed (passed to the evaluator as an argument).
    Each evaluation's seconds go to ``SECONDS``."""
    losses = []
    async with LocalExecutor.from_task(task, concurrency=1) as ex:
        for seed in seeds:
            r = await ex.submit(code, seed=seed)
            if not r.ok:
                raise RuntimeError(f"seed {seed}: {r.status}: {r.error}")
            losses.append(r.metrics["val_loss"])
            SECONDS.append(r.seconds)
    return losses


def _mean_std(values: list[float]) -> dict[str, Any]:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 4), "std": round(sd, 4), "values": values}


def one_run(task: Task, seed: int, budget: int, work: Path) -> dict[str, Any]:
    """One seed's CLI run in ``work/budget<B>-seed<S>``; a store left there by an
    interrupted benchmark is continued (``python -m aster_nb resume``: a round cut in the
    middle counts what it had stored; the evaluations in flight at the cut are run again,
    so ``evaluations`` may pass the budget by a few and is reported as counted)."""
    folder = work / f"budget{budget}-seed{seed}"
    stores = sorted(folder.glob("*.sqlite"))
    if len(stores) > 1:
        raise RuntimeError(f"{folder} holds {len(stores)} run stores; expected one: remove it")
    if stores:
        cmd = [sys.executable, "-m", "aster_nb", "resume", str(stores[0]), "--quiet"]
    else:
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "aster_nb", "run", "optimizer_search", "--workers", "2"]
        cmd += ["--rounds", "3", "--agents", "4", "--budget", str(budget), "--seed", str(seed)]
        cmd += ["--out", str(folder), "--quiet"]
    walls = folder / "wall_seconds.txt"  # one line per session that worked on this run
    t0 = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=8 * 3600)
    finally:
        with walls.open("a") as f:
            f.write(f"{time.monotonic() - t0:.1f}\n")
    wall = sum(float(x) for x in walls.read_text().split())
    if done.returncode != 0:
        raise RuntimeError(f"seed {seed}: the run failed:\n{done.stderr[-3000:]}")
    s = json.loads(done.stdout.strip().splitlines()[-1])
    store = Store(s["store"])
    seconds = sorted(p.result.seconds for p in store.programs() if p.result)
    best = store.best()
    assert best is not None
    return {
        "kind": "run",
        "seed": seed,
        "budget": budget,
        "evaluations": s["evaluations"],
        "failed": s["failed"],
        "initial_val_loss": s["initial_metrics"]["val_loss"],
        "best_val_loss": s["best_metrics"]["val_loss"],
        "best_reevaluated": _mean_std(asyncio.run(_reevaluate(task, best.code, SEEDS))),
        "best_code": best.code,
        "eval_seconds": {
            "mean": round(statistics.fmean(seconds), 2),
            "p95": round(seconds[int(0.95 * (len(seconds) - 1))], 2),
        },
        "wall_s": round(wall, 1),
    }


def _done(runs: Path | None) -> list[dict[str, Any]]:
    if runs is None or not runs.is_file():
        return []
    return [json.loads(line) for line in runs.read_text().splitlines() if line.strip()]


def _append(runs: Path | None, row: dict[str, Any]) -> None:
    if runs is not None:
        with runs.open("a") as f:
            f.write(json.dumps(row) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--runs", type=Path, default=None, help="JSON lines of finished parts")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--work",
        type=Path,
        default=Path.home() / ".cache" / "aster_nb" / "bench-optimizer",
        help="where each seed's run store is kept until its row is written (resumable)",
    )
    args = ap.parse_args()
    # a stop from outside (timeout, kill) still writes this session's wall time
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    task = Task.load("optimizer_search")
    rows = _done(args.runs)
    base = next((r for r in rows if r["kind"] == "baseline"), None)
    if base is None:
        base = {
            "kind": "baseline",
            "adamw": _mean_std(asyncio.run(_reevaluate(task, ADAMW, SEEDS))),
            "initial": _mean_std(asyncio.run(_reevaluate(task, task.initial_code, SEEDS))),
            "seconds_per_evaluation": _mean_std([round(x, 2) for x in SECONDS]),
        }
        _append(args.runs, base)
    runs = {r["seed"]: r for r in rows if r["kind"] == "run" and r["budget"] == args.budget}
    for seed in range(args.seeds):
        if seed not in runs:
            runs[seed] = one_run(task, seed, args.budget, args.work)
            _append(args.runs, runs[seed])
            # its row is written: a later benchmark must not take this store for its own
            shutil.rmtree(args.work / f"budget{args.budget}-seed{seed}", ignore_errors=True)
    done = [runs[s] for s in range(args.seeds)]
    best = [r["best_reevaluated"]["mean"] for r in done]
    result = {
        "task": "optimizer_search",
        "steps": int(os.environ.get("ASTER_OPT_STEPS") or 400),
        "budget": args.budget,
        "seeds": args.seeds,
        "adamw_lr1e-2": {k: base["adamw"][k] for k in ("mean", "std")},
        "initial": {k: base["initial"][k] for k in ("mean", "std")},
        "best_reevaluated": _mean_std(best) if best else None,
        "seconds_per_evaluation": {k: base["seconds_per_evaluation"][k] for k in ("mean", "std")},
        "eval_seconds_mean": round(statistics.fmean(r["eval_seconds"]["mean"] for r in done), 2)
        if done
        else None,
        "runs": [{k: v for k, v in r.items() if k != "best_code"} for r in done],
        "best_code_seed0": done[0]["best_code"] if done else None,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
