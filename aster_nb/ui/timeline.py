"""The score timeline: best so far per worker, overall and the planner's, against
evaluations or wall time; one long-lived FigureWidget redrawn in place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w

from .. import figures, snapshot
from ..events import ProgramEvaluated, RoundFinished, RunStateChanged
from .archive_map import MAP_INTERVAL
from .base import ErrorSink, ReplayView, style
from .figure import FigureWidget

if TYPE_CHECKING:
    from ..run import Run

X_AXES = (("evaluations", "seq"), ("wall time", "elapsed"))


class TimelineView(ReplayView, w.VBox):
    """Best score so far against evaluations (or wall time, a toggle): one line per worker,
    the best of all, and the top planner's current best at each round's end.

    Args:
        run: the run to show.
        x: ``"seq"`` (evaluations) or ``"elapsed"`` (wall time) first.
        height: the figure's height in pixels.
        interval: minimum seconds between redraws.
        errors: where exceptions go (a dashboard shares one); a new sink, shown below the
            figure, if ``None``.
    """

    _follows = (ProgramEvaluated, RoundFinished, RunStateChanged)

    def __init__(
        self,
        run: Run,
        *,
        x: str = "seq",
        height: int = 460,
        interval: float = MAP_INTERVAL,
        errors: ErrorSink | None = None,
    ) -> None:
        if x not in dict(X_AXES).values():
            raise ValueError(f"x must be 'seq' (evaluations) or 'elapsed' (wall time), got {x!r}")
        self.upto: int | None = None
        self.toggle = w.ToggleButtons(options=X_AXES, value=x, style={"button_width": "auto"})
        fig = figures.timeline_figure(snapshot.timeline(run), x=x, workers=snapshot.workers(run))
        fig.update_layout(height=height)
        self.figure = FigureWidget(fig)
        super().__init__()
        sink = self._live(run, interval=interval, errors=errors)
        parts = (style(), self.toggle, self.figure)
        self.children = parts if errors is not None else (*parts, sink.widget)
        self.add_class("aster-timeline")
        self.toggle.observe(self._guard(lambda _: self.refresh(), "switching the x axis"), "value")

    @property
    def x(self) -> str:
        return self.toggle.value

    def _on_event(self, e: Any) -> None:
        if self.upto is None and isinstance(e, self._follows):
            self.throttle.mark()

    def _draw(self) -> None:
        tl = snapshot.timeline(self.run, upto=self.upto)
        figures.timeline_update(self.figure, tl, x=self.x)
