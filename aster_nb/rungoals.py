"""Every worker's goal in one mapping, whichever planner owns it (``run.goals``).

A run with several planners keeps each worker's goal in its own planner's
:class:`~aster_nb.agents.goals.Goals`; :class:`RunGoals` finds the owner, so neither the
README nor the UI reaches into ``planner.find``.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping

from .agents.planner import Planner
from .records import Goal


class RunGoals(MutableMapping[str, str]):
    """Goals of every child of every planner of a run, by name (see :attr:`Run.goals`).

    Args:
        root: the run's root planner.
    """

    def __init__(self, root: Planner) -> None:
        self.root = root

    def owner(self, name: str) -> Planner:
        """The planner whose child ``name`` is.

        Raises:
            KeyError: no worker or planner has that name.
        """
        owner = self.root.find(name)
        if owner is None:
            raise KeyError(
                f"no worker or planner {name!r}; workers are {sorted(self.root.workers())}"
            )
        return owner

    def info(self, name: str) -> Goal:
        """The full record of ``name``'s goal (who set it, pinned or not)."""
        return self.owner(name).goals.info(name)

    def pin(self, name: str, pinned: bool = True) -> None:
        self.owner(name).goals.pin(name, pinned)

    def _planners(self) -> Iterator[Planner]:
        todo = [self.root]
        while todo:
            p = todo.pop(0)
            yield p
            todo.extend(c for c in p.children.values() if isinstance(c, Planner))

    def __getitem__(self, name: str) -> str:
        return self.owner(name).goals[name]

    def __setitem__(self, name: str, text: str) -> None:
        self.owner(name).goals[name] = text

    def __delitem__(self, name: str) -> None:
        raise TypeError("a worker's goal can be changed, not removed")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(name in p.goals for p in self._planners())

    def __iter__(self) -> Iterator[str]:
        for p in self._planners():
            yield from p.goals

    def __len__(self) -> int:
        return sum(len(p.goals) for p in self._planners())

    def __repr__(self) -> str:
        return "RunGoals({" + ", ".join(f"{k!r}: {v!r}" for k, v in self.items()) + "})"
