"""The JSON line a command-line run ends with: what the run found and what it spent.

Why a module: the line is the run's result for scripts and for the reproducibility check
(a fixed seed must print the same line), so which field may depend on timing is decided
here, in one place, and said in the README. With a fixed seed every field is the same
from run to run except:

* ``seconds`` (wall time) and ``store`` (the file's name holds the time and the pid);
* ``discarded``, ``discarded_tokens`` and ``discarded_usd``: the surplus attempts, started
  while the applied ones fell short of the budget and left out once it was met (see
  :mod:`aster_nb.agents.scheduler`). How many were under way then depends on timing; their
  model calls finish and are billed, so they are counted, but apart.

``tokens`` and ``usd`` are what this session's model calls spent, less the surplus
attempts' calls: the spend of the attempts kept, the planners and the handoffs, which a
seed fixes. ``tokens + discarded_tokens`` is what the spending ledger (and the provider)
counted, for a run in one session.

A noisy task's run (``[evaluation]``) is not fixed by its seed: which candidates are
re-evaluated, and where an early stop lands, depend on timing (see
:mod:`aster_nb.agents.noise`).

``best_score`` of a noisy task (``[evaluation]``, see :mod:`aster_nb.task`) is the mean
over the seeds the best was confirmed on; ``best_score_spread`` is their standard deviation
and ``best_score_n`` their count (1 and null for a deterministic task).

``evaluations`` is :meth:`Store.evaluations <aster_nb.store.Store.evaluations>`, the count
the round lines, ``Run.status`` and the dashboard give too; ``failed`` is how many of them
are not ``ok`` (a run stopped early is not a failure: ``stopped_early`` counts those).
``coverage`` is ``null`` for Cluster-Elites and greedy, whose cells are all filled by
construction; for a grid it is the lowest share of filled bins over the workers.
"""

from __future__ import annotations

import json
from typing import Any

from .records import code_hash

__all__ = ["summary"]


def summary(run: Any, seconds: float, *, handoffs_before: int = 0) -> dict[str, Any]:
    """The final JSON line of ``run`` (a :class:`~aster_nb.run.Run`) as a dict.

    Args:
        run: the run, after its rounds.
        seconds: the session's wall time.
        handoffs_before: handoffs the store held when this session began: the surplus
            subtracted from this session's spend is that of the handoffs written since.
    """
    df = run.history()
    initial = run.store.get(code_hash(run.task.initial_code))
    archives = [a for a in run.archives.values() if a is not None]
    best = run.best
    stats = [json.loads(s) for s in run.store.handoffs()["stats"]]
    surplus_tokens, surplus_usd = _surplus(stats)
    session_tokens, session_usd = _surplus(stats[handoffs_before:])
    return {
        "task": run.task.name,
        "initial_score": initial.score if initial is not None else None,
        "best_score": best.score if best is not None else None,
        # a noisy task's best score is a mean: its spread (standard deviation over the
        # seeds, null for one seed) and how many seeds it is the mean of (1 otherwise)
        "best_score_spread": best.result.spread if best and best.result else None,
        "best_score_n": best.result.repeats if best and best.result else None,
        # the evaluator's metrics, e.g. a held-out figure that is never part of the score
        "initial_metrics": initial.result.metrics if initial and initial.result else {},
        "best_metrics": best.result.metrics if best and best.result else {},
        # the one count every report gives (Store.evaluations): the round lines, the
        # status of the run reopened, the dashboard and the replays agree with it
        "evaluations": run.store.evaluations(),
        "failed": int((~df["status"].isin(("ok", "stopped"))).sum()),
        # runs the parent side stopped early for a clearly worse curve: not failures
        "stopped_early": int((df["status"] == "stopped").sum()),
        # surplus attempts started, then cancelled when the budget was met: timing decides
        # how many, and what their finished calls cost
        "discarded": sum(s.get("discarded", 0) for s in stats),
        "discarded_tokens": surplus_tokens,
        "discarded_usd": round(surplus_usd, 6),
        "archive": run.cfg.archive,
        # what the archive's cells are made of: the evaluator's features or the code embedding
        "descriptor": (run.store.meta("descriptor") or {}).get("kind"),
        "coverage": _coverage(run.cfg.archive, archives),
        "cells": sum(a.cells for a in archives),
        "store": str(run.store.path),
        "rounds": run.rounds_done,
        "best_round": run.best_round,
        "planners": run.cfg.planners,
        "workers": len(run.workers),
        "seconds": round(seconds, 2),
        "model": run.cfg.model,
        # this session's spend on what was kept (the surplus is in discarded_*); the
        # run's over every session is Run.spent(), kept in the store
        "usd": round(max(0.0, (run.spend.usd if run.spend else 0.0) - session_usd), 6),
        "tokens": (run.spend.tokens if run.spend else 0) - session_tokens,
        "stopped": run.status.reason or None,
        "model_failures": run.status.model_failures,
        "error": run.status.error,
    }


# Archives whose every cell holds a program by construction: Cluster-Elites' cells are
# clusters of the programs themselves, greedy's one cell is its best. Their coverage is
# always 1.0 and says nothing, so the JSON line gives null for them.
FULL_BY_CONSTRUCTION = frozenset({"cluster", "greedy"})


def _coverage(kind: str, archives: list[Any]) -> float | None:
    """The lowest share of filled cells over the workers' archives (a grid's), or ``None``
    where it is 1.0 by construction."""
    if kind in FULL_BY_CONSTRUCTION:
        return None
    return min((a.coverage() for a in archives), default=0.0)


def _surplus(stats: list[dict[str, Any]]) -> tuple[int, float]:
    """Tokens and dollars the discarded attempts of these handoffs' rounds spent."""
    tokens = sum(int(s.get("discarded_tokens", 0)) for s in stats)
    usd = sum(float(s.get("discarded_usd", 0.0)) for s in stats)
    return tokens, usd
