"""Cluster-Elites vs grid MAP-Elites vs greedy on the same budget (the seed's comparison).

For each task, archive and seed, one worker with the offline model spends the same
evaluation budget from the task's initial program. Each archive describes programs with
the task's descriptor (``--descriptor`` overrides it: ``features``, ``metrics``,
``embedding``, ``code``) and picks parents with ``--selection`` (default: the archives'
default, ``adaptive``). Reported per task and archive:

* ``final_best``: mean and std over seeds of the best score found; ``best_at_200`` too;
* ``evals_to_target``: evaluations until the best reached the target (median over the seeds
  that reached it, and how many did). Targets: the task's own ``target``, 90% of the way
  from the initial score to the best score any run found, and -- Aster's measure of
  sampling efficiency -- the grid's median final score, with a bootstrap 95% interval of
  the median over seeds (a seed that never reached it counts as the budget, censored);
* ``cells``: the archive's cells at the end, ``filled``: those holding an elite (the plot's
  bottom row follows them over the run: Aster's picture of empty cells), and
  ``multi_cell_from``: the first evaluation after which more than one cell always held an
  elite (``None``: it never did);
* ``last_gain``: per seed, the evaluation of the best's last raise by more than 0.1% of
  the run's whole gain (near the budget: the run was still climbing when it stopped, so
  exploring instead could not have paid back within it);
* ``vs_greedy``: paired by seed, the mean difference of the final best from greedy's, with
  a bootstrap 95% interval (runs that share a seed share their start and model);
* ``own_coverage``: the archive's own coverage (filled cells / cells; not comparable across
  archives, since their cells differ);
* ``common_coverage``: the fraction of one shared 10x10 grid over the task's feature bounds
  that the run's valid programs reached (tasks with features only);
* wall seconds.

Prints JSON and, with ``--plot``, writes best-so-far curves (mean and range over seeds).

    python benchmarks/archives.py [--tasks ...] [--seeds 10] [--budget 1000] [--agents 8]
                                  [--latency 0] [--archives cluster grid greedy]
                                  [--descriptor D] [--selection S] [--jobs 2]
                                  [--runs runs.jsonl] [--plot out.png] [--json out.json]

``--latency`` gives the offline model a reply latency in seconds (64 agents at 1 s is the
shape of a run with a real model, where agents work concurrently). With the default ordered
scheduling every run is reproducible from its seed whatever the timing, so ``--jobs`` runs
seeds in parallel processes without changing a score.

The default tasks are circle packing with its features and from a bare start without any,
Erdős' minimum overlap, the deceptive trap and ``protein_scoring``, which needs the
ProteinGym folder (``ASTER_PROTEINGYM``, default ``../shared/data/proteingym``). Each task's
initial program is evaluated once before any run (:func:`preflight`): a task that cannot run
here stops the benchmark with the reason instead of spending its runs on failures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from aster_nb.agents import Budget, Worker
from aster_nb.archive import Archive, make_archive
from aster_nb.events import Event, ProgramEvaluated
from aster_nb.features import resolve_descriptor
from aster_nb.llm import OfflineModel
from aster_nb.program import Program
from aster_nb.sandbox import LocalExecutor
from aster_nb.store import Store
from aster_nb.task import Task
from aster_nb.taskfile import TaskError
from aster_nb.taskstart import check_start

ARCHIVES = ("cluster", "grid", "greedy")


def build_archive(
    task: Task, kind: str, seed: int, descriptor: str | None, selection: str | None
) -> Archive:
    """The archive a worker of this task would build, with the benchmark's overrides."""
    desc = resolve_descriptor(descriptor or task.descriptor, has_features=bool(task.feature_names))
    features = desc == "features"
    kw: dict[str, Any] = {} if kind == "greedy" or selection is None else {"selection": selection}
    return make_archive(
        kind,
        dims=len(task.feature_names) if features else None,
        seed=seed,
        bounds=task.feature_bounds if features else None,
        descriptor=desc,
        **kw,
    )


async def one_run(
    task: Task,
    ex: LocalExecutor,
    archive: Archive,
    seed: int,
    budget: int,
    agents: int,
    tmp: Path,
    latency: float = 0.0,
) -> dict[str, Any]:
    store = Store(tmp / f"{task.name}-{archive.name}-{seed}.sqlite")
    curve: list[float] = []  # best score after each evaluation, in attempt order
    cells: list[int] = []  # cells holding an elite after each evaluation (filled cells)
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
            cells.append(len(archive))

    w = Worker(
        name="w0",
        task=task,
        model=OfflineModel(seed=seed, latency=latency),
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
        "task": task.name,
        "archive": archive.name,
        "seed": seed,
        "initial": h.stats["base_score"],
        "best": h.best.score,
        "curve": curve,
        "cells_curve": cells,
        "features": feats,
        "own_coverage": archive.coverage(),
        "cells": archive.cells,
        "filled": len(archive),
        "multi_cell_from": multi_cell_from(cells),
        "seconds": secs,
    }


def multi_cell_from(cells: list[int]) -> int | None:
    """The first evaluation after which the archive always had more than one cell."""
    if not cells or cells[-1] <= 1:
        return None
    last_single = max((i for i, c in enumerate(cells) if c <= 1), default=-1)
    return last_single + 2


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


def last_gain(curve: list[float], share: float = 1e-3) -> int | None:
    """The evaluation (1-based) at which the best last rose by more than ``share`` of the
    run's whole gain (first valid score to final best); ``None`` if it never rose."""
    c = np.asarray(curve, dtype=float)
    finite = np.isfinite(c)
    if not finite.any():
        return None
    c = c[int(np.argmax(finite)) :]
    offset = len(curve) - len(c)
    gain = c[-1] - c[0]
    if gain <= 0:
        return None
    raises = np.nonzero(np.diff(c) > share * gain)[0]
    return int(raises[-1]) + 2 + offset if len(raises) else None


def bootstrap(
    values: list[float], stat=np.median, *, reps: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """``stat`` (``np.median`` or ``np.mean``) of ``values`` and a 95% percentile-bootstrap
    interval for it."""
    x = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    stats = stat(rng.choice(x, size=(reps, len(x)), replace=True), axis=1)
    return float(stat(x)), float(np.quantile(stats, 0.025)), float(np.quantile(stats, 0.975))


def summarize(task: Task, runs: dict[str, list[dict[str, Any]]], budget: int) -> dict[str, Any]:
    initial = next(iter(runs.values()))[0]["initial"]
    top = max(r["best"] for rs in runs.values() for r in rs)
    relative = initial + 0.9 * (top - initial)
    grid_median = statistics.median(r["best"] for r in runs["grid"]) if "grid" in runs else None
    out: dict[str, Any] = {
        "initial": initial,
        "task_target": task.target,
        "relative_target": relative,
        "grid_median_final": grid_median,
        "archives": {},
    }
    for name, rs in runs.items():
        multi = [r["multi_cell_from"] for r in rs]
        row: dict[str, Any] = {
            "final_best_mean": statistics.fmean(r["best"] for r in rs),
            "final_best_std": statistics.pstdev(r["best"] for r in rs),
            "final_best_max": max(r["best"] for r in rs),
            "best_at_200_mean": statistics.fmean(
                r["curve"][min(200, len(r["curve"])) - 1] for r in rs
            ),
            "own_coverage_mean": statistics.fmean(r["own_coverage"] for r in rs),
            "cells_mean": statistics.fmean(r["cells"] for r in rs),
            "filled_mean": statistics.fmean(r["filled"] for r in rs),
            "multi_cell_from": multi if any(m is not None for m in multi) else None,
            "common_coverage_mean": statistics.fmean(
                common_coverage(r["features"], task.feature_bounds) for r in rs
            )
            if task.feature_bounds
            else None,
            "seconds_mean": statistics.fmean(r["seconds"] for r in rs),
            "last_gain": [last_gain(r["curve"]) for r in rs],
        }
        if name != "greedy" and "greedy" in runs:
            greedy = {r["seed"]: r["best"] for r in runs["greedy"]}
            diffs = [r["best"] - greedy[r["seed"]] for r in rs if r["seed"] in greedy]
            if diffs:
                mean, lo, hi = bootstrap(diffs, np.mean)
                row["vs_greedy"] = {"mean": mean, "ci95": [lo, hi], "seeds": len(diffs)}
        for label, target in (
            ("task_target", task.target),
            ("relative_target", relative),
            ("grid_median", grid_median),
        ):
            if target is None:
                continue
            hits = [e for r in rs if (e := evals_to(r["curve"], target)) is not None]
            row[f"evals_to_{label}_median"] = statistics.median(hits) if hits else None
            row[f"reached_{label}"] = f"{len(hits)}/{len(rs)}"
            if label == "grid_median":  # censored at the budget: a seed that never got there
                censored = [evals_to(r["curve"], target) or budget for r in rs]
                med, lo, hi = bootstrap(censored)
                row["evals_to_grid_median"] = {"median": med, "ci95": [lo, hi]}
        out["archives"][name] = row
    return out


def plot(results: dict[str, dict[str, list[dict[str, Any]]]], path: Path) -> None:
    """Best so far (top row) and the archive's cells (bottom row) against evaluations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    fig, axes = plt.subplots(2, n, figsize=(5 * n, 7), squeeze=False, sharex="col")
    for col, (task, runs) in enumerate(results.items()):
        top, bottom = axes[0][col], axes[1][col]
        for name, rs in runs.items():
            steps = min(len(r["curve"]) for r in rs)
            x = np.arange(1, steps + 1)
            c = np.array([r["curve"][:steps] for r in rs])
            c = np.where(np.isfinite(c), c, np.nan)
            (line,) = top.plot(x, np.nanmean(c, 0), label=name)
            top.fill_between(
                x, np.nanmin(c, 0), np.nanmax(c, 0), alpha=0.15, color=line.get_color()
            )
            cells = np.array([r["cells_curve"][:steps] for r in rs], dtype=float)
            bottom.plot(x, cells.mean(0), label=name, color=line.get_color())
        top.set_title(task)
        top.set_ylabel("best score (mean, range over seeds)")
        bottom.set_ylabel("cells holding an elite (mean)")
        bottom.set_xlabel("evaluations")
        bottom.set_yscale("log")
        top.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run_job(job: tuple[str, str, int, argparse.Namespace]) -> dict[str, Any]:
    """One (task, archive, seed) run in its own process, with its own executor and store."""
    name, archive, seed, args = job

    async def go() -> dict[str, Any]:
        task = Task.load(name)
        arch = build_archive(task, archive, seed, args.descriptor, args.selection)
        with tempfile.TemporaryDirectory() as tmp:
            # A fresh executor per run: no cache shared between runs, so timings are fair.
            async with LocalExecutor.from_task(task) as ex:
                return await one_run(
                    task, ex, arch, seed, args.budget, args.agents, Path(tmp), args.latency
                )

    return asyncio.run(go())


def preflight(names: list[str]) -> None:
    """Exit with the reason when a task cannot run here (a missing package or data folder),
    before any of its runs spends a budget on an evaluator that fails every program."""

    async def check(name: str) -> None:
        task = Task.load(name)
        async with LocalExecutor.from_task(task) as ex:
            await check_start(task, ex)

    for name in names:
        try:
            asyncio.run(check(name))
        except TaskError as e:
            sys.exit(
                f"archives.py: task {name!r} cannot run here: {e} (or leave it out of --tasks)"
            )


def config_key(summary: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs of a (task, archive, seed) the same run."""
    return {k: summary[k] for k in ("budget", "agents", "latency", "descriptor", "selection")}


def load_runs(path: Path, summary: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Finished runs kept in ``path`` (JSON lines) under this benchmark's configuration."""
    if not path.exists():
        return {}
    key = config_key(summary)
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.pop("config") == key:
            out[row["task"], row["archive"], row["seed"]] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--tasks",
        nargs="+",
        default=[
            "circle_packing",
            "circle_packing_bare",
            "erdos_min_overlap",
            "deceptive_trap",
            "protein_scoring",
        ],
    )
    ap.add_argument("--archives", nargs="+", default=list(ARCHIVES), choices=ARCHIVES)
    ap.add_argument("--descriptor", default=None, help="override the tasks' descriptor")
    ap.add_argument("--selection", default=None, help="override the archives' parent selection")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--latency", type=float, default=0.0, help="offline model latency (s)")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel processes")
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    ap.add_argument(
        "--runs",
        type=Path,
        default=None,
        help="JSON lines file: each finished run is appended; runs already in it are reused",
    )
    args = ap.parse_args()

    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    summary: dict[str, Any] = {
        "budget": args.budget,
        "seeds": args.seeds,
        "agents": args.agents,
        "latency": args.latency,
        "descriptor": args.descriptor,
        "selection": args.selection,
        "tasks": {},
    }
    jobs = [
        (name, archive, seed, args)
        for name in args.tasks
        for archive in args.archives
        for seed in range(args.seeds)
    ]
    done = load_runs(args.runs, summary) if args.runs else {}
    todo = [j for j in jobs if j[:3] not in done]
    preflight(sorted({j[0] for j in todo}))
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for (name, archive, seed, _), r in zip(todo, pool.map(run_job, todo), strict=True):
            done[name, archive, seed] = r
            if args.runs:  # kept as it lands: a long benchmark cut short loses no finished run
                with args.runs.open("a") as f:
                    f.write(json.dumps({"config": config_key(summary), **r}) + "\n")
            best = "none valid" if r["best"] is None else f"{r['best']:.6g}"
            print(
                f"{name} {archive} seed {seed}: best {best} in {r['seconds']:.1f}s", file=sys.stderr
            )
    for name, archive, seed, _ in jobs:
        results.setdefault(name, {a: [] for a in args.archives})[archive].append(
            done[name, archive, seed]
        )
    for name in args.tasks:
        summary["tasks"][name] = summarize(Task.load(name), results[name], args.budget)
    if args.plot:
        plot(results, args.plot)
        summary["plot"] = str(args.plot)
    text = json.dumps(summary, indent=1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
