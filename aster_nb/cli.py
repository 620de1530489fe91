"""Command line: ``python -m aster_nb tasks | run TASK ... | resume STORE ...``.

Exit codes: 0 when the run finished (or stopped at a spending cap); 1 when it failed (its
model calls kept failing, ...); 2 when the input is wrong: a task folder, a ``task.toml``,
a flag, a store file, a model name or key. Such an error is one line on stderr,
``aster_nb: error: <what is wrong and what was expected>``, and no traceback; ``--debug``
shows the traceback instead. A mistyped flag prints the subcommand's usage and the error.

Before a run spends anything, the sandbox must have imported the evaluator and the initial
program must evaluate without crashing (``Run.create`` checks it, see
:func:`aster_nb.task.check_start`); an initial program the evaluator calls *invalid* is
accepted, with a warning, for the agents to repair. ``Run.open`` checks a store file
read-only before resuming it (:func:`aster_nb.store.check_run_store`). The JSON line a
run ends with, and which of its fields depend on timing, is :mod:`aster_nb.runsummary`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn

from .clidrive import drive, say
from .errors import UserInputError
from .records import Status
from .task import Task, builtin_tasks


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module)."""
    parser, commands = _parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            # argparse would report these with the top-level usage; the subcommand's helps
            commands[args.cmd].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # argparse printed the usage and its error (or the help)
        return e.code if isinstance(e.code, int) else 2
    try:
        return _command(args)
    except UserInputError as e:
        if args.debug:
            raise
        say("error", str(e))
        return 2


class _Parser(argparse.ArgumentParser):
    """argparse, with the error line every other bad input gets: the (sub)command's usage,
    then one ``aster_nb: error: ...`` line, exit code 2. Subparsers are of this class too
    (``add_subparsers`` makes its parsers of the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"aster_nb: error: {' '.join(message.split())}\n")


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    # allow_abbrev=False everywhere: `--worker 2` must not quietly mean `--workers 2`
    parser = _Parser(
        prog="python -m aster_nb", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of input errors")
    # the metavar names the choices in "the following arguments are required: ..."
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="{tasks,run,resume}")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text, allow_abbrev=False)
        # SUPPRESS: given after the subcommand it sets debug, absent it keeps the top's value
        p.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show tracebacks of input errors",
        )
        return p

    tasks = command("tasks", "list the built-in tasks")
    run = command("run", "run planners and workers on a task; ends with a JSON line")
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
    run.add_argument(
        "--unordered",
        action="store_true",
        help="apply results as they land: faster with uneven evaluation times, but a seed "
        "no longer fixes the outcome (default: in attempt order)",
    )
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
        "--max-model-failures",
        type=int,
        default=20,
        help="model calls failing in a row that end the run failed, exit code 1 (default 20)",
    )
    run.add_argument(
        "--latency", type=float, default=0.0, help="offline model's simulated latency, s"
    )
    run.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="parallel evaluations (default: cores; on Ray, all that fit on the nodes)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="where evaluations run: local (this machine's sandbox, default) or ray (the "
        "nodes of a Ray cluster, each in the same sandbox; needs aster_nb[ray])",
    )
    run.add_argument(
        "--ray-address",
        default=None,
        help="the Ray cluster for --executor ray, as `ray start --head` printed it "
        "(default: RAY_ADDRESS, else a private Ray started for the run)",
    )
    run.add_argument(
        "--worker-actors",
        action="store_true",
        help="with --executor ray: run each worker (its agents, archive, memories) in a Ray "
        "actor of its own, spread over the nodes; planners and the store stay here",
    )
    res = command("resume", "continue a stored run; ends with a JSON line")
    res.add_argument("store", type=Path, help="the run's .sqlite file")
    res.add_argument("--rounds", type=int, default=None, help="rounds to add (default: the rest)")
    res.add_argument("--concurrency", type=int, default=None)
    res.add_argument("--quiet", action="store_true")
    return parser, {"tasks": tasks, "run": run, "resume": res}


def _command(args: argparse.Namespace) -> int:
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
        _check_flags(
            ("rounds", args.rounds, args.rounds is None or args.rounds >= 0, ">= 0"),
            (
                "concurrency",
                args.concurrency,
                args.concurrency is None or args.concurrency >= 1,
                ">= 1",
            ),
        )
        # Run.open checks the store file before writing to it
        return _finish(_resume(args), quiet=args.quiet)
    _check_flags(
        ("budget", args.budget, args.budget is None or args.budget >= 1, ">= 1"),
        ("agents", args.agents, args.agents >= 1, ">= 1"),
        ("workers", args.workers, args.workers >= 1, ">= 1"),
        ("planners", args.planners, args.planners >= 1, ">= 1"),
        ("rounds", args.rounds, args.rounds >= 1, ">= 1"),
        (
            "seconds",
            args.seconds,
            args.seconds is None or 0 < args.seconds < math.inf,
            "finite and > 0",
        ),
        (
            "concurrency",
            args.concurrency,
            args.concurrency is None or args.concurrency >= 1,
            ">= 1",
        ),
        ("latency", args.latency, args.latency >= 0, ">= 0"),
        ("max-usd", args.max_usd, args.max_usd is None or args.max_usd > 0, "> 0"),
        ("max-tokens", args.max_tokens, args.max_tokens is None or args.max_tokens > 0, "> 0"),
        ("max-model-failures", args.max_model_failures, args.max_model_failures >= 1, ">= 1"),
        ("seed", args.seed, args.seed >= 0, ">= 0"),  # numpy seeds are non-negative
    )
    shares = args.rounds * args.planners * args.workers
    if args.budget is not None and args.budget < shares:
        # each worker spends budget // shares per round: below one it would spend more
        raise UserInputError(
            f"--budget {args.budget} is less than one evaluation per worker per round "
            f"({args.rounds} rounds x {args.planners * args.workers} workers); "
            f"expected --budget >= {shares}"
        )
    if args.ray_address is not None and args.executor != "ray":
        raise UserInputError(
            f"--ray-address {args.ray_address} needs --executor ray; got --executor {args.executor}"
        )
    if args.worker_actors and args.executor != "ray":
        raise UserInputError(
            f"--worker-actors needs --executor ray (the workers run on Ray); got "
            f"--executor {args.executor}"
        )
    if args.budget is None and args.seconds is None:
        args.budget = 300
    task = Task.load(args.task)
    _out_folder(args.out)
    return _finish(_run(task, args), quiet=args.quiet)


def _check_flags(*checks: tuple[str, Any, bool, str]) -> None:
    problems = [
        f"--{name} must be {rule}, got {value}" for name, value, ok, rule in checks if not ok
    ]
    if problems:
        raise UserInputError("; ".join(problems))


def _out_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserInputError(
            f"--out {out} is a file; expected a folder for the run's store (made if missing)"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserInputError(
            f"--out {out}: cannot create the folder ({e.strerror or e}); expected a folder "
            "for the run's store"
        ) from e
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserInputError(f"--out {out} is not writable; expected a folder for the store")


def _finish(work: Coroutine[Any, Any, dict[str, Any]], *, quiet: bool) -> int:
    """Run ``work``, print its summary line, then (unless ``quiet``) how to open the run
    in JupyterLab. Exit code 1 when the run ended failed (say, its model calls kept
    failing); input errors (2) are raised to :func:`main`."""
    summary = asyncio.run(work)
    print(json.dumps(summary), flush=True)
    if not quiet:
        print(open_hint(summary["store"]), file=sys.stderr, flush=True)
    if summary["error"]:
        say("error", f"the run failed: {summary['error']}")
        return 1
    return 0


def open_hint(store: str | Path) -> str:
    """What to type in JupyterLab to see a run: its store's absolute path, since a
    notebook's working directory is its own folder, not the one the run started in."""
    path = str(Path(store).resolve())
    return (
        "aster_nb: to see this run in JupyterLab (.venv/bin/jupyter lab), in a cell:\n"
        "    from aster_nb import Run\n"
        "    from aster_nb.ui import Dashboard\n"
        f"    run = await Run.open({path!r})\n"
        "    Dashboard(run)"
    )


async def _run(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    from .run import Run

    n_workers = args.planners * args.workers
    per_worker = None if args.budget is None else max(1, args.budget // (args.rounds * n_workers))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # The pid keeps two runs started in the same second out of each other's file.
    path = args.out / f"{task.name}-{args.archive}-s{args.seed}-{stamp}-{os.getpid()}.sqlite"
    # Run.create evaluates the initial program first: one that crashes is a TaskError, and
    # nothing (no store file, no sandbox) is left behind.
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
        max_model_failures=args.max_model_failures,
        evaluations_per_round=per_worker,
        seconds=args.seconds,
        concurrency=args.concurrency,
        executor=args.executor,
        ray_address=args.ray_address,
        worker_actors=args.worker_actors,
    )
    first = run.initial_result
    if first is not None and first.status is Status.INVALID:
        say(
            "warning",
            f"the initial program is invalid ({first.error}); "
            "the first agents will try to repair it",
        )
    run.store.set_meta("rounds_target", args.rounds)
    run.store.set_meta("ordered", not args.unordered)
    return await drive(run, args.rounds, quiet=args.quiet)


async def _resume(args: argparse.Namespace) -> dict[str, Any]:
    from .run import Run

    run = await Run.open(args.store, concurrency=args.concurrency)  # checks the evaluator too
    rounds = args.rounds
    if rounds is None:
        rounds = max(0, int(run.store.meta("rounds_target", 1)) - run.rounds_done)
    else:
        run.store.set_meta("rounds_target", run.rounds_done + rounds)
    return await drive(run, rounds, quiet=args.quiet)
