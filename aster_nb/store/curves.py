"""A noisy task's details beside its programs: each seed's score and what the evaluations
reported while they ran (``report(step, values)``).

Why apart: :class:`~aster_nb.store.Store` keeps one row per program; these are many rows
per program, written with it (before any event shows it) and read by early stopping (a
parent's curve), the dashboard and the notebooks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Point", "SeedScore", "add_details", "read_curve", "read_seed_scores"]


@dataclass(frozen=True, slots=True)
class SeedScore:
    """One seed's evaluation of a program."""

    seed: int
    status: str
    score: float | None
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Point:
    """One reported value: ``report(step, {name: value})`` of the run with ``seed``."""

    seed: int
    step: int
    name: str
    value: float


def add_details(
    db: sqlite3.Connection,
    program_id: str,
    *,
    seeds: Iterable[SeedScore] = (),
    curve: Iterable[Point] = (),
) -> None:
    """Keep ``program_id``'s per-seed scores and reported values (a repeat is ignored)."""
    db.executemany(
        "INSERT OR IGNORE INTO seed_scores(program_id, seed, status, score, seconds)"
        " VALUES(?,?,?,?,?)",
        [(program_id, s.seed, s.status, s.score, s.seconds) for s in seeds],
    )
    db.executemany(
        "INSERT OR IGNORE INTO intermediate(program_id, seed, step, name, value) VALUES(?,?,?,?,?)",
        [(program_id, p.seed, p.step, p.name, p.value) for p in curve],
    )


def read_seed_scores(db: sqlite3.Connection, program_id: str) -> list[SeedScore]:
    rows = db.execute(
        "SELECT seed, status, score, seconds FROM seed_scores WHERE program_id=? ORDER BY seed",
        (program_id,),
    )
    return [SeedScore(r[0], r[1], r[2], r[3] or 0.0) for r in rows]


def read_curve(db: sqlite3.Connection, program_id: str, name: str | None = None) -> list[Point]:
    """``program_id``'s reported values (only ``name``'s if given), by seed and step."""
    q = "SELECT seed, step, name, value FROM intermediate WHERE program_id=?"
    args: tuple[str, ...] = (program_id,)
    if name is not None:
        q, args = q + " AND name=?", (program_id, name)
    return [Point(*r) for r in db.execute(q + " ORDER BY seed, step, name", args)]
