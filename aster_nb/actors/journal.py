"""What a worker in another process writes, in order, for the driver to apply in that order.

A worker running as a Ray actor (:mod:`aster_nb.actors.host`) reads a copy of the run's
store and writes into a :class:`Journal` as it goes: every store write, every event, every
metered model call and every model failure, in the order they happened. The driver takes
the journal in batches and :func:`apply`s them: the writes to the run's one store file
(the driver stays its only writer), then each event on the run's bus, after the writes
before it, so a program is in the store before any event or widget shows it, as in one
process; the calls on the run's spending ledger and failure watch, so caps and the
"models failing" stop see every worker.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..events import Event, EventBus
from ..llm import FailureWatch, Spend
from ..llm.base import Usage
from ..llm.spend import Reservation, Tags
from ..store import Store

__all__ = ["JOURNALED", "Journal", "JournalSpend", "JournalStore", "JournalWatch", "apply"]

#: the store's writes a worker makes, journaled and applied by the driver
JOURNALED = frozenset(
    {
        "set_meta",
        "add_program",
        "add_details",
        "add_attempt",
        "add_handoff",
        "add_archive_entry",
        "add_goal",
        "add_round",
    }
)

#: ``("store", method, args, kwargs)``, ``("event", event)``,
#: ``("spend", usage, cost, tags, calls, failures, retries)`` or ``("watch", error | None)``
Entry = tuple[Any, ...]


class Journal(list[Entry]):
    """Entries in the order they happened; :meth:`take` hands over what is there."""

    def take(self) -> list[Entry]:
        out = list(self)
        self.clear()
        return out


class JournalStore(Store):
    """A store in memory (a snapshot of the run's) whose writes are also journaled.

    A write the copy refuses (a program it already holds) is not journaled: the run's
    store holds it too.
    """

    journal: Journal

    @classmethod
    def replica(cls, snapshot: bytes, journal: Journal) -> JournalStore:
        store = cls.from_snapshot(snapshot)
        assert isinstance(store, JournalStore)
        store.journal = journal
        return store


def _journaled(name: str) -> Callable[..., Any]:
    write = getattr(Store, name)

    @functools.wraps(write)
    def journaled(self: JournalStore, *args: Any, **kwargs: Any) -> Any:
        out = write(self, *args, **kwargs)
        if out is not False:
            self.journal.append(("store", name, args, kwargs))
        return out

    return journaled


for _name in JOURNALED:
    setattr(JournalStore, _name, _journaled(_name))


class JournalSpend(Spend):
    """A worker's own ledger (reservations and caps are checked here, at once) that
    journals every call it books, for the run's ledger."""

    def __init__(
        self, journal: Journal, *, max_usd: float | None = None, max_tokens: int | None = None
    ) -> None:
        super().__init__(max_usd=max_usd, max_tokens=max_tokens)
        self.journal = journal

    def settle(self, reservation: Reservation, usage: Usage, cost: float) -> None:
        super().settle(reservation, usage, cost)
        self.journal.append(("spend", usage, cost, reservation.tags, 1, 0, 0))

    def release(self, reservation: Reservation, *, failed: bool = True) -> None:
        super().release(reservation, failed=failed)
        if failed:
            self.journal.append(("spend", Usage(), 0.0, reservation.tags, 0, 1, 0))

    def note_retry(self, tags: Tags = ()) -> None:
        super().note_retry(tags)
        self.journal.append(("spend", Usage(), 0.0, tags, 0, 0, 1))


@dataclass
class JournalWatch(FailureWatch):
    """A worker's failure watch that never trips by itself: it journals each call's
    outcome, and the run's watch (which sees every worker) decides."""

    limit: int | None = None
    journal: Journal = field(default_factory=Journal)

    def failed(self, error: str) -> None:
        super().failed(error)
        self.journal.append(("watch", error))

    def succeeded(self) -> None:
        super().succeeded()
        self.journal.append(("watch", None))


def apply(
    entries: Iterable[Entry],
    *,
    store: Store,
    bus: EventBus,
    spend: Spend | None = None,
    watch: FailureWatch | None = None,
    on_write: Callable[[str, tuple[Any, ...], dict[str, Any]], None] | None = None,
) -> int:
    """Apply a worker's journal to the run: its writes, committed together, then its
    events in order (each after the write it reports). Returns the entries applied.

    A program another worker stored first is not stored again, and its details are not
    either (the first one's stay). ``on_write`` sees each write as the worker made it,
    refused ones too (the worker's archive holds its own copy of such a program).

    Raises:
        ValueError: an entry that is not a journal entry (a write that is not a worker's).
    """
    refused: set[str] = set()
    events: list[Event] = []
    n = 0
    with store.batch():  # one commit for the batch; its events only after it
        for entry in entries:
            kind = entry[0]
            if kind == "store":
                _, name, args, kwargs = entry
                if name not in JOURNALED:
                    raise ValueError(f"a worker's journal may not call Store.{name}")
                if name == "add_details" and args and args[0] in refused:
                    continue
                out = getattr(store, name)(*args, **kwargs)
                if on_write is not None:
                    on_write(name, args, kwargs)  # refused too: the worker's copy is its own
                if name == "add_program" and out is False:
                    refused.add(args[0].id)
                    continue
            elif kind == "event":
                if not isinstance(entry[1], Event):
                    got = type(entry[1]).__name__
                    raise ValueError(f"a journal event must be an Event, got {got}")
                events.append(entry[1])
            elif kind == "spend":
                if spend is not None:
                    _, usage, cost, tags, calls, failures, retries = entry
                    spend.book(
                        usage, cost, tags=tags, calls=calls, failures=failures, retries=retries
                    )
            elif kind == "watch":
                if watch is not None:
                    if entry[1] is None:
                        watch.succeeded()
                    else:
                        watch.failed(entry[1])
            else:
                raise ValueError(
                    f"unknown journal entry {kind!r}; expected store, event, spend or watch"
                )
            n += 1
    for e in events:
        bus.emit(e)
    return n
