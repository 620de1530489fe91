"""The archive map of one worker: a long-lived FigureWidget redrawn in place; click a cell
centre (or a program) to see its code and diff to its parent, and to fork a run from it."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from .. import figures, snapshot
from ..events import ProgramEvaluated, RoundFinished, RunStateChanged
from .base import ErrorSink, ReplayView, style
from .figure import FigureWidget
from .fork import ForkPanel
from .highlight import code_html, diff_html

if TYPE_CHECKING:
    from ..run import Run

MAP_INTERVAL = 0.5
"""Seconds between map redraws: a 1,000-cell map takes ~0.2 s to draw in a headless
Chromium, and a snapshot recomputes Voronoi regions in the kernel, so at most 2 a second."""


class ArchiveMapView(ReplayView, w.VBox):
    """A worker's archive as a map (cells colored by elite score, programs on top), with a
    worker dropdown and, under the map, the code of the elite whose cell centre was clicked
    and its diff to its parent, with a button that forks a new run from it
    (:class:`~aster_nb.ui.fork.ForkPanel`, :attr:`fork_panel`).

    The ``go.FigureWidget`` (:attr:`figure`) is built once and then rewritten in place by
    :func:`aster_nb.figures.archive_map_update`: same traces, same object.

    Args:
        run: the run to show.
        worker: the worker shown first (default: the first in sorted order).
        bins: score bins (colors) of the map.
        height: the figure's height in pixels.
        interval: minimum seconds between redraws.
        errors: where exceptions go (a dashboard shares one); a new sink, shown below the
            map, if ``None``.
        fork_rounds: rounds the fork panel's "start the fork" runs (``None``: until
            stopped).
    """

    _follows = (ProgramEvaluated, RoundFinished, RunStateChanged)

    def __init__(
        self,
        run: Run,
        *,
        worker: str | None = None,
        bins: int = 8,
        height: int = 460,
        interval: float = MAP_INTERVAL,
        errors: ErrorSink | None = None,
        fork_rounds: int | None = 1,
    ) -> None:
        names = snapshot.workers(run)
        if not names:
            raise ValueError("the run has no workers to map")
        if worker is not None and worker not in names:
            raise KeyError(f"no worker {worker!r}; workers are {names}")
        self.bins = bins
        self.upto: int | None = None  # None: follow the run; t: as after evaluation t
        self.dropdown = w.Dropdown(options=names, value=worker or names[0], description="worker")
        # keeps each worker's replayed archive and recent Voronoi regions between redraws
        self.maps = snapshot.ArchiveMaps(run)
        fig = figures.archive_map_figure(self.maps.snapshot(self.worker), bins=bins)
        fig.update_layout(height=height)
        self.figure = FigureWidget(fig)
        # a click lands on the closest point: a cell's centre (its elite) or a program
        self.figure.data[bins + 1].on_click(self._clicked)
        self.figure.data[bins + 2].on_click(self._clicked)
        self.elite = w.HTML(value="<i>Click a cell centre to see its elite's code.</i>")
        self.elite.add_class("aster-elite")
        self.selected: str | None = None
        super().__init__()
        sink = self._live(run, interval=interval, errors=errors)
        self.fork_panel = ForkPanel(run, sink=sink, rounds=fork_rounds)
        parts = (style(), self.dropdown, self.figure, self.elite, self.fork_panel)
        self.children = parts if errors is not None else (*parts, sink.widget)
        self.add_class("aster-archive-map")
        self.dropdown.observe(self._guard(lambda _: self.refresh(), "switching worker"), "value")

    @property
    def worker(self) -> str:
        return self.dropdown.value

    def _on_event(self, e: Any) -> None:
        if self.upto is not None or not isinstance(e, self._follows):
            return  # replaying: the past does not change
        if isinstance(e, ProgramEvaluated) and e.worker != self.worker:
            return  # another worker's program is not on this map (until its round's end)
        self.throttle.mark()

    def _draw(self) -> None:
        snap = self.maps.snapshot(self.worker, upto=self.upto)
        figures.archive_map_update(self.figure, snap, bins=self.bins)

    # -- the elite panel -------------------------------------------------------------------

    def _clicked(self, trace: Any, points: Any, selector: Any) -> None:
        try:
            for i in points.point_inds:
                elite = trace.customdata[i]
                if elite:
                    self.select(str(elite))
                    return
        except Exception as e:
            self.sink.report(e, "showing a clicked cell")

    def select(self, program_id: str) -> None:
        """Show ``program_id``'s code and its diff to its first parent under the map, and
        offer to fork a run from it."""
        p = self.run.store.get(program_id)
        if p is None:
            raise KeyError(f"no program {program_id!r} in the run's store")
        self.selected = program_id
        score = "–" if p.score is None else f"{p.score:.6g}"
        head = (
            f"<b>program <code>{html.escape(p.id)}</code></b> · score {score} · "
            f"{html.escape(p.origin)} by {html.escape(p.worker or '–')} in round {p.round}"
        )
        parent = self.run.store.get(p.parents[0]) if p.parents else None
        if parent is None:
            diff = "<i>no stored parent: this is a first program</i>"
        else:
            diff = diff_html(
                parent.code, p.code, a_name=f"parent {parent.id}", b_name=f"program {p.id}"
            )
        self.fork_panel.select(program_id)
        self.elite.value = (
            f"{head}<details open><summary>diff to its parent</summary>{diff}</details>"
            f"<details><summary>code</summary>{code_html(p.code)}</details>"
        )
