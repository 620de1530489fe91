"""Every stored program as a table row, read incrementally: what live views poll.

Why an object of its own: a dashboard redraws from the history several times a second on
the event loop, and a full scan reads every program's code from disk. :class:`History`
keeps the rows it has read (code and output left out, JSON columns decoded once) and on
each call reads only programs stored since, plus rows still pending (a result may land on
them). Each :class:`~aster_nb.store.Store` owns one; nothing is cached at module level.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = (
    "seq",
    "id",
    "parents",
    "origin",
    "worker",
    "planner",
    "agent",
    "round",
    "status",
    "score",
    "metrics",
    "features",
    "descriptor",
    "error",
    "eval_seconds",
    "created",
)
JSON_COLUMNS = ("parents", "metrics", "features", "descriptor")
_SELECT = ", ".join(COLUMNS)
_STATUS = COLUMNS.index("status")
_JSON_AT = tuple(COLUMNS.index(c) for c in JSON_COLUMNS)


@dataclass(frozen=True, slots=True)
class Scores:
    """Per program in store order (see :meth:`Store.scores <aster_nb.store.Store.scores>`).

    Attributes:
        id, worker, status: object arrays of strings.
        score: float array, NaN where the program has none.
        created: float array of Unix times.
        descriptor: the archive descriptor of each program, or ``None``.
    """

    id: np.ndarray
    worker: np.ndarray
    status: np.ndarray
    score: np.ndarray
    created: np.ndarray
    descriptor: list[list[float] | None]

    def __len__(self) -> int:
        return len(self.id)


class History:
    """The ``programs`` rows of one connection read so far, kept up to date on demand.

    Args:
        db: the store's connection (only read from).
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._rows: list[tuple[Any, ...]] = []  # rows read so far, by seq
        self._json: list[tuple[Any, ...]] = []  # their JSON columns, decoded
        self._pending: dict[int, int] = {}  # seq -> index there, of rows still pending

    def frame(self) -> pd.DataFrame:
        """Every program as a DataFrame row, with ``best_so_far`` (see
        :meth:`Store.history <aster_nb.store.Store.history>`)."""
        import pandas as pd

        rows, decoded = self.read()
        df = pd.DataFrame.from_records(
            rows, columns=COLUMNS, coerce_float=True, exclude=JSON_COLUMNS
        )
        values = zip(*decoded, strict=True) if decoded else [()] * len(JSON_COLUMNS)
        for col, vals in zip(JSON_COLUMNS, values, strict=True):
            df.insert(COLUMNS.index(col), col, pd.Series(vals, dtype=object))
        df["best_so_far"] = df["score"].where(df["status"] == "ok").cummax()
        return df

    def scores(self, upto: int | None = None) -> Scores:
        """The columns a live view reads, of the first ``upto`` programs (all if ``None``)."""
        rows, decoded = self.read()
        if upto is not None:
            rows, decoded = rows[:upto], decoded[:upto]
        n = len(rows)
        cols = list(zip(*rows, strict=True)) if n else [()] * len(COLUMNS)

        def col(name: str, dtype: Any = object) -> np.ndarray:
            values = cols[COLUMNS.index(name)]
            if dtype is float:
                return np.array([np.nan if v is None else v for v in values], dtype=float)
            out = np.empty(n, dtype=object)
            out[:] = values
            return out

        return Scores(
            id=col("id"),
            worker=col("worker"),
            status=col("status"),
            score=col("score", float),
            created=col("created", float),
            descriptor=[d[JSON_COLUMNS.index("descriptor")] for d in decoded],
        )

    def read(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Bring the rows up to date; returns (rows, their decoded JSON), shared: not copies."""
        cur = self._db.cursor()
        cur.row_factory = None  # plain tuples
        rows, decoded, at = self._rows, self._json, self._pending
        if at:
            marks = ",".join("?" * len(at))
            for row in cur.execute(
                f"SELECT {_SELECT} FROM programs WHERE seq IN ({marks})", list(at)
            ):
                rows[at[row[0]]], decoded[at[row[0]]] = row, _decoded(row)
        last = rows[-1][0] if rows else 0
        for row in cur.execute(f"SELECT {_SELECT} FROM programs WHERE seq>? ORDER BY seq", (last,)):
            rows.append(row)
            decoded.append(_decoded(row))
            if row[_STATUS] == "pending":
                at[row[0]] = len(rows) - 1  # a result may still land on it
        for seq in [seq for seq, i in at.items() if rows[i][_STATUS] != "pending"]:
            del at[seq]
        return rows, decoded


def _decoded(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A history row's JSON columns, decoded."""
    return tuple(json.loads(row[i]) if isinstance(row[i], str) else None for i in _JSON_AT)
