"""Live curves of slow evaluations: what each run reports while it trains.

A task's evaluator may call ``report(step, {"loss": ...})`` while it runs (see
:mod:`aster_nb.task`); each report reaches the run's bus as an
:class:`~aster_nb.events.EvaluationProgress`. This view plots the task's ``intermediate``
value (or, when the task names none, the first value reported) against the step, one line
per evaluation in flight or recently finished: enough to see a run going wrong before its
score arrives, and which runs early stopping cut short. The store keeps every report too
(:meth:`Store.curve <aster_nb.store.Store.curve>`), for a notebook after the run.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import plotly.graph_objects as go

from ..events import EvaluationProgress
from .base import ErrorSink, LiveView, style
from .figure import FigureWidget
from .throttle import DEFAULT_INTERVAL

if TYPE_CHECKING:
    from ..run import Run

__all__ = ["ProgressView"]

MAX_CURVES = 12  # lines shown: the most recent evaluations
MAX_POINTS = 2000  # points kept per line


class ProgressView(LiveView, w.VBox):
    """Intermediate values of the latest evaluations, live.

    Args:
        run: the run to show.
        name: the reported value to plot; default the task's ``intermediate``, else the
            first name an evaluation reports.
        height: the figure's height in pixels.
        interval: minimum seconds between redraws.
        errors: where exceptions go (a dashboard shares one); a new sink if ``None``.
    """

    _follows = (EvaluationProgress,)

    def __init__(
        self,
        run: Run,
        *,
        name: str | None = None,
        height: int = 300,
        interval: float = DEFAULT_INTERVAL,
        errors: ErrorSink | None = None,
    ) -> None:
        plan = getattr(getattr(run, "task", None), "evaluation", None)
        self.name: str | None = name or (plan.intermediate if plan is not None else "") or None
        # (worker, attempt, seed) -> [(step, value)], most recently started last
        self.curves: OrderedDict[tuple[str, int, int], list[tuple[int, float]]] = OrderedDict()
        fig = go.Figure(
            layout={
                "height": height,
                "margin": {"l": 50, "r": 10, "t": 30, "b": 40},
                "title": {"text": "Evaluations in flight", "font": {"size": 13}},
                "xaxis": {"title": {"text": "step"}},
                "yaxis": {"title": {"text": self.name or "reported value"}},
                "template": "simple_white",
            }
        )
        self.figure = FigureWidget(fig)
        super().__init__()
        sink = self._live(run, interval=interval, errors=errors)
        parts = (style(), self.figure)
        self.children = parts if errors is not None else (*parts, sink.widget)
        self.add_class("aster-progress")
        self._from_store()
        if self.curves:
            self._draw()

    def _from_store(self) -> None:
        """Start with the current best's stored curves (one per seed): a reopened run, or a
        run between evaluations, shows what a good run looks like."""
        best = getattr(self._run_best(), "id", None)
        if best is None or self.name is None:
            return
        for p in self.run.store.curve(best, self.name)[: MAX_CURVES * MAX_POINTS]:
            line = self.curves.setdefault(("best", -1, p.seed), [])
            if len(line) < MAX_POINTS:
                line.append((p.step, p.value))
        while len(self.curves) > MAX_CURVES:
            self.curves.popitem(last=False)

    def _run_best(self) -> Any:
        try:
            return self.run.best
        except Exception:  # a run without a planner yet
            return None

    def _on_event(self, e: Any) -> None:
        # inside the bus's emit: O(1), never a redraw
        if not isinstance(e, EvaluationProgress):
            return
        if self.name is None:
            self.name = next(iter(e.values), None)
        if self.name not in e.values:
            return
        key = (e.worker, e.n, e.seed)
        line = self.curves.get(key)
        if line is None:
            line = self.curves[key] = []
            while len(self.curves) > MAX_CURVES:
                self.curves.popitem(last=False)
        if len(line) < MAX_POINTS:
            line.append((e.step, e.values[self.name]))
        self.throttle.mark()

    def _draw(self) -> None:
        traces = []
        for (worker, n, seed), points in self.curves.items():
            if worker == "best" and n < 0:
                label = "current best"
            elif n >= 0:
                label = f"{worker} #{n}"
            else:
                label = f"{worker or 'run'} (base/merge)"
            traces.append(
                go.Scatter(
                    x=[s for s, _ in points],
                    y=[v for _, v in points],
                    mode="lines",
                    name=f"{label} seed {seed}",
                    hovertemplate=f"{label}, seed {seed}<br>step %{{x}}<br>%{{y:.4g}}<extra></extra>",
                )
            )
        with self.figure.batch_update():
            self.figure.data = ()
            for t in traces:
                self.figure.add_trace(t)
            self.figure.layout.yaxis.title.text = self.name or "reported value"
