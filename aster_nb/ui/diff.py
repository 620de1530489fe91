"""The current best program against the initial program or the previous best, highlighted;
in replay, the best as it was then."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..events import RoundFinished, RunStateChanged
from ..records import code_hash
from .base import ErrorSink, ReplayView, style
from .highlight import diff_html
from .past import best_at
from .throttle import DEFAULT_INTERVAL

if TYPE_CHECKING:
    from ..records import Program
    from ..run import Run

MODES = ("initial", "previous")


def previous_best(run: Run, best: Program) -> Program | None:
    """The top planner's current best before ``best`` became it (``None`` if it never
    improved on the initial program)."""
    rounds = run.store.rounds()
    mine = rounds[
        (rounds["planner"] == run.planner.name)
        & (rounds["best_id"] == best.id)
        & (rounds["improved"] == 1)
    ]
    if not len(mine):
        return None
    base_id = mine["base_id"].iloc[0]
    return run.store.get(base_id) if isinstance(base_id, str) else None


METRICS_SHOWN = 6
"""Metrics shown open; more fold into a "more" row (curves report dozens)."""


def metrics_html(start: Program | None, best: Program) -> str:
    """The best's metrics beside the starting program's (held-out figures, losses, ...):
    what the score alone does not say."""
    mine = best.result.metrics if best.result is not None else {}
    theirs = start.result.metrics if start is not None and start.result is not None else {}
    names = [k for k, v in mine.items() if isinstance(v, (int, float))]
    if not names:
        return ""

    def row(k: str) -> str:
        a = theirs.get(k)
        a_txt = f"{a:.4g}" if isinstance(a, (int, float)) else "–"
        return (
            f"<tr><td><code>{html.escape(k)}</code></td><td>{a_txt}</td><td>{mine[k]:.4g}</td></tr>"
        )

    head = "<tr><th>metric</th><th>start</th><th>best</th></tr>"
    shown = "".join(row(k) for k in names[:METRICS_SHOWN])
    table = f"<table class='aster-metrics'>{head}{shown}</table>"
    if len(names) > METRICS_SHOWN:
        rest = "".join(row(k) for k in names[METRICS_SHOWN:])
        table += (
            f"<details><summary>{len(names) - METRICS_SHOWN} more metrics</summary>"
            f"<table class='aster-metrics'>{rest}</table></details>"
        )
    return table


class BestDiff(ReplayView, w.VBox):
    """A unified diff of the run's current best against the initial program or against the
    previous best (a toggle), syntax-highlighted in the kernel with Pygments.
    ``show(upto=t)`` (the replay slider) shows the best as after evaluation ``t``.

    Args:
        run: the run to show.
        against: ``"initial"`` or ``"previous"``, the toggle's first position.
        interval: minimum seconds between redraws.
        errors: where exceptions go (a dashboard shares one); a new sink, shown below the
            diff, if ``None``.
    """

    _follows = (RoundFinished, RunStateChanged)

    def __init__(
        self,
        run: Run,
        *,
        against: str = "initial",
        interval: float = DEFAULT_INTERVAL,
        errors: ErrorSink | None = None,
    ) -> None:
        if against not in MODES:
            raise ValueError(f"against must be one of {MODES}, got {against!r}")
        self.toggle = w.ToggleButtons(
            options=[("vs initial", "initial"), ("vs previous best", "previous")],
            value=against,
            style={"button_width": "auto"},
        )
        self.title = w.HTML(value="")
        self.title.add_class("aster-diff-title")
        self.metrics = w.HTML(value="")
        self.metrics.add_class("aster-diff-metrics")
        self.body = w.HTML(value="")
        self.body.add_class("aster-diff-body")
        super().__init__()
        sink = self._live(run, interval=interval, errors=errors)
        parts = (style(), self.toggle, self.title, self.metrics, self.body)
        self.children = parts if errors is not None else (*parts, sink.widget)
        self.add_class("aster-diff")
        self.toggle.observe(self._guard(lambda _: self.refresh(), "switching the diff"), "value")
        self._shown: tuple[str | None, str, int | None] | None = None
        self._draw()

    @property
    def against(self) -> str:
        return self.toggle.value

    def _on_event(self, e: Any) -> None:
        if self.upto is None:  # replaying: the past does not change
            super()._on_event(e)

    def _draw(self) -> None:
        best = self.run.best if self.upto is None else best_at(self.run, self.upto)
        key = (best.id if best is not None else None, self.against, self.upto)
        if key == self._shown:
            return  # the best only changes at a round's end; a diff is not cheap to redo
        self._shown = key
        if best is None:
            self.title.value, self.body.value = "No best program yet.", ""
            self.metrics.value = ""
            return
        start = self.run.store.get(code_hash(self.run.task.initial_code))
        self.metrics.value = metrics_html(start, best)
        score = "–" if best.score is None else f"{best.score:.6g}"
        if best.score is not None and best.result is not None and best.result.repeats > 1:
            score += f" ± {best.result.spread or 0:.2g} over {best.result.repeats} seeds"
        when = "" if self.upto is None else f" as after evaluation {self.upto}"
        head = f"best{when} <code>{html.escape(best.id)}</code> (score {score})"
        if self.against == "initial":
            self.title.value = f"{head} against the initial program"
            self.body.value = diff_html(
                self.run.task.initial_code, best.code, a_name="initial", b_name=f"best {best.id}"
            )
            return
        prev = previous_best(self.run, best)
        if prev is None:
            self.title.value = f"{head}: no previous best (the run has not improved on its start)"
            self.body.value = ""
            return
        pscore = "–" if prev.score is None else f"{prev.score:.6g}"
        self.title.value = (
            f"{head} against the previous best <code>{html.escape(prev.id)}</code> (score {pscore})"
        )
        self.body.value = diff_html(
            prev.code, best.code, a_name=f"previous {prev.id}", b_name=f"best {best.id}"
        )
