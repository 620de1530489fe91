"""The dashboard: every view of a run on one page, sharing one error area."""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as w

from .archive_map import MAP_INTERVAL, ArchiveMapView
from .base import ErrorSink, style
from .controls import Controls
from .diff import BestDiff
from .goals import GoalEditors
from .handoffs import HandoffFeed
from .progress import ProgressView
from .replay import ReplaySlider
from .status import StatusLine
from .throttle import DEFAULT_INTERVAL
from .timeline import TimelineView

if TYPE_CHECKING:
    from ..run import Run


def _half() -> w.Layout:
    return w.Layout(flex="1 1 0", min_width="380px")


class Dashboard(w.VBox):
    """Watch and steer a run from a notebook: put ``Dashboard(run)`` last in a cell.

    Status line, controls, archive map and timeline (with a replay slider that rewinds
    the whole dashboard: map, timeline, handoff feed, goals and best diff, with a banner
    saying so while it does), goal editors, handoff feed, and the current best's diff; for
    a task whose evaluations report intermediate values (``[evaluation] intermediate``),
    their live curves too. A click on the map shows a program and offers to fork a
    new run from it (:attr:`forked` is the latest). It works on a run that is running, paused,
    finished or reopened from its store (``await Run.open(path)``). Exceptions of its tasks
    and redraws are shown in the status line and kept in :attr:`errors`.

    Args:
        run: the run.
        rounds: rounds the Start button (and a fork's start button) runs (``None``: until
            stopped).
        worker: the worker the archive map shows first.
        interval: minimum seconds between redraws of the light views (status, buttons,
            goals, handoffs, diff, slider).
        map_interval: minimum seconds between redraws of the map and the timeline.
    """

    def __init__(
        self,
        run: Run,
        *,
        rounds: int | None = None,
        worker: str | None = None,
        interval: float = DEFAULT_INTERVAL,
        map_interval: float = MAP_INTERVAL,
    ) -> None:
        self.run = run
        self.sink = ErrorSink()
        kw = {"errors": self.sink}
        self.status = StatusLine(run, interval=interval, **kw)
        self.controls = Controls(run, rounds=rounds, interval=interval, **kw)
        self.archive_map = ArchiveMapView(
            run, worker=worker, interval=map_interval, fork_rounds=rounds, **kw
        )
        self.timeline = TimelineView(run, interval=map_interval, **kw)
        self.goals = GoalEditors(run, interval=interval, **kw)
        self.handoffs = HandoffFeed(run, interval=interval, **kw)
        self.diff = BestDiff(run, interval=interval, **kw)
        self.replay = ReplaySlider(
            run,
            views=(self.archive_map, self.timeline, self.handoffs, self.goals, self.diff),
            interval=interval,
            **kw,
        )
        plan = getattr(getattr(run, "task", None), "evaluation", None)
        self.progress = (
            ProgressView(run, interval=interval, **kw)
            if plan is not None and plan.watched
            else None
        )
        self.archive_map.layout, self.timeline.layout = _half(), _half()
        self.goals.layout, self.handoffs.layout = _half(), _half()
        wrap = w.Layout(flex_flow="row wrap", width="100%")
        super().__init__(
            [
                style(),
                self.status,
                self.replay.banner,  # on top: in replay, nothing below is the present
                self.controls,
                w.HBox([self.archive_map, self.timeline], layout=wrap),
                self.replay,
                *([self.progress] if self.progress is not None else []),
                w.HBox([self.goals, self.handoffs], layout=wrap),
                self.diff,
            ]
        )
        self.add_class("aster-dashboard")
        self.replay.marked.append(self)

    @property
    def views(self) -> dict[str, w.Widget]:
        """The views by name."""
        views: dict[str, w.Widget] = {
            "status": self.status,
            "controls": self.controls,
            "archive_map": self.archive_map,
            "timeline": self.timeline,
            "replay": self.replay,
            "goals": self.goals,
            "handoffs": self.handoffs,
            "diff": self.diff,
        }
        if self.progress is not None:
            views["progress"] = self.progress
        return views

    @property
    def forked(self) -> Run | None:
        """The latest run forked with the map's "fork from this program" button (live: it
        can be started, stepped or shown in its own dashboard), ``None`` before any."""
        runs = self.archive_map.fork_panel.forked
        return runs[-1] if runs else None

    @property
    def errors(self) -> list[BaseException]:
        """Every exception the dashboard's tasks, callbacks and redraws met, oldest first."""
        return self.sink.errors

    def refresh(self) -> None:
        """Redraw every view now."""
        for v in self.views.values():
            v.refresh()  # type: ignore[attr-defined]

    def close(self) -> None:
        """Unsubscribe every view from the run's events and close the widgets."""
        for v in self.views.values():
            v.close()
        super().close()
