"""Driving a run from the command line: its rounds, progress lines on stderr, the summary.

The command line (:mod:`aster_nb.cli`) parses and checks; this runs what it asked for and
returns the JSON summary (:mod:`aster_nb.runsummary`) with where the evaluations ran.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .runsummary import summary


def say(kind: str, text: str) -> None:
    """One line on stderr, however many lines ``text`` has."""
    print(f"aster_nb: {kind}: {' '.join(text.split())}", file=sys.stderr, flush=True)


def _sandbox(run: Any) -> dict[str, Any]:
    """The sandbox's isolation and network, recorded in the store's meta and warned about
    once when the executor says isolation is degraded."""
    stats = run.executor.stats
    facts = {"isolation": stats.get("isolation"), "network": stats.get("network")}
    if run.cfg.executor != "local":  # where the evaluations ran, and on how many nodes
        facts |= {"executor": run.cfg.executor, "nodes": len(stats.get("nodes", {}))}
    for key, value in facts.items():
        run.store.set_meta(key, value)
    warning = getattr(run.executor, "isolation_warning", None)
    if warning:  # even with --quiet: it is about safety, not progress
        say("warning", warning)
    return facts


async def drive(run: Any, rounds: int, *, quiet: bool) -> dict[str, Any]:
    from .llm import ModelsFailing

    # results in attempt order unless the run was started with --unordered (kept on resume)
    ordered = bool(run.store.meta("ordered", True))
    for worker in run.workers.values():
        worker.ordered = ordered
    sandbox = _sandbox(run)
    progress = _Progress(run, quiet=quiet)
    run.bus.subscribe(progress)
    if not quiet:
        print(f"store: {run.store.path}", file=sys.stderr, flush=True)
    handoffs_before = run.store.count("handoffs")  # this session's surplus is in those after
    t0 = time.monotonic()
    try:
        for _ in range(rounds):
            try:
                result = await run.step()
            except ModelsFailing:
                break  # the run failed: the summary says why, the exit code is 1
            progress.round_line(result)
            if run.control.stopping:  # a spending cap was reached: the run ends cleanly
                progress.note(f"stopped: {run.status.reason}")
                break
        seconds = time.monotonic() - t0
        return {**summary(run, seconds, handoffs_before=handoffs_before), **sandbox}
    finally:
        await run.close()


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
