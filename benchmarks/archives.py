"""Cluster-Elites vs grid MAP-Elites vs greedy on the same budget (the seed's comparison).

For each task, archive and seed, one worker with the offline model spends the same
evaluation budget from the task's initial program. Reported per task and archive:

* ``final_best``: mean and std over seeds of the best score found;
* ``evals_to_target``: evaluations until the best reached the target (median over the seeds
  that reached it, and how many did). Two targets: the task's own ``target`` and a common
  relative one, 90% of the way from the initial score to the best score any run found;
* ``own_coverage``: the archive's own coverage (filled cells / cells; not comparable across
  archives, since their cells differ);
* ``common_coverage``: the fraction of one shared 10x10 grid over the task's feature bounds
  that the run's valid programs reached, which is comparable;
* wall seconds.

Prints JSON and, with ``--plot``, writes best-so-far curves (mean and range over seeds).

    python benchmarks/archives.py [--seeds 5] [--budget 400] [--agents 8] [--plot out.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from aster_nb.agents import Budget, Worker
from aster_nb.events import Event, ProgramEvaluated
from aster_nb.executors import LocalExecutor
from aster_nb.llm import OfflineModel
from aster_nb.program import Program
from aster_nb.store import Store
from aster_nb.task import Task

ARCHIVES = ("cluster", "grid", "greedy")


async def one_run(
    task: Task, ex: LocalExecutor, archive: str, seed: int, budget: int, agents: int, tmp: Path
) -> dict[str, Any]:
    store = Store(tmp / f"{task.name}-{archive}-{seed}.sqlite")
    curve: list[float] = []  # best score after each evaluation, in attempt order
    feats: list[tuple[float, ...]] = []
    best = -np.inf

    def on(e: Event) -> None:
        nonlocal best
        if isinstance(e, ProgramEvaluated) and e.n >= 0:
            p = e.program
            if p.ok:
                best = max(best, p.score)
                if p.result.features is not None:
                    feats.append(p.result.features)
            curve.append(best)

    w = Worker(
        name="w0",
        task=task,
        model=OfflineModel(seed=seed),
        executor=ex,
        store=store,
        agents=agents,
        archive=archive,
        seed=seed,
    )
    w.bus.subscribe(on)
    t0 = time.perf_counter()
    base = Program(code=task.initial_code)
    h = await w.run(
        "Raise the score. Work on any of: " + ", ".join(task.area_names),
        base,
        Budget(evaluations=budget),
    )
    secs = time.perf_counter() - t0
    store.close()
    return {
        "seed": seed,
        "initial": h.stats["base_score"],
        "best": h.best.score,
        "curve": curve,
        "features": feats,
        "own_coverage": w.archive.coverage(),
        "cells": w.archive.cells,
        "seconds": secs,
    }


def evals_to(curve: list[float], target: float) -> int | None:
    for i, b in enumerate(curve):
        if b >= target:
            return i + 1
    return None


def common_coverage(
    feats: list[tuple[float, ...]], bounds: tuple[tuple[float, float], ...], bins: int = 10
) -> float:
    if not feats or not bounds:
        return float("nan")
    x = np.asarray(feats, dtype=float)[:, : len(bounds)]
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    idx = np.clip(((x - lo) / (hi - lo) * bins).astype(int), 0, bins - 1)
    return len({tuple(r) for r in idx}) / bins ** len(bounds)


def summarize(task: Task, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    initial = runs[ARCHIVES[0]][0]["initial"]
    top = max(r["best"] for rs in runs.values() for r in rs)
    relative = initial + 0.9 * (top - initial)
    out: dict[str, Any] = {
        "initial": initial,
        "task_target": task.target,
        "relative_target": relative,
        "archives": {},
    }
    for name, rs in runs.items():
        row: dict[str, Any] = {
            "final_best_mean": statistics.fmean(r["best"] for r in rs),
            "final_best_std": statistics.pstdev(r["best"] for r in rs),
            "final_best_max": max(r["best"] for r in rs),
            "own_coverage_mean": statistics.fmean(r["own_coverage"] for r in rs),
            "cells_mean": statistics.fmean(r["cells"] for r in rs),
            "common_coverage_mean": statistics.fmean(
                common_coverage(r["features"], task.feature_bounds or ()) for r in rs
            ),
            "seconds_mean": statistics.fmean(r["seconds"] for r in rs),
        }
        for label, target in (("task_target", task.target), ("relative_target", relative)):
            if target is None:
                continue
            hits = [e for r in rs if (e := evals_to(r["curve"], target)) is not None]
            row[f"evals_to_{label}_median"] = statistics.median(hits) if hits else None
            row[f"reached_{label}"] = f"{len(hits)}/{len(rs)}"
        out["archives"][name] = row
    return out


def plot(results: dict[str, dict[str, list[dict[str, Any]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (task, runs) in zip(axes[0], results.items(), strict=True):
        for name, rs in runs.items():
            n = min(len(r["curve"]) for r in rs)
            c = np.array([r["curve"][:n] for r in rs])
            x = np.arange(1, n + 1)
            ax.plot(x, c.mean(0), label=name)
            ax.fill_between(x, c.min(0), c.max(0), alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("best score")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["circle_packing", "erdos_min_overlap"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=400)
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()

    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    summary: dict[str, Any] = {
        "budget": args.budget,
        "seeds": args.seeds,
        "agents": args.agents,
        "tasks": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tasks:
            task = Task.load(name)
            results[name] = {a: [] for a in ARCHIVES}
            for archive in ARCHIVES:
                for seed in range(args.seeds):
                    # A fresh executor per run: no cache shared between runs, so timings are fair.
                    async with LocalExecutor.from_task(task) as ex:
                        r = await one_run(
                            task, ex, archive, seed, args.budget, args.agents, Path(tmp)
                        )
                    results[name][archive].append(r)
                    print(
                        f"{name} {archive} seed {seed}: best {r['best']:.6g} in {r['seconds']:.1f}s",
                        file=sys.stderr,
                    )
            summary["tasks"][name] = summarize(task, results[name])
    if args.plot:
        plot(results, args.plot)
        summary["plot"] = str(args.plot)
    text = json.dumps(summary, indent=1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    asyncio.run(main())
