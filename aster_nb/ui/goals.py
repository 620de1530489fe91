"""Goal editors: one text area per worker, a pin toggle, Apply, and who set the goal."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..events import GoalChanged, RunStateChanged
from .base import ErrorSink, LiveView, style
from .throttle import DEFAULT_INTERVAL

if TYPE_CHECKING:
    from ..records import Goal
    from ..run import Run


def goal_class(worker: str) -> str:
    """The CSS class of a worker's editor: ``aster-goal-p0-w0`` for ``p0.w0``."""
    return "aster-goal-" + worker.replace(".", "-")


class GoalEditor(w.VBox):
    """One worker's goal: a Textarea, a pin Checkbox, Apply, and a "set by ..." label.

    Args:
        worker: the worker's name.
    """

    def __init__(self, *, worker: str) -> None:
        self.worker = worker
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
        super().__init__([w.HBox([title, self.by]), self.text, w.HBox([self.pin, self.apply])])
        self.add_class("aster-goal-editor")
        self.add_class(goal_class(worker))
        self.synced: tuple[str, bool] = ("", False)  # the goal as last shown or applied

    @property
    def edited(self) -> bool:
        """Whether the researcher changed the text or the pin since the last sync."""
        return (self.text.value, self.pin.value) != self.synced

    def show(self, goal: Goal | None) -> None:
        """Show ``goal``; the text and pin only if the researcher has no unsaved edit."""
        if goal is None:
            self.by.value = "no goal yet"
            return
        self.by.value = f"set by {html.escape(goal.set_by)}" + (" · pinned" if goal.pinned else "")
        if not self.edited:
            self.text.value, self.pin.value = goal.text, goal.pinned
            self.synced = (goal.text, goal.pinned)


class GoalEditors(LiveView, w.VBox):
    """Every worker's goal, editable; Apply calls ``run.steer(worker, text, pin=...)``.

    When the planner revises a goal the editor follows, unless it holds an unsaved edit.

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
            ed = GoalEditor(worker=name)
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
        """Steer ``worker`` to its editor's text, pinned as its checkbox says."""
        ed = self.editors[worker]
        text, pin = ed.text.value, ed.pin.value
        self.run.steer(worker, text, pin=pin)
        ed.synced = (text.strip(), pin)
        ed.text.value = text.strip()
        self.refresh()

    def _draw(self) -> None:
        for name, ed in self.editors.items():
            ed.show(self.goal(name))
