"""The tables of a run's SQLite file, in one place: what :class:`~aster_nb.store.Store`
creates and what :func:`~aster_nb.store.check_run_store` expects to find.

Why apart: the writer and the read-only check must agree on the same tables; a column
added here is seen by both. ``CREATE ... IF NOT EXISTS`` throughout, so opening an
existing store adds nothing and changes nothing, but for the columns of
:data:`COLUMNS_ADDED`, which :func:`migrate` adds to a store written before them.
"""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS programs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    code TEXT NOT NULL,
    parents TEXT NOT NULL,
    origin TEXT NOT NULL,
    worker TEXT NOT NULL,
    planner TEXT NOT NULL DEFAULT '',
    agent INTEGER,
    round INTEGER NOT NULL,
    status TEXT NOT NULL,
    score REAL,
    metrics TEXT NOT NULL,
    features TEXT,
    descriptor TEXT,
    error TEXT,
    stdout TEXT,
    stderr TEXT,
    eval_seconds REAL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    worker TEXT NOT NULL,
    n INTEGER NOT NULL,
    agent INTEGER NOT NULL,
    round INTEGER NOT NULL,
    parent_id TEXT,
    inspiration_ids TEXT NOT NULL,
    program_id TEXT,
    outcome TEXT NOT NULL,
    reason TEXT,
    rationale TEXT,
    goal TEXT,
    change TEXT,
    model TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cache_read_tokens INTEGER,
    cache_write_tokens INTEGER,
    cost_usd REAL,
    retries INTEGER NOT NULL DEFAULT 0,
    latency REAL,
    started REAL NOT NULL,
    finished REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS handoffs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    worker TEXT NOT NULL,
    round INTEGER NOT NULL,
    goal TEXT NOT NULL,
    done TEXT NOT NULL,
    learned TEXT NOT NULL,
    concerns TEXT NOT NULL,
    base_id TEXT,
    best_id TEXT,
    diff TEXT NOT NULL,
    stats TEXT NOT NULL,
    created REAL NOT NULL,
    report TEXT
);
CREATE TABLE IF NOT EXISTS goals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    worker TEXT NOT NULL,
    goal TEXT NOT NULL,
    set_by TEXT NOT NULL,
    pinned INTEGER NOT NULL,
    round INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    planner TEXT NOT NULL,
    round INTEGER NOT NULL,
    started REAL NOT NULL,
    finished REAL NOT NULL,
    base_id TEXT,
    best_id TEXT,
    best_score REAL,
    improved INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS archive_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    worker TEXT NOT NULL,
    program_id TEXT NOT NULL,
    programs INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_worker ON attempts(worker, n);
CREATE INDEX IF NOT EXISTS archive_log_worker ON archive_log(worker, seq);
"""
# Columns added after their table first shipped: (table, column, declaration). A store
# written before one gets it (NULL in its old rows) when it is next opened for writing;
# the read-only check requires none of them, so an old store still opens and resumes.
COLUMNS_ADDED: tuple[tuple[str, str, str], ...] = (
    # a handoff's numbers as JSON (aster_nb.agents.report.HandoffReport)
    ("handoffs", "report", "TEXT"),
)


def migrate(db: sqlite3.Connection) -> None:
    """Add the :data:`COLUMNS_ADDED` an older store lacks."""
    for table, column, declaration in COLUMNS_ADDED:
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


# every table a complete run store has (the check refuses a file missing one)
TABLES = ("meta", "programs", "attempts", "handoffs", "goals", "rounds", "archive_log")
# the first bytes of every SQLite file
SQLITE_MAGIC = b"SQLite format 3\x00"
