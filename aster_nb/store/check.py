"""Is this file a run store? Checked read-only, before anything writes to it.

Why apart from :class:`~aster_nb.store.Store`: opening a store for writing creates its
tables and turns on WAL, which would change a file that is not a run (a typo'd path, a
database of something else, a truncated copy). ``Run.open`` and ``aster_nb resume`` call
:func:`check_run_store` first, so such a file is refused with a one-line
:class:`StoreError` and left exactly as it was.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from .schema import SQLITE_MAGIC, TABLES


class StoreError(UserInputError):
    """A file given as a run store is not one (or is damaged); nothing in it was changed."""


def check_run_store(path: str | Path) -> dict[str, Any]:
    """Check, without writing anything, that ``path`` is a readable aster_nb run store.

    The file is opened read-only (``immutable`` when no ``-wal`` file is beside it, so
    SQLite creates no ``-wal``/``-shm`` files either; a killed run's ``-wal`` is read), and
    fully checked (``PRAGMA quick_check``): a truncated file can hold an intact meta table
    and fail only when a later page is read, mid-run.

    Returns:
        The run's stored configuration (the ``run`` meta key).

    Raises:
        StoreError: the file is missing, empty, not SQLite, damaged, or not a run.
    """
    p = Path(path)
    expected = "expected the .sqlite file a run wrote (its JSON line's 'store')"
    if not p.exists():
        raise StoreError(f"no run store at {p}: {expected}")
    if not p.is_file():
        raise StoreError(f"{p} is not a file: {expected}")
    with p.open("rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if not head:
        raise StoreError(f"{p} is empty (0 bytes): {expected}")
    if head != SQLITE_MAGIC:
        raise StoreError(f"{p} is not an SQLite database: {expected}")
    mode = "ro" if Path(f"{p}-wal").exists() else "ro&immutable=1"
    uri = f"file:{urllib.parse.quote(str(p.resolve()))}?mode={mode}"
    try:
        db = sqlite3.connect(uri, uri=True)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "meta" not in tables:
                raise StoreError(
                    f"{p} is an SQLite database but not an aster_nb run (no meta table); "
                    f"left unchanged; {expected}"
                )
            row = db.execute("SELECT value FROM meta WHERE key='run'").fetchone()
            missing = [t for t in TABLES if t not in tables]
            if row is None or missing:
                raise StoreError(
                    f"{p} is not a complete aster_nb run (no run configuration or tables "
                    f"{missing}); left unchanged; {expected}"
                )
            problems = [r[0] for r in db.execute("PRAGMA quick_check(1)")]
            if problems != ["ok"]:
                first = " ".join(problems[0].split())
                raise StoreError(f"{p} is damaged ({first}); it may be truncated or corrupted")
            cfg = json.loads(row[0])
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{p} is damaged ({e}); it may be truncated or corrupted") from e
    except json.JSONDecodeError as e:
        raise StoreError(f"{p} has an unreadable run configuration ({e})") from e
    if not isinstance(cfg, dict) or "task" not in cfg:
        raise StoreError(f"{p} has no task in its run configuration; {expected}")
    return cfg


def in_memory_image(image: bytes) -> bytes:
    """A WAL database's image as SQLite reads it in memory: its header must say "rollback
    journal" (bytes 18-19 = 1; WAL says 2, and memory has no WAL)."""
    if image[:16] != b"SQLite format 3\x00" or len(image) < 20:
        return image  # not a database: reading it fails with SQLite's own error
    return image[:18] + b"\x01\x01" + image[20:]
