"""The store itself: one run's SQLite file (WAL), written as the run goes and read back.

Writes commit before they return, so a program is on disk before any event, progress line
or widget reports it; killing the process loses nothing that was shown. WAL lets readers
(a notebook, a second process) read while the run writes. The tables are in
:mod:`~aster_nb.store.schema`, the read-only check of a file in
:mod:`~aster_nb.store.check`, and the incremental history views read in
:mod:`~aster_nb.store.history`.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..records import AttemptRecord, EvalResult, Handoff, Program, Status
from .check import StoreError, in_memory_image
from .curves import Point, SeedScore, add_details, read_curve, read_seed_scores
from .history import History, Scores
from .rows import (
    ATTEMPT_INSERT,
    HANDOFF_INSERT,
    attempt_values,
    handoff_values,
    program_from_row,
)
from .schema import SCHEMA, add_missing_columns

if TYPE_CHECKING:
    import pandas as pd


class Store:
    """A run's SQLite file.

    Args:
        path: the file; created with its tables if missing or empty.

    Raises:
        StoreError: ``path`` is not an SQLite file, or is a database of something else
            (it has tables but no ``meta`` table); it is left unchanged.
    """

    def __init__(self, path: str | Path, *, image: bytes | None = None) -> None:
        self.path = Path(path)
        if image is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None is autocommit: each statement is its own committed transaction,
        # so a record is on disk when its method returns.
        where = self.path if image is None else ":memory:"
        self._db = sqlite3.connect(where, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        if image is not None:
            self._db.deserialize(in_memory_image(image))
        self._refuse_foreign()  # before the WAL pragma, which rewrites the file's header
        if image is None:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process (not a power cut) at far lower cost.
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._ready()

    @classmethod
    def from_snapshot(cls, data: bytes) -> Store:
        """A store in memory holding :meth:`snapshot`'s copy of another: what a worker
        running in another process reads (see :mod:`aster_nb.actors`). Nothing it writes
        reaches a file.

        Raises:
            StoreError: ``data`` is not a snapshot of an SQLite database.
        """
        return cls("snapshot", image=data)

    def snapshot(self) -> bytes:
        """The whole store as it is now, as bytes (:meth:`from_snapshot` reads them)."""
        return self._db.serialize()

    def _ready(self) -> None:
        self._db.executescript(SCHEMA)
        add_missing_columns(self._db)
        self._history = History(self._db)  # what history() and scores() have read so far
        # The run's evaluations (see evaluations()), counted once here and then kept by
        # add_program: a status line reads it several times a second.
        self._evaluations = self._count_evaluations()

    def _count_evaluations(self) -> int:
        return self._db.execute(
            "SELECT COUNT(*) FROM programs WHERE status != 'pending'"
        ).fetchone()[0]

    def _refuse_foreign(self) -> None:
        try:
            tables = {
                r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise StoreError(f"{self.path} is not a run store: {e}") from e
        if tables and "meta" not in tables:
            self._db.close()
            raise StoreError(
                f"{self.path} is an SQLite database of something else (tables "
                f"{sorted(tables)[:5]}, no meta table); not writing a run into it"
            )

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Writes made inside commit together when it ends (none if it raises): one commit
        for many records, for a writer that reports them only after (a worker actor's
        journal, :func:`~aster_nb.actors.journal.apply`). Not re-entrant."""
        self._db.execute("BEGIN")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._evaluations = self._count_evaluations()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, json.dumps(value)),
        )

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def add_program(self, p: Program) -> bool:
        """Insert a program; False if its id is already stored with a result (identical code)."""
        r = p.result or EvalResult(status=Status.PENDING)
        # Identical code is one row; a row still pending takes the evaluation when it comes.
        cur = self._db.execute(
            "INSERT INTO programs(id, code, parents, origin, worker, planner, agent, round, status,"
            " score, metrics, features, descriptor, error, stdout, stderr, eval_seconds, created,"
            " score_std, score_n) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(id) DO UPDATE SET status=excluded.status, score=excluded.score,"
            " score_std=excluded.score_std, score_n=excluded.score_n,"
            " metrics=excluded.metrics, features=excluded.features, descriptor=excluded.descriptor,"
            " error=excluded.error, stdout=excluded.stdout, stderr=excluded.stderr,"
            " eval_seconds=excluded.eval_seconds WHERE programs.status='pending'",
            (
                p.id,
                p.code,
                json.dumps(list(p.parents)),
                p.origin,
                p.worker,
                p.planner,
                p.agent,
                p.round,
                str(r.status),
                r.score,
                json.dumps(r.metrics),
                None if r.features is None else json.dumps(list(r.features)),
                None if p.descriptor is None else json.dumps(list(p.descriptor)),
                r.error,
                r.stdout,
                r.stderr,
                r.seconds,
                p.created,
                r.spread,
                r.repeats,
            ),
        )
        if cur.rowcount == 1 and r.status is not Status.PENDING:
            self._evaluations += 1  # a new program, or a pending one evaluated
        return cur.rowcount == 1

    def evaluations(self) -> int:
        """The run's evaluations: programs stored with a result, one per distinct code.

        The one definition every report uses (the command line's round lines and JSON
        line, ``Run.status``, the dashboard, the snapshots' and replays' counts): the
        initial program, every worker's child and every planner's merge, each evaluated
        once (identical code proposed again, by any worker, is a duplicate or a cache hit,
        not an evaluation). The budget counts differently: a worker's budget counts each
        program new to that worker, so two workers finding the same code spend two.
        """
        return self._evaluations

    def add_attempt(self, a: AttemptRecord) -> None:
        self._db.execute(ATTEMPT_INSERT, attempt_values(a))

    def add_handoff(self, h: Handoff) -> None:
        """Store a :class:`~aster_nb.records.Handoff`."""
        self._db.execute(HANDOFF_INSERT, handoff_values(h))

    def add_goal(
        self,
        *,
        worker: str,
        goal: str,
        set_by: str,
        pinned: bool,
        round: int,
        areas: tuple[str, ...] = (),
        areas_by: str = "default",
    ) -> None:
        """Record a goal change, who made it, its surface areas and who chose them."""
        self._db.execute(
            "INSERT INTO goals(worker, goal, set_by, pinned, round, at, areas, areas_by)"
            " VALUES(?,?,?,?,?,?,?,?)",
            (
                worker,
                goal,
                set_by,
                int(pinned),
                round,
                time.time(),
                json.dumps(list(areas)),
                areas_by,
            ),
        )

    def add_archive_entry(self, *, worker: str, program_id: str) -> None:
        """Record that ``worker`` added a stored program to its archive, with how many
        programs the store held then: replaying this log rebuilds the archive exactly as it
        was after any evaluation (adds happen in attempt order, not storage order)."""
        self._db.execute(
            "INSERT INTO archive_log(worker, program_id, programs)"
            " VALUES(?, ?, (SELECT COALESCE(MAX(seq), 0) FROM programs))",
            (worker, program_id),
        )

    def workers(self) -> list[str]:
        """Names of the workers that made attempts, sorted."""
        rows = self._db.execute("SELECT DISTINCT worker FROM attempts ORDER BY worker")
        return [r[0] for r in rows]

    def archive_log(self, worker: str, *, upto: int | None = None) -> list[str]:
        """Ids ``worker`` added to its archive, in order; with ``upto``, only those added
        while the store held at most ``upto`` programs."""
        q = "SELECT program_id FROM archive_log WHERE worker=?"
        args: tuple[object, ...] = (worker,)
        if upto is not None:
            if upto <= 0:
                return []
            # Entries record MAX(seq) (cheap to read at every add), and seq skips values
            # (an upsert that hits an existing id uses one up), so the bound is the seq of
            # the upto-th program, not upto itself; past the last program, no bound.
            last = self._db.execute(
                "SELECT seq FROM programs ORDER BY seq LIMIT 1 OFFSET ?", (upto - 1,)
            ).fetchone()
            if last is not None:
                q, args = q + " AND programs<=?", (*args, last[0])
        return [r[0] for r in self._db.execute(q + " ORDER BY seq", args)]

    def add_round(
        self,
        *,
        planner: str,
        round: int,
        started: float,
        base: Program,
        best: Program,
        improved: bool,
    ) -> None:
        """Record a finished planner round and its current best."""
        self._db.execute(
            "INSERT INTO rounds(planner, round, started, finished, base_id, best_id, best_score,"
            " improved) VALUES(?,?,?,?,?,?,?,?)",
            (planner, round, started, time.time(), base.id, best.id, best.score, int(improved)),
        )

    # -- reading -------------------------------------------------------------------------

    def goals(self) -> pd.DataFrame:
        """Every goal change, oldest first."""
        import pandas as pd

        return pd.read_sql_query("SELECT * FROM goals ORDER BY seq", self._db)

    def current_goals(self) -> dict[str, tuple[str, str, bool, list[str] | None, str]]:
        """The latest goal of each worker: ``{worker: (goal, set_by, pinned, areas,
        areas_by)}``; ``areas`` is ``None`` for a goal stored before areas were."""
        rows = self._db.execute(
            "SELECT worker, goal, set_by, pinned, areas, areas_by FROM goals WHERE seq IN"
            " (SELECT MAX(seq) FROM goals GROUP BY worker)"
        )
        return {
            r[0]: (
                r[1],
                r[2],
                bool(r[3]),
                None if r[4] is None else json.loads(r[4]),
                r[5] or "default",
            )
            for r in rows
        }

    def rounds(self) -> pd.DataFrame:
        import pandas as pd

        return pd.read_sql_query("SELECT * FROM rounds ORDER BY seq", self._db)

    def last_round(self, planner: str) -> sqlite3.Row | None:
        return self._db.execute(
            "SELECT * FROM rounds WHERE planner=? ORDER BY seq DESC LIMIT 1", (planner,)
        ).fetchone()

    def attempt_rows(self, worker: str) -> list[sqlite3.Row]:
        """A worker's attempts in attempt order, for rebuilding its agents' memories."""
        return self._db.execute(
            "SELECT a.*, p.score AS child_score, q.score AS parent_score FROM attempts a"
            " LEFT JOIN programs p ON p.id = a.program_id"
            " LEFT JOIN programs q ON q.id = a.parent_id WHERE a.worker=? ORDER BY a.n",
            (worker,),
        ).fetchall()

    def add_details(
        self, program_id: str, *, seeds: Iterable[SeedScore] = (), curve: Iterable[Point] = ()
    ) -> None:
        """Keep a program's per-seed scores and reported values (see :mod:`.curves`)."""
        add_details(self._db, program_id, seeds=seeds, curve=curve)

    def seed_scores(self, program_id: str) -> list[SeedScore]:
        return read_seed_scores(self._db, program_id)

    def curve(self, program_id: str, name: str | None = None) -> list[Point]:
        """What ``program_id``'s evaluations reported (``name``'s values only if given)."""
        return read_curve(self._db, program_id, name)

    def get(self, program_id: str) -> Program | None:
        row = self._db.execute("SELECT * FROM programs WHERE id=?", (program_id,)).fetchone()
        return None if row is None else program_from_row(row)

    def __contains__(self, program_id: object) -> bool:
        return (
            self._db.execute("SELECT 1 FROM programs WHERE id=?", (program_id,)).fetchone()
            is not None
        )

    def programs(self, *, worker: str | None = None) -> list[Program]:
        """Every stored program in the order it was stored."""
        q, args = "SELECT * FROM programs", ()
        if worker is not None:
            q, args = q + " WHERE worker=?", (worker,)
        return [program_from_row(r) for r in self._db.execute(q + " ORDER BY seq", args)]

    def count(self, table: str = "programs") -> int:
        if table not in ("programs", "attempts", "handoffs"):
            raise ValueError(f"table must be programs, attempts or handoffs, got {table!r}")
        return self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def best(self) -> Program | None:
        row = self._db.execute(
            "SELECT * FROM programs WHERE status='ok' ORDER BY score DESC, seq ASC LIMIT 1"
        ).fetchone()
        return None if row is None else program_from_row(row)

    def history(self) -> pd.DataFrame:
        """Every program as a DataFrame row, in evaluation order, without code and output.

        Rows read before are kept, so a call reads only programs stored since the last one
        (and rows still pending): a live view may call it several times a second on the
        event loop, and a full scan reads every program's code from disk. The decoded
        ``parents``, ``metrics``, ``features`` and ``descriptor`` values are shared between
        calls' frames: copy one before changing it in place.
        """
        return self._history.frame()

    def scores(self, upto: int | None = None) -> Scores:
        """The columns a live view reads (id, worker, status, score, created, descriptor)
        of the first ``upto`` programs (all if ``None``), as arrays: no DataFrame to build,
        so a dashboard can redraw from thousands of programs several times a second."""
        return self._history.scores(upto)

    def attempts(self) -> pd.DataFrame:
        import pandas as pd

        return pd.read_sql_query("SELECT * FROM attempts ORDER BY seq", self._db)

    def handoffs(self) -> pd.DataFrame:
        """Every handoff, oldest first; ``stats`` and ``report`` are JSON text (``report``
        is ``None`` for a planner's and for those stored before reports existed;
        ``HandoffReport.from_dict(json.loads(...))`` reads it)."""
        import pandas as pd

        return pd.read_sql_query("SELECT * FROM handoffs ORDER BY seq", self._db)
