"""Goal editors: per worker a text area, one checkbox per surface area, a pin toggle,
Apply, who set the goal and the areas it resolved to (who chose them); in replay, the
goals as they were then, read-only."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..events import GoalChanged, RunStateChanged
from .base import ErrorSink, ReplayView, style
from .past import goals_at
from .throttle import DEFAULT_INTERVAL

if TYPE_CHECKING:
    from ..records import Goal
    from ..run import Run


def goal_class(worker: str) -> str:
    """The CSS class of a worker's editor: ``aster-goal-p0-w0`` for ``p0.w0``."""
    return "aster-goal-" + worker.replace(".", "-")


def areas_text(goal: Goal) -> str:
    """A goal's resolved areas as the editor shows them: ``areas: refine (chosen by researcher)``."""
    names = ", ".join(goal.areas) if goal.areas else "whole program"
    by = "default: all" if goal.areas_by == "default" else f"chosen by {goal.areas_by}"
    return f"areas: {names} ({by})"


class GoalEditor(w.VBox):
    """One worker's goal: a Textarea, a Checkbox per surface area (the areas its agents
    may edit), a pin Checkbox, Apply, a "set by ..." label and the resolved areas.

    Args:
        worker: the worker's name.
        areas: the task's surface area names (no checkboxes without any).
    """

    def __init__(self, *, worker: str, areas: tuple[str, ...] = ()) -> None:
        self.worker = worker
        self.areas: dict[str, w.Checkbox] = {}
        for a in areas:
            box = w.Checkbox(value=True, description=a, indent=False, layout=w.Layout(width="auto"))
            box.add_class("aster-goal-area")
            box.add_class(f"aster-goal-area-{a}")
            self.areas[a] = box
        self.resolved = w.HTML(value="")
        self.resolved.add_class("aster-goal-areas")
        self.text = w.Textarea(
            value="", placeholder="No goal yet", layout=w.Layout(width="100%", height="4.5em")
        )
        self.pin = w.Checkbox(
            value=False, description="pin", indent=False, layout=w.Layout(width="auto")
        )
        self.apply = w.Button(description="Apply", icon="check", layout=w.Layout(width="auto"))
        self.apply.add_class("aster-goal-apply")
        self.by = w.HTML(value="")
        self.by.add_class("aster-goal-by")
        title = w.HTML(value=f"<b>{html.escape(worker)}</b>")
        ticks = w.HBox([w.HTML(value="agents may edit:"), *self.areas.values()]) if areas else None
        rows = [w.HBox([title, self.by]), self.text, w.HBox([self.pin, self.apply])]
        super().__init__([*rows[:2], *([ticks] if ticks else []), self.resolved, rows[2]])
        self.add_class("aster-goal-editor")
        self.add_class(goal_class(worker))
        # the goal as last shown or applied: text, pin, ticked areas
        self.synced: tuple[str, bool, tuple[str, ...]] = ("", False, self.ticked)

    @property
    def ticked(self) -> tuple[str, ...]:
        """The areas whose checkbox is ticked, in the task's order."""
        return tuple(a for a, box in self.areas.items() if box.value)

    @property
    def edited(self) -> bool:
        """Whether the researcher changed the text, the pin or the areas since the last sync."""
        return (self.text.value, self.pin.value, self.ticked) != self.synced

    def show(self, goal: Goal | None, *, past: bool = False) -> None:
        """Show ``goal``; the text, pin and ticks only if the researcher has no unsaved
        edit (the resolved areas always: they are what the agents work on).

        ``past``: a goal of the replayed past, shown whatever was edited (an unsaved edit
        is dropped) with the editor read-only: nobody steers the past.
        """
        self.set_enabled(not past)
        if goal is None:
            self.by.value = "no goal yet"
            if past:
                self.text.value, self.resolved.value = "", ""
                self.synced = ("", self.pin.value, self.ticked)
            return
        self.by.value = f"set by {html.escape(goal.set_by)}" + (" · pinned" if goal.pinned else "")
        self.resolved.value = html.escape(areas_text(goal))
        if past or not self.edited:
            self.text.value, self.pin.value = goal.text, goal.pinned
            for a, box in self.areas.items():
                box.value = a in goal.areas
            self.synced = (goal.text, goal.pinned, self.ticked)

    def set_enabled(self, enabled: bool) -> None:
        """Let the researcher edit and apply (live), or not (replay)."""
        for x in (self.text, self.pin, self.apply, *self.areas.values()):
            x.disabled = not enabled


class GoalEditors(ReplayView, w.VBox):
    """Every worker's goal, editable; Apply calls ``run.steer(worker, text, pin=...,
    areas=...)`` (areas only when the ticks differ from the goal's: untouched, the areas
    stay as chosen, by whoever chose them).

    When the planner revises a goal the editor follows, unless it holds an unsaved edit.
    ``show(upto=t)`` (the replay slider) shows each worker's goal as after evaluation ``t``,
    read-only; ``upto=None`` returns to the run's goals.

    Args:
        run: the run whose workers' goals to edit.
        interval: minimum seconds between redraws.
        errors: where exceptions go (a dashboard shares one); a new sink, shown below the
            editors, if ``None``.
    """

    _follows = (GoalChanged, RunStateChanged)

    def __init__(
        self, run: Run, *, interval: float = DEFAULT_INTERVAL, errors: ErrorSink | None = None
    ) -> None:
        super().__init__()
        sink = self._live(run, interval=interval, errors=errors)
        self.editors: dict[str, GoalEditor] = {}
        for name in sorted(run.workers):
            ed = GoalEditor(worker=name, areas=run.task.area_names)
            ed.apply.on_click(
                self._guard(lambda _, n=name: self.apply(n), f"applying {name}'s goal")
            )
            self.editors[name] = ed
        box = list(self.editors.values())
        self.children = (style(), *box) if errors is not None else (style(), *box, sink.widget)
        self.add_class("aster-goals")
        self._draw()

    def goal(self, worker: str) -> Goal | None:
        """``worker``'s current goal record, or ``None`` before it has one."""
        if worker not in self.editors:
            raise KeyError(f"no worker {worker!r}; workers are {sorted(self.editors)}")
        goals = self.run.goals
        return goals.info(worker) if worker in goals else None

    def apply(self, worker: str, _: Any = None) -> None:
        """Steer ``worker`` to its editor's text and ticked areas, pinned as its checkbox says.

        Raises:
            AreaError: no area is ticked (the task has some).
            RuntimeError: the editors show a replayed past (go live first).
        """
        if self.upto is not None:
            raise RuntimeError("the goals shown are a replay of the past: tick live to steer")
        ed = self.editors[worker]
        text, pin, ticked = ed.text.value, ed.pin.value, ed.ticked
        now = self.goal(worker)
        areas = ticked if now is None or ticked != now.areas else None
        self.run.steer(worker, text, pin=pin, areas=areas)
        ed.synced = (text.strip(), pin, ticked)
        ed.text.value = text.strip()
        self.refresh()

    def _on_event(self, e: Any) -> None:
        if self.upto is None:  # replaying: the past does not change
            super()._on_event(e)

    def _draw(self) -> None:
        if self.upto is not None:
            then = goals_at(self.run, self.upto)
            for name, ed in self.editors.items():
                ed.show(then.get(name), past=True)
            return
        for name, ed in self.editors.items():
            # back from a replay, what it showed is synced (no edit): the present replaces it
            ed.show(self.goal(name))
