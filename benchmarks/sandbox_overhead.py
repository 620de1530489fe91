"""Per-evaluation overhead of the sandbox: warm fork server vs a fresh interpreter, and
what each level of isolation costs.

Prints JSON: latency (mean, p50, p95, in ms) of a trivial program, evaluated one after the
other, through a warm :class:`~aster_nb.sandbox.LocalExecutor` with
``preload=["numpy", "scipy"]`` at each isolation level (``full``: bubblewrap plus
per-evaluation namespaces, no capabilities and seccomp; ``pid-namespace``: the PID
namespace of earlier versions; ``none``: a plain process) and through
:func:`~aster_nb.sandbox.evaluate_cold` (a new interpreter that imports numpy and scipy
per evaluation); then throughput of each with concurrency = number of cores.

    python benchmarks/sandbox_overhead.py [--warm 100] [--cold 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from aster_nb.program import EvalResult
from aster_nb.sandbox import LocalExecutor, evaluate_cold
from aster_nb.task import Limits

PRELOAD = ("numpy", "scipy")
LIMITS = Limits(timeout=30.0, memory_mb=4096)
EVALUATOR = """
import importlib.util

import numpy as np


def evaluate(program_path):
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {"score": float(np.asarray(module.solve()).sum())}
"""


def program(i: int) -> str:
    # distinct text per evaluation, or the executor's cache would answer
    return f"import numpy as np\n\n\ndef solve():\n    return np.arange(10) * {i}\n"


def summarize(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return {
        "n": len(ms),
        "mean_ms": round(statistics.fmean(ms), 2),
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(p95, 2),
    }


async def sequential(
    run: Callable[[str], Awaitable[EvalResult]], n: int, offset: int
) -> dict[str, Any]:
    times, failures = [], 0
    for i in range(n):
        t0 = time.perf_counter()
        result = await run(program(offset + i))
        times.append(time.perf_counter() - t0)
        failures += not result.ok
    return {**summarize(times), "failures": failures}


async def throughput(
    run: Callable[[str], Awaitable[EvalResult]], n: int, offset: int, concurrency: int
) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> EvalResult:
        async with gate:
            return await run(program(offset + i))

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - t0
    return {
        "n": n,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "evals_per_s": round(n / elapsed, 2),
        "failures": sum(not r.ok for r in results),
    }


async def bench(n_warm: int, n_cold: int, evaluator: Path) -> dict[str, Any]:
    cores = os.cpu_count() or 1

    async def cold(code: str) -> EvalResult:
        return await evaluate_cold(code, evaluator=evaluator, limits=LIMITS, preload=PRELOAD)

    out: dict[str, Any] = {
        "cores": cores,
        "preload": list(PRELOAD),
        "python": sys.version.split()[0],
    }
    levels: dict[str, bool | str] = {"full": True, "pid-namespace": "pid-namespace", "none": False}
    out["warm"] = {}
    for name, isolate in levels.items():
        t0 = time.perf_counter()
        async with LocalExecutor(
            evaluator=evaluator, limits=LIMITS, preload=PRELOAD, concurrency=cores, isolate=isolate
        ) as ex:
            level: dict[str, Any] = {
                "server_start_ms": round((time.perf_counter() - t0) * 1000, 1),
                "isolation": ex.stats["isolation"],
                "launcher": ex.stats["launcher"],
                "fork_limit": ex.stats["fork_limit"],
                "preload_import_s": ex.server_info["preload"],
            }
            await ex.submit(program(-1))  # first fork pays for page-table set-up; not counted
            level["sequential"] = await sequential(ex.submit, n_warm, 0)
            level["throughput"] = await throughput(ex.submit, n_warm, 10**6, cores)
        out["warm"][name] = level
    full, bare = out["warm"]["full"]["sequential"], out["warm"]["none"]["sequential"]
    out["isolation_cost_mean_ms"] = round(full["mean_ms"] - bare["mean_ms"], 2)
    out["cold_sequential"] = await sequential(cold, n_cold, 2 * 10**6)
    out["cold_throughput"] = await throughput(cold, n_cold, 3 * 10**6, cores)
    out["speedup_mean"] = round(out["cold_sequential"]["mean_ms"] / full["mean_ms"], 1)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warm", type=int, default=100, help="evaluations through the warm server")
    parser.add_argument("--cold", type=int, default=20, help="evaluations with a fresh interpreter")
    args = parser.parse_args(argv)
    if args.warm < 1 or args.cold < 1:
        parser.error("--warm and --cold must be at least 1")
    with tempfile.TemporaryDirectory(prefix="aster_nb-bench-") as tmp:
        evaluator = Path(tmp) / "evaluator.py"
        evaluator.write_text(EVALUATOR)
        result = asyncio.run(bench(args.warm, args.cold, evaluator))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
