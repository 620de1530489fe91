"""The tables of a run's SQLite file, in one place: what :class:`~aster_nb.store.Store`
creates and what :func:`~aster_nb.store.check_run_store` expects to find.

Why apart: the writer and the read-only check must agree on the same tables; a column
added here is seen by both. ``CREATE ... IF NOT EXISTS`` throughout, so opening an
existing store adds nothing and changes nothing, but for the columns of
:data:`ADDED_COLUMNS`, which :func:`add_missing_columns` adds to a store written before them.
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
-- a noisy task's evaluations: one row per seed a program ran (its score is their mean)
CREATE TABLE IF NOT EXISTS seed_scores (
    program_id TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    score REAL,
    seconds REAL,
    PRIMARY KEY (program_id, seed)
);
-- what evaluations reported while they ran: report(step, {name: value})
CREATE TABLE IF NOT EXISTS intermediate (
    program_id TEXT NOT NULL,
    seed INTEGER NOT NULL,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (program_id, seed, step, name)
);
CREATE INDEX IF NOT EXISTS attempts_worker ON attempts(worker, n);
CREATE INDEX IF NOT EXISTS archive_log_worker ON archive_log(worker, seq);
"""
# Columns added after stores were first written: a store opened without them gets them
# (ALTER TABLE ... ADD COLUMN, NULL in old rows), so old stores open and keep their rows.
ADDED_COLUMNS: dict[str, dict[str, str]] = {
    # JSON lists: the goal's focus areas and the areas an attempt's edit changed
    "attempts": {"focus": "TEXT", "areas": "TEXT"},
    # the goal's resolved areas (JSON list) and who chose them (see records.Goal)
    "goals": {"areas": "TEXT", "areas_by": "TEXT"},
    # how many programs the store held when the handoff was written: where it falls in a
    # replay "as after evaluation t" (set by the trigger below; NULL in older rows)
    "handoffs": {"programs": "INTEGER", "report": "TEXT"},  # report: the numbers, as JSON
    # a noisy task's score is a mean: its standard deviation over the seeds and their count
    "programs": {"score_std": "REAL", "score_n": "INTEGER"},
}
# A trigger, not the writer: every handoff insert gets its position, whoever writes it.
TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS handoffs_programs AFTER INSERT ON handoffs
WHEN NEW.programs IS NULL
BEGIN
    UPDATE handoffs SET programs = (SELECT COUNT(*) FROM programs) WHERE seq = NEW.seq;
END;
"""


def add_missing_columns(db: sqlite3.Connection) -> None:
    """Add the :data:`ADDED_COLUMNS` a store written before them lacks."""
    for table, cols in ADDED_COLUMNS.items():
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        for name, kind in cols.items():
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    db.executescript(TRIGGERS)  # after the columns it writes exist


# every table a complete run store has (the check refuses a file missing one); the
# seed_scores and intermediate tables are not listed: stores written before them stay valid
TABLES = ("meta", "programs", "attempts", "handoffs", "goals", "rounds", "archive_log")
# the first bytes of every SQLite file
SQLITE_MAGIC = b"SQLite format 3\x00"
