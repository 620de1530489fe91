"""Goals: what each worker is asked to do, on which surface areas, who set it, pinned or not.

A goal's areas are chosen explicitly (by the researcher's ``areas=`` or the planner's
plan), never read from its words: "keep the `layout` code as is" names ``layout`` to
leave it alone, and word matching made it the one area edited.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, MutableMapping, Sequence

from ..errors import AreaError
from ..records import Goal

__all__ = ["AreaError", "Goal", "Goals", "parse_plan"]


def check_areas(areas: Sequence[str], valid: Sequence[str]) -> tuple[str, ...]:
    """``areas`` in the task's order, or :class:`AreaError` naming the valid ones."""
    if isinstance(areas, str):
        raise AreaError(f"areas must be a list of area names, got the string {areas!r}")
    names = list(areas)
    bad = [a for a in names if a not in valid]
    if bad:
        raise AreaError(
            f"no surface area {', '.join(map(repr, bad))} in this task; its areas are "
            f"{list(valid) or '(none: the whole program is editable)'}"
        )
    if not names and valid:
        raise AreaError(f"name at least one surface area; the task's areas are {list(valid)}")
    return tuple(a for a in valid if a in names)


# ``GOAL <worker> (areas: a, b): <text>``: a plan line; without the areas part the worker
# keeps the areas it has.
_PLAN_LINE = re.compile(r"^GOAL ([\w.-]+)(?: \(areas: ([^)]*)\))?: (.+)$", re.MULTILINE)


def parse_plan(text: str, valid: Sequence[str]) -> dict[str, tuple[str, tuple[str, ...] | None]]:
    """A planner model's reply as ``{worker: (goal, areas or None)}``.

    Area names the task lacks are dropped (a model's slip costs its choice, not the
    round); none left means the worker keeps its areas.
    """
    out: dict[str, tuple[str, tuple[str, ...] | None]] = {}
    for m in _PLAN_LINE.finditer(text):
        names = [a.strip(" `") for a in (m.group(2) or "").split(",")]
        areas = tuple(a for a in valid if a in names) or None
        out[m.group(1)] = (m.group(3).strip(), areas)
    return out


def goal_line(worker: str, goal: Goal, *, with_areas: bool) -> str:
    """``worker``'s goal as a plan prompt lists it: state, areas, text."""
    state = "pinned" if goal.pinned else "open"
    where = f", areas: {', '.join(goal.areas)}" if with_areas and goal.areas else ""
    return f"- {worker} ({state}{where}): {goal.text}"


class Goals(MutableMapping[str, str]):
    """Worker name -> goal text, recording every change.

    ``goals[worker] = text`` is a researcher's edit: it is pinned and takes effect at the
    next attempt that worker starts. The planner uses :meth:`set` with ``by="planner"``.

    Args:
        on_change: called with ``(worker, goal)`` after each change (the run stores it and
            emits an event).
        areas: the task's surface area names, in source order (none: the whole program).
    """

    def __init__(
        self, on_change: Callable[[str, Goal], None] | None = None, areas: Sequence[str] = ()
    ) -> None:
        self._goals: dict[str, Goal] = {}
        self.on_change = on_change
        self.areas = tuple(areas)

    def set(
        self,
        worker: str,
        text: str,
        *,
        by: str = "planner",
        pinned: bool = False,
        areas: Sequence[str] | None = None,
    ) -> None:
        """Give ``worker`` the goal ``text``, its agents editing ``areas``.

        ``areas`` omitted keeps the worker's current areas (and who chose them), or every
        area of the task for a worker without a goal yet; the text is never searched for
        area names.

        Raises:
            ValueError: ``by`` is not ``planner`` or ``researcher``; the text is empty.
            AreaError: ``areas`` is empty or names an area the task lacks.
        """
        if by not in ("planner", "researcher"):
            raise ValueError(f"by must be 'planner' or 'researcher', got {by!r}")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"a goal must be non-empty text, got {text!r}")
        if areas is not None:
            chosen, chosen_by = check_areas(areas, self.areas), by
        elif worker in self._goals:
            chosen, chosen_by = self._goals[worker].areas, self._goals[worker].areas_by
        else:
            chosen, chosen_by = self.areas, "default"
        goal = Goal(text.strip(), by, pinned, areas=chosen, areas_by=chosen_by)
        self._goals[worker] = goal
        if self.on_change is not None:
            self.on_change(worker, goal)

    def load(
        self,
        worker: str,
        text: str,
        *,
        set_by: str,
        pinned: bool,
        areas: Sequence[str] | None = None,
        areas_by: str = "default",
    ) -> None:
        """Put back a stored goal without recording it again (reopening a run).

        A goal stored before areas were recorded (``None``) gets every area, as ``default``;
        names the task no longer has are dropped.
        """
        kept = tuple(a for a in self.areas if areas is None or a in areas) or self.areas
        by = areas_by if areas is not None else "default"
        self._goals[worker] = Goal(text, set_by, pinned, areas=kept, areas_by=by)

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
