"""The run as it was after its first ``t`` evaluations, read from the store: where a record
written at some time falls among the evaluations, and the goals and the current best then.

Why by time: goals and rounds are stored with the time they were written, not with how
many programs the store held; the programs' evaluation end times (created + seconds)
place them. A record written while the store held ``k`` programs shows from evaluation
``k`` on, as the handoff feed places its rows (:func:`~aster_nb.ui.handoffs.written_by`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from ..records import Goal, code_hash

if TYPE_CHECKING:
    from ..records import Program
    from ..run import Run


def evaluation_ends(history: Any) -> np.ndarray:
    """When each stored program's evaluation ended, sorted (a ``run.history()`` frame)."""
    return np.sort((history["created"] + history["eval_seconds"].fillna(0)).to_numpy())


def placed(times: Any, history: Any) -> np.ndarray:
    """For each time, how many programs had been evaluated by then."""
    ends = evaluation_ends(history)
    return np.searchsorted(ends, np.asarray(times, dtype=float), "right").astype(np.int64)


def goals_at(run: Run, upto: int) -> dict[str, Goal]:
    """Each worker's goal as it was after evaluation ``upto`` (workers without one then are
    missing)."""
    df = run.store.goals()
    if not len(df):
        return {}
    df = df[placed(df["at"], run.history()) <= upto]
    out: dict[str, Goal] = {}
    for r in df.itertuples(index=False):  # oldest first: the last one of a worker wins
        areas = getattr(r, "areas", None)
        out[r.worker] = Goal(
            text=r.goal,
            set_by=r.set_by,
            pinned=bool(r.pinned),
            at=float(r.at),
            areas=tuple(json.loads(areas)) if isinstance(areas, str) else (),
            areas_by=getattr(r, "areas_by", None) or "default",
        )
    return out


def best_at(run: Run, upto: int) -> Program | None:
    """The top planner's current best after evaluation ``upto``: the best of its last round
    finished by then, else the initial program."""
    rounds = run.store.rounds()
    mine = rounds[rounds["planner"] == run.planner.name]
    if len(mine):
        mine = mine[placed(mine["finished"], run.history()) <= upto]
    if len(mine):
        best_id = mine["best_id"].iloc[-1]
        if isinstance(best_id, str) and (p := run.store.get(best_id)) is not None:
            return p
    return run.store.get(code_hash(run.task.initial_code))
