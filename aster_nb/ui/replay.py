"""A slider over the stored evaluations that redraws the views as they were, and says so.

In replay a banner (``.aster-replay-banner``) names the evaluation shown and how to go back
to live, and the marked widgets (a dashboard marks itself) carry ``aster-replaying``: a
researcher must never take the past for the run's present.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import ipywidgets as w

from ..events import ProgramEvaluated, RunStateChanged
from .base import ErrorSink, LiveView, style
from .throttle import DEFAULT_INTERVAL

if TYPE_CHECKING:
    from ..run import Run


_BANNER_STYLE = (
    "background:#fff3cd;color:#664d03;border:1px solid #e0b000;border-radius:4px;padding:2px 8px"
)


class Replayable(Protocol):
    def show(self, *, upto: int | None) -> None: ...

    def close(self) -> None: ...


class ReplaySlider(LiveView, w.VBox):
    """Scrub through the stored history: at ``t`` the views draw the run as it was after its
    first ``t`` evaluations; "live" returns them to following the run.

    Works on a running, finished or reopened run: the slider's range is the store's count
    of evaluations.

    Args:
        run: the run to replay.
        views: views with ``show(upto=...)`` to drive (a dashboard passes its map,
            timeline and handoff feed); ``None`` makes an :class:`ArchiveMapView` and a
            :class:`TimelineView` shown under the slider, with the replay banner above it
            (a dashboard places :attr:`banner` itself).
        interval: minimum seconds between updates of the slider's range.
        errors: where exceptions go (a dashboard shares one); a new sink if ``None``.
    """

    _follows = (ProgramEvaluated, RunStateChanged)

    def __init__(
        self,
        run: Run,
        *,
        views: tuple[Replayable, ...] | None = None,
        interval: float = DEFAULT_INTERVAL,
        errors: ErrorSink | None = None,
    ) -> None:
        total = run.store.count()
        self.slider = w.IntSlider(
            value=total,
            min=0,
            max=total,
            description="evaluation",
            continuous_update=True,
            layout=w.Layout(width="100%"),
        )
        self.live = w.Checkbox(value=True, description="live", indent=False)
        self.banner = w.HTML(value="", layout=w.Layout(display="none"))
        self.banner.add_class("aster-replay-banner")
        # widgets that carry the aster-replaying class while replaying (a dashboard adds itself)
        self.marked: list[w.DOMWidget] = []
        super().__init__()
        sink = self._live(run, interval=interval, errors=errors)
        self._own = views is None
        if views is None:
            from .archive_map import ArchiveMapView
            from .timeline import TimelineView

            views = (ArchiveMapView(run, errors=sink), TimelineView(run, errors=sink))
        self.views = tuple(views)
        self._syncing = False  # our own writes to the slider are not the user scrubbing
        row = w.HBox([self.slider, self.live], layout=w.Layout(width="100%"))
        parts: tuple[Any, ...] = (style(), row)
        if self._own:
            parts = (style(), self.banner, row)
            parts += tuple(v for v in self.views if isinstance(v, w.Widget))
        self.children = parts if errors is not None else (*parts, sink.widget)
        self.add_class("aster-replay")
        self.slider.observe(self._guard(self._scrubbed, "replaying"), "value")
        self.live.observe(self._guard(self._live_toggled, "going live"), "value")

    @property
    def upto(self) -> int | None:
        """The evaluation shown, ``None`` when following the run."""
        return None if self.live.value else self.slider.value

    @property
    def replaying(self) -> bool:
        """Whether the views show the past (the banner is up)."""
        return not self.live.value

    def _mark(self) -> None:
        """Show or hide the banner and the marked widgets' ``aster-replaying`` class."""
        t = self.upto
        for x in (self, *self.marked):
            (x.remove_class if t is None else x.add_class)("aster-replaying")
        if t is None:
            self.banner.layout.display = "none"
            self.banner.value = ""
            return
        self.banner.layout.display = None
        # inline colours too: the banner must stand out even where the CSS is not loaded
        self.banner.value = (
            f"<div style='{_BANNER_STYLE}'><b>REPLAY</b> · showing the run as after "
            f"evaluation {t} of {self.slider.max} ({self._names()}) · tick "
            "<i>live</i> to follow the run</div>"
        )

    def _names(self) -> str:
        """What the replay rewinds, as the banner says it."""
        names = {
            "ArchiveMapView": "map",
            "TimelineView": "timeline",
            "HandoffFeed": "handoffs",
            "GoalEditors": "goals",
            "BestDiff": "best diff",
        }
        return ", ".join(names.get(type(v).__name__, type(v).__name__) for v in self.views)

    def seek(self, t: int) -> None:
        """Show the views as after evaluation ``t`` (leaves live mode)."""
        if not 0 <= t <= self.slider.max:
            raise ValueError(f"t must be within 0..{self.slider.max} evaluations, got {t}")
        self.live.value = False
        if self.slider.value == t:
            self._scrubbed({"new": t})
        self.slider.value = t

    def follow(self) -> None:
        """Return to following the run."""
        self.live.value = True

    def _scrubbed(self, change: Any) -> None:
        if self._syncing:
            return
        if self.live.value:
            self._syncing = True
            try:
                self.live.value = False  # the user moved it: stop following
            finally:
                self._syncing = False
        for v in self.views:
            v.show(upto=int(change["new"]))
        self._mark()

    def _live_toggled(self, change: Any) -> None:
        if self._syncing:
            return
        if change["new"]:
            for v in self.views:
                v.show(upto=None)
            self.refresh()
        else:
            for v in self.views:
                v.show(upto=self.slider.value)
        self._mark()

    def _draw(self) -> None:
        total = self.run.store.count()
        self._syncing = True
        try:
            self.slider.max = total
            if self.live.value:
                self.slider.value = total
        finally:
            self._syncing = False
        self._mark()  # "of N" grows while the run goes on

    def close(self) -> None:
        if self._own:
            for v in self.views:
                v.close()
        super().close()
