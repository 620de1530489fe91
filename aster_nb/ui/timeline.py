"""The score timeline: best so far per worker, overall and the planner's, against
evaluations or wall time; one long-lived FigureWidget redrawn in place. For a noisy task
each new best whose score is a mean over seeds has an error bar (its standard deviation)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w
import numpy as np

from .. import figures, snapshot
from ..events import ProgramEvaluated, RoundFinished, RunStateChanged
from ..figures.timelines import EXTRA
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
        self._error_bars(tl)

    def _error_bars(self, tl: Any) -> None:
        """Error bars on the new-best markers whose score is a mean over seeds."""
        best = tl.frame["best"].to_numpy(dtype=float)
        finite = np.isfinite(best)
        before = np.maximum.accumulate(
            np.concatenate([[-np.inf], np.where(finite, best, -np.inf)[:-1]])
        )
        rise = np.flatnonzero(finite & (best > before))  # the rows the "new best" trace marks
        spreads = []
        for pid in tl.frame["id"].to_numpy()[rise]:
            p = self.run.store.get(str(pid))
            spread = p.result.spread if p is not None and p.result is not None else None
            spreads.append(spread if spread is not None else 0.0)
        trace = self.figure.data[len(self.figure.data) - len(EXTRA) + EXTRA.index("new best")]
        shown = any(spreads)
        trace.error_y = {"type": "data", "array": spreads, "visible": shown, "thickness": 1.5}
