"""Command line: ``python -m aster_nb tasks`` and ``python -m aster_nb run TASK ...``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .task import Task, TaskError, builtin_tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aster_nb", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("tasks", help="list the built-in tasks")
    run = sub.add_parser("run", help="run one worker on a task and print a JSON summary")
    run.add_argument("task", help="a built-in task name or a path to a task folder")
    run.add_argument(
        "--budget",
        type=int,
        default=None,
        help="evaluations to spend (default 300 unless --seconds)",
    )
    run.add_argument("--seconds", type=float, default=None, help="wall-clock budget, optional")
    run.add_argument("--agents", type=int, default=8, help="concurrent agents (default 8)")
    run.add_argument("--archive", choices=["cluster", "grid", "greedy"], default="cluster")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", type=Path, default=Path("runs"), help="folder for the run's store")
    run.add_argument("--model", default="offline", help="model name (default: offline)")
    run.add_argument(
        "--latency", type=float, default=0.0, help="offline model's simulated latency, s"
    )
    run.add_argument(
        "--concurrency", type=int, default=None, help="parallel evaluations (default: cores)"
    )
    run.add_argument(
        "--unordered",
        action="store_true",
        help="apply results as they land (faster, not reproducible)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)

    if args.cmd == "tasks":
        for name in builtin_tasks():
            t = Task.load(name)
            first = next(
                (ln.strip("# ").strip() for ln in t.statement.splitlines() if ln.strip()), ""
            )
            print(f"{name:20s} {first}")
            for a in t.surface_areas:
                print(f"{'':22s}- {a.name}: {a.description}")
        return 0
    try:
        task = Task.load(args.task)
    except TaskError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    problems = [
        f"--{name} must be {rule}, got {value}"
        for name, value, ok, rule in (
            ("budget", args.budget, args.budget is None or args.budget >= 1, ">= 1"),
            ("agents", args.agents, args.agents >= 1, ">= 1"),
            ("seconds", args.seconds, args.seconds is None or args.seconds > 0, "> 0"),
            (
                "concurrency",
                args.concurrency,
                args.concurrency is None or args.concurrency >= 1,
                ">= 1",
            ),
            ("latency", args.latency, args.latency >= 0, ">= 0"),
        )
        if not ok
    ]
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    if args.budget is None and args.seconds is None:
        args.budget = 300
    summary = asyncio.run(_run(task, args))
    print(json.dumps(summary), flush=True)
    return 0


async def _run(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    from .agents import Budget, Worker
    from .executors import LocalExecutor
    from .llm import make_model
    from .program import Program
    from .store import Store

    stamp = time.strftime("%Y%m%d-%H%M%S")
    # The pid keeps two runs started in the same second out of each other's file.
    path = args.out / f"{task.name}-{args.archive}-s{args.seed}-{stamp}-{os.getpid()}.sqlite"
    store = Store(path)
    store.set_meta("config", {k: str(v) for k, v in vars(args).items()})
    model = make_model(args.model, seed=args.seed, latency=args.latency)
    t0 = time.monotonic()
    progress = _Progress(args.budget, t0, quiet=args.quiet)

    try:
        async with LocalExecutor.from_task(task, concurrency=args.concurrency) as ex:
            worker = Worker(
                name="w0",
                task=task,
                model=model,
                executor=ex,
                store=store,
                agents=args.agents,
                archive=args.archive,
                seed=args.seed,
                ordered=not args.unordered,
            )
            worker.bus.subscribe(progress)
            base = Program(code=task.initial_code)
            goal = "Raise the score. Work on any of: " + ", ".join(task.area_names) + "."
            handoff = await worker.run(
                goal, base, Budget(evaluations=args.budget, seconds=args.seconds)
            )
            progress.final()

        archive = worker.archive
        initial = store.get(base.id)
        df = store.history()
        evals = df[df["worker"] == "w0"]
        summary = {
            "task": task.name,
            "initial_score": initial.score if initial is not None else None,
            "best_score": handoff.best.score if handoff.best is not None else None,
            "evaluations": len(evals),
            "failed": int((evals["status"] != "ok").sum()),
            "archive": args.archive,
            "coverage": archive.coverage() if archive is not None else 0.0,
            "cells": archive.cells if archive is not None else 0,
            "store": str(path),
            "attempts": handoff.stats.get("attempts"),
            "seconds": round(time.monotonic() - t0, 2),
        }
    finally:
        store.close()
    return summary


class _Progress:
    """Progress lines on stderr: at most one every 2 s, plus one per new best."""

    def __init__(self, budget: int | None, t0: float, *, quiet: bool) -> None:
        self.budget, self.t0, self.quiet = budget, t0, quiet
        self.evals = self.failed = 0
        self.best: float | None = None
        self.first: float | None = None
        self.last = 0.0

    def __call__(self, event: object) -> None:
        from .events import BestImproved, ProgramEvaluated

        if isinstance(event, ProgramEvaluated):
            if event.n >= 0:
                self.evals += 1
                self.failed += not event.program.ok
            elif event.program.ok:
                self.first = event.program.score
        elif isinstance(event, BestImproved):
            self.best = event.program.score
            self._line(f"new best {self.best:.6g} (program {event.program.id})")
            return
        if time.monotonic() - self.last >= 2.0:
            self._line()

    def _line(self, note: str = "") -> None:
        if self.quiet:
            return
        self.last = time.monotonic()
        dt = self.last - self.t0
        best = "-" if self.best is None else f"{self.best:.6g}"
        fail = self.failed / self.evals if self.evals else 0.0
        print(
            f"[{dt:7.1f}s] evals {self.evals}{'' if self.budget is None else f'/{self.budget}'}  "
            f"best {best}  failed {fail:.0%}  "
            f"{self.evals / max(dt, 1e-9):.1f} evals/s  {note}",
            file=sys.stderr,
            flush=True,
        )

    def final(self) -> None:
        self._line("done")
