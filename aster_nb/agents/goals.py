"""Goals: what each worker is asked to do, who set it, and whether it is pinned."""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping

from ..records import Goal

__all__ = ["Goal", "Goals"]


class Goals(MutableMapping[str, str]):
    """Worker name -> goal text, recording every change.

    ``goals[worker] = text`` is a researcher's edit: it is pinned and takes effect at the
    next attempt that worker starts. The planner uses :meth:`set` with ``by="planner"``.

    Args:
        on_change: called with ``(worker, goal)`` after each change (the run stores it and
            emits an event).
    """

    def __init__(self, on_change: Callable[[str, Goal], None] | None = None) -> None:
        self._goals: dict[str, Goal] = {}
        self.on_change = on_change

    def set(self, worker: str, text: str, *, by: str = "planner", pinned: bool = False) -> None:
        if by not in ("planner", "researcher"):
            raise ValueError(f"by must be 'planner' or 'researcher', got {by!r}")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"a goal must be non-empty text, got {text!r}")
        goal = Goal(text.strip(), by, pinned)
        self._goals[worker] = goal
        if self.on_change is not None:
            self.on_change(worker, goal)

    def load(self, worker: str, text: str, *, set_by: str, pinned: bool) -> None:
        """Put back a stored goal without recording it again (reopening a run)."""
        self._goals[worker] = Goal(text, set_by, pinned)

    def info(self, worker: str) -> Goal:
        """The full record of ``worker``'s goal."""
        return self._goals[worker]

    def pin(self, worker: str, pinned: bool = True) -> None:
        g = self._goals[worker]
        self.set(worker, g.text, by=g.set_by, pinned=pinned)

    def __getitem__(self, worker: str) -> str:
        try:
            return self._goals[worker].text
        except KeyError:
            raise KeyError(f"no worker {worker!r}; workers are {sorted(self._goals)}") from None

    def __setitem__(self, worker: str, text: str) -> None:
        if worker not in self._goals:
            raise KeyError(f"no worker {worker!r}; workers are {sorted(self._goals)}")
        self.set(worker, text, by="researcher", pinned=True)

    def __delitem__(self, worker: str) -> None:
        raise TypeError("a worker's goal can be changed, not removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._goals)

    def __len__(self) -> int:
        return len(self._goals)

    def __repr__(self) -> str:
        return "Goals({" + ", ".join(f"{w!r}: {g.text!r}" for w, g in self._goals.items()) + "})"
