"""Command line: ``python -m aster_nb tasks | run TASK ... | resume STORE ...``."""

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
    run = sub.add_parser("run", help="run planners and workers on a task; ends with a JSON line")
    run.add_argument("task", help="a built-in task name or a path to a task folder")
    run.add_argument(
        "--budget",
        type=int,
        default=None,
        help="evaluations for all workers over all rounds (default 300 unless --seconds)",
    )
    run.add_argument("--seconds", type=float, default=None, help="wall seconds per round, optional")
    run.add_argument("--rounds", type=int, default=1, help="planner rounds (default 1)")
    run.add_argument("--planners", type=int, default=1, help="planners (default 1)")
    run.add_argument("--workers", type=int, default=1, help="workers per planner (default 1)")
    run.add_argument(
        "--agents", type=int, default=8, help="concurrent agents per worker (default 8)"
    )
    run.add_argument("--archive", choices=["cluster", "grid", "greedy"], default="cluster")
    run.add_argument(
        "--agent",
        choices=["edit", "tools"],
        default="edit",
        help="edit: one SEARCH/REPLACE reply per attempt; tools: read/edit/evaluate/submit session",
    )
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", type=Path, default=Path("runs"), help="folder for the run's store")
    run.add_argument(
        "--model",
        default="offline",
        help="agents' model: offline (default, no key) or a Claude model name; the SDK reads "
        "ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL",
    )
    run.add_argument("--planner-model", default=None, help="planners' model (default: --model)")
    run.add_argument("--max-usd", type=float, default=None, help="spending cap in dollars")
    run.add_argument("--max-tokens", type=int, default=None, help="spending cap in tokens")
    run.add_argument(
        "--latency", type=float, default=0.0, help="offline model's simulated latency, s"
    )
    run.add_argument(
        "--concurrency", type=int, default=None, help="parallel evaluations (default: cores)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    res = sub.add_parser("resume", help="continue a stored run; ends with a JSON line")
    res.add_argument("store", type=Path, help="the run's .sqlite file")
    res.add_argument("--rounds", type=int, default=None, help="rounds to add (default: the rest)")
    res.add_argument("--concurrency", type=int, default=None)
    res.add_argument("--quiet", action="store_true")
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
    if args.cmd == "resume":
        if not args.store.is_file():
            print(f"error: no run store at {args.store}", file=sys.stderr)
            return 2
        if args.rounds is not None and args.rounds < 0:
            print(f"error: --rounds must be >= 0, got {args.rounds}", file=sys.stderr)
            return 2
        print(json.dumps(asyncio.run(_resume(args))), flush=True)
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
            ("workers", args.workers, args.workers >= 1, ">= 1"),
            ("planners", args.planners, args.planners >= 1, ">= 1"),
            ("rounds", args.rounds, args.rounds >= 1, ">= 1"),
            ("seconds", args.seconds, args.seconds is None or args.seconds > 0, "> 0"),
            (
                "concurrency",
                args.concurrency,
                args.concurrency is None or args.concurrency >= 1,
                ">= 1",
            ),
            ("latency", args.latency, args.latency >= 0, ">= 0"),
            ("max-usd", args.max_usd, args.max_usd is None or args.max_usd > 0, "> 0"),
            ("max-tokens", args.max_tokens, args.max_tokens is None or args.max_tokens > 0, "> 0"),
        )
        if not ok
    ]
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    if args.budget is None and args.seconds is None:
        args.budget = 300
    print(json.dumps(asyncio.run(_run(task, args))), flush=True)
    return 0


async def _run(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    from .run import Run

    n_workers = args.planners * args.workers
    per_worker = None if args.budget is None else max(1, args.budget // (args.rounds * n_workers))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # The pid keeps two runs started in the same second out of each other's file.
    path = args.out / f"{task.name}-{args.archive}-s{args.seed}-{stamp}-{os.getpid()}.sqlite"
    run = await Run.create(
        task,
        path=path,
        planners=args.planners,
        workers=args.workers,
        agents=args.agents,
        archive=args.archive,
        seed=args.seed,
        model=args.model,
        latency=args.latency,
        agent=args.agent,
        planner_model=args.planner_model,
        max_usd=args.max_usd,
        max_tokens=args.max_tokens,
        evaluations=per_worker,
        seconds=args.seconds,
        concurrency=args.concurrency,
    )
    run.store.set_meta("rounds_target", args.rounds)
    return await _drive(run, args.rounds, quiet=args.quiet)


async def _resume(args: argparse.Namespace) -> dict[str, Any]:
    from .run import Run

    run = await Run.open(args.store, concurrency=args.concurrency)
    rounds = args.rounds
    if rounds is None:
        rounds = max(0, int(run.store.meta("rounds_target", 1)) - run.rounds_done)
    else:
        run.store.set_meta("rounds_target", run.rounds_done + rounds)
    return await _drive(run, rounds, quiet=args.quiet)


async def _drive(run: Any, rounds: int, *, quiet: bool) -> dict[str, Any]:
    progress = _Progress(run, quiet=quiet)
    run.bus.subscribe(progress)
    if not quiet:
        print(f"store: {run.store.path}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        for _ in range(rounds):
            result = await run.step()
            progress.round_line(result)
            if run.control.stopping:  # a spending cap was reached: the run ends cleanly
                progress.note(f"stopped: {run.status.reason}")
                break
        return _summary(run, time.monotonic() - t0)
    finally:
        await run.close()


def _summary(run: Any, seconds: float) -> dict[str, Any]:
    df = run.history()
    made = df[df["worker"] != ""]
    initial = run.store.get(
        __import__("aster_nb.program", fromlist=["code_hash"]).code_hash(run.task.initial_code)
    )
    archives = [a for a in run.archives.values() if a is not None]
    best = run.best
    return {
        "task": run.task.name,
        "initial_score": initial.score if initial is not None else None,
        "best_score": best.score if best is not None else None,
        "evaluations": len(made),
        "failed": int((made["status"] != "ok").sum()),
        "archive": run.cfg.archive,
        "coverage": min((a.coverage() for a in archives), default=0.0),
        "cells": sum(a.cells for a in archives),
        "store": str(run.store.path),
        "rounds": run.rounds_done,
        "best_round": run.best_round,
        "planners": run.cfg.planners,
        "workers": len(run.workers),
        "seconds": round(seconds, 2),
        "model": run.cfg.model,
        "usd": round(run.status.usd, 6),
        "tokens": run.status.tokens,
        "stopped": run.status.reason or None,
    }


class _Progress:
    """Progress on stderr: every new best (with its program id) and one line per round."""

    def __init__(self, run: Any, *, quiet: bool) -> None:
        self.run, self.quiet = run, quiet
        self.best: float | None = None
        self.t0 = time.monotonic()
        self.last = 0.0

    def __call__(self, event: object) -> None:
        from .events import BestImproved

        if self.quiet or not isinstance(event, BestImproved):
            return
        score = event.program.score
        if self.best is None or score > self.best:
            self.best = score
            self._print(f"new best {score:.10g} (program {event.program.id}, {event.worker})")

    def round_line(self, r: Any) -> None:
        s = self.run.status
        best = "-" if s.best_score is None else f"{s.best_score:.10g}"
        self._print(
            f"round {r.round} done: best {best} (program {r.best.id}"
            f"{', improved' if r.improved else ''})  "
            f"evaluations {s.evaluations}  {s.attempts_per_s:.1f} evals/s"
        )

    def note(self, text: str) -> None:
        self._print(text)

    def _print(self, text: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", file=sys.stderr, flush=True)
