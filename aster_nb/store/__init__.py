"""One SQLite file per run (WAL): every program, attempt, handoff, goal change and round.

``from aster_nb.store import Store`` (or ``from aster_nb import Store``) is the way in;
the modules split the job:

=====================================  ========================================================
:mod:`~aster_nb.store.db`              :class:`Store`: the connection, the writes (committed
                                       before they return) and the reads
:mod:`~aster_nb.store.schema`          the tables, shared by the writer and the check
:mod:`~aster_nb.store.check`           :func:`check_run_store`: is a file a run store?
                                       read-only; :class:`StoreError` when it is not
:mod:`~aster_nb.store.history`         the programs as rows for live views, read
                                       incrementally (:class:`History`, :class:`Scores`)
=====================================  ========================================================
"""

from .check import StoreError, check_run_store
from .db import Store
from .history import History, Scores

__all__ = ["History", "Scores", "Store", "StoreError", "check_run_store"]
