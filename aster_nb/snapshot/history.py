"""Scores over a run and a program's ancestry, now or up to evaluation ``t``.

Read from the store's rows in evaluation order, so a live run, a finished one and one
reopened from its store give the same timeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..program import Program
from ..store import Store
from .records import Timeline
from .source import Source, check_upto, load_task

if TYPE_CHECKING:
    import pandas as pd

    from ..run import Run

__all__ = ["lineage", "timeline"]


def timeline(source: Run | Store, *, upto: int | None = None) -> Timeline:
    """Scores over the run, now or up to evaluation ``upto``.

    Args:
        source: a run or its store.
        upto: keep the first ``upto`` evaluations; ``None``: all.
    """
    import pandas as pd

    src = Source.of(source)
    check_upto(upto)
    table = src.store.scores()
    t0 = float(table.created.min()) if len(table) else 0.0
    created = np.sort(table.created)
    n = len(table) if upto is None else min(upto, len(table))
    frame = pd.DataFrame(
        {
            "seq": np.arange(1, n + 1),
            "id": table.id[:n],
            "worker": table.worker[:n],
            "status": table.status[:n],
            "score": np.where(table.status[:n] == "ok", table.score[:n], np.nan),
            "elapsed": table.created[:n] - t0,
        }
    )
    frame["worker_best"] = frame.groupby("worker")["score"].cummax()
    frame["best"] = frame["score"].cummax()

    rounds = src.store.rounds()
    top = src.run.planner.name if src.run is not None else _top_planner(rounds)
    rounds = rounds[rounds["planner"] == top]
    seq = np.searchsorted(created, rounds["finished"].to_numpy(dtype=float), side="right")
    planner = pd.DataFrame(
        {
            "round": rounds["round"].to_numpy(),
            "seq": seq,
            "elapsed": (rounds["finished"] - t0).to_numpy(dtype=float),
            "score": rounds["best_score"].to_numpy(dtype=float),
            "best_id": rounds["best_id"].to_numpy(),
        }
    )
    if upto is not None:  # a round counts once every program it made is within the first upto
        planner = planner[planner["seq"] <= upto]
    task = src.task if src.run is not None else load_task(src.task_path)
    return Timeline(
        frame=frame,
        planner=planner.reset_index(drop=True),
        merges=_merges(src.store, frame),
        target=None if task is None else task.target,
        record=None if task is None else task.record,
        record_source="" if task is None else task.record_source,
        score_label=(task.score_description if task is not None else "") or "score",
    )


def _merges(store: Store, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` that a planner made by merging diffs. Only programs without a
    worker can be (the initial program, syntheses), a few per round, so each is looked up
    by id rather than reading every program's origin."""
    rows = frame[frame["worker"] == ""]
    keep, rounds = [], []
    for i, pid in zip(rows.index, rows["id"], strict=True):
        p = store.get(str(pid))
        if p is not None and p.origin == "merge":
            keep.append(i)
            rounds.append(p.round)
    out = frame.loc[keep, ["seq", "elapsed", "id", "status", "score"]].reset_index(drop=True)
    out.insert(3, "round", rounds)
    return out


def _top_planner(rounds: pd.DataFrame) -> str:
    names = set(rounds["planner"])
    return "root" if "root" in names else (min(names) if names else "p0")


def lineage(source: Run | Store, program_id: str) -> list[Program]:
    """The ancestry of a program through its first parents, oldest first, itself last.

    Raises:
        KeyError: no program with this id in the store.
    """
    store = Source.of(source).store
    p = store.get(program_id)
    if p is None:
        raise KeyError(f"no program {program_id!r} in {Path(store.path).name}")
    chain, seen = [p], {p.id}
    while p.parents and (parent := store.get(p.parents[0])) is not None:
        if parent.id in seen:
            break  # an identical program re-derived: the id repeats, stop
        chain.append(parent)
        seen.add(parent.id)
        p = parent
    return chain[::-1]
