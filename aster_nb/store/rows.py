"""A stored row read back as a record: one decoding, beside the tables it reads.

Why apart: :class:`~aster_nb.store.Store` writes and queries; turning a row's JSON columns
back into :class:`~aster_nb.records.Program` is a job of its own.
"""

from __future__ import annotations

import json
import sqlite3

from ..records import EvalResult, Program, Status


def program_from_row(row: sqlite3.Row) -> Program:
    """The program a ``programs`` row holds (``PENDING`` rows come back without a result)."""
    feats = row["features"]
    cols = set(row.keys())  # `in row` would look among the values
    result = EvalResult(
        status=Status(row["status"]),
        score=row["score"],
        metrics=json.loads(row["metrics"]),
        features=None if feats is None else tuple(json.loads(feats)),
        error=row["error"],
        stdout=row["stdout"] or "",
        stderr=row["stderr"] or "",
        seconds=row["eval_seconds"] or 0.0,
        # NULL in rows written before noisy tasks' spreads were kept
        spread=row["score_std"] if "score_std" in cols else None,
        repeats=(row["score_n"] if "score_n" in cols else None) or 1,
    )
    desc = row["descriptor"]
    p = Program(
        code=row["code"],
        parents=tuple(json.loads(row["parents"])),
        origin=row["origin"],
        worker=row["worker"],
        planner=row["planner"],
        agent=row["agent"],
        round=row["round"],
        result=None if result.status is Status.PENDING else result,
        descriptor=None if desc is None else tuple(json.loads(desc)),
        created=row["created"],
    )
    return p
