"""A stored row read back as a record, and an attempt as the row it is stored as.

Why apart: :class:`~aster_nb.store.Store` writes and queries; turning a row's JSON columns
back into :class:`~aster_nb.records.Program` is a job of its own.
"""

from __future__ import annotations

import json
import sqlite3
import time

from ..records import AttemptRecord, EvalResult, Handoff, Program, Status


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


ATTEMPT_INSERT = (
    "INSERT INTO attempts(worker, n, agent, round, parent_id, inspiration_ids, program_id,"
    " outcome, reason, rationale, goal, change, model, input_tokens, output_tokens,"
    " cache_read_tokens, cache_write_tokens, cost_usd, retries, latency, started, finished,"
    " focus, areas) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def attempt_values(a: AttemptRecord) -> tuple[object, ...]:
    """The values of :data:`ATTEMPT_INSERT` for ``a``."""
    return (
        a.worker,
        a.n,
        a.agent,
        a.round,
        a.parent_id,
        json.dumps(list(a.inspiration_ids)),
        a.program_id,
        a.outcome,
        a.reason,
        a.rationale,
        a.goal,
        a.change,
        a.model,
        a.input_tokens,
        a.output_tokens,
        a.cache_read_tokens,
        a.cache_write_tokens,
        a.cost_usd,
        a.retries,
        a.latency,
        a.started,
        a.finished,
        json.dumps(list(a.focus)),
        json.dumps(list(a.areas)),
    )


HANDOFF_INSERT = (
    "INSERT INTO handoffs(worker, round, goal, done, learned, concerns, base_id, best_id,"
    " diff, stats, created, report) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)"
)


def handoff_values(h: Handoff) -> tuple[object, ...]:
    """The values of :data:`HANDOFF_INSERT` for ``h``, stored now."""
    return (
        h.worker,
        h.round,
        h.goal,
        h.done,
        h.learned,
        h.concerns,
        h.base_id,
        h.best.id if h.best is not None else None,
        h.diff,
        json.dumps(h.stats),
        time.time(),
        None if h.report is None else json.dumps(h.report.to_dict()),
    )
