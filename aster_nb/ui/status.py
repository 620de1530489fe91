"""The status line: state, round, evaluations, attempts/s, best score, spend, errors, the
evaluations in flight with the oldest one's age (slow evaluations: a training run), and the
sandbox's isolation warning when it runs degraded."""

from __future__ import annotations

import asyncio
import contextlib
import html
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from .base import ErrorSink, LiveView, style
from .throttle import DEFAULT_INTERVAL

if TYPE_CHECKING:
    from ..run import Run, RunStatus


def _score(x: float | None) -> str:
    return "–" if x is None else f"{x:.6g}"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def status_html(
    s: RunStatus,
    *,
    warning: str | None = None,
    in_flight: int = 0,
    oldest: float | None = None,
) -> str:
    """The status line's HTML: a state badge and the numbers, the reason when there is one,
    and ``warning`` (the sandbox's isolation warning) in small text when given.
    ``in_flight`` evaluations running, the oldest for ``oldest`` seconds, are shown when
    there are any."""
    running = []
    if in_flight > 0:
        age = f" · oldest {_age(oldest)}" if oldest is not None else ""
        running = [f"{in_flight} evaluating{age}"]
    facts = [
        f"round {s.round}",
        f"{s.evaluations:,} evaluations",
        *running,
        f"{s.attempts_per_s:.1f} attempts/s",
        f"best {_score(s.best_score)}",
        f"${s.usd:.4f} · {s.tokens:,} tokens",
    ]
    out = (
        f'<span class="aster-state aster-state-{html.escape(s.state)}">{html.escape(s.state)}'
        "</span> "
        '<span class="aster-status-facts">'
        + "".join(f"<span>{html.escape(f)}</span>" for f in facts)
        + "</span>"
    )
    why = s.error if s.state == "failed" and s.error else s.reason
    if why:
        out += f' <span class="aster-status-reason">{html.escape(why)}</span>'
    if warning:
        # stays visible for the whole run: a degraded sandbox is a standing condition
        out += f' <span class="aster-status-sandbox">⚠ {html.escape(warning)}</span>'
    return out


class StatusLine(LiveView, w.VBox):
    """A run's state (idle, running, paused, stopped, finished, failed with the error),
    round, evaluations, attempts per second, best score and spend, plus an error area for
    exceptions of the dashboard's own tasks.

    Args:
        run: the run to show.
        interval: minimum seconds between redraws.
        errors: the error sink to show (a dashboard shares one among its views); a new
            one if ``None``.
    """

    def __init__(
        self, run: Run, *, interval: float = DEFAULT_INTERVAL, errors: ErrorSink | None = None
    ) -> None:
        self.line = w.HTML(value="")
        self.line.add_class("aster-status-line")
        self._ticking: asyncio.TimerHandle | None = None
        super().__init__()
        sink = self._live(run, interval=interval, errors=errors)
        self.children = (style(), self.line, sink.widget)
        self.add_class("aster-status")
        self._draw()

    @property
    def state(self) -> str:
        """The state word the line shows."""
        return self.run.status.state

    def _draw(self) -> None:
        # isolation_warning: None when the sandbox runs with full isolation (or an executor
        # predating the attribute)
        executor = getattr(self.run, "executor", None)
        warning = getattr(executor, "isolation_warning", None)
        stats: dict[str, Any] = {}
        with contextlib.suppress(Exception):  # an executor without counters shows none
            stats = dict(executor.stats)  # type: ignore[union-attr]
        in_flight = int(stats.get("in_flight") or 0)
        self.line.value = status_html(
            self.run.status,
            warning=warning,
            in_flight=in_flight,
            oldest=stats.get("oldest_seconds"),
        )
        if in_flight:
            self._tick()

    def _tick(self) -> None:
        """Redraw in a second while evaluations run: their age moves without any event
        (a slow evaluation may report nothing for minutes)."""
        if self._ticking is not None and not self._ticking.cancelled():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # drawn outside a loop (a test, a script): nothing to schedule on

        def again() -> None:
            self._ticking = None
            self.throttle.mark()

        self._ticking = loop.call_later(1.0, again)

    def close(self) -> None:
        """Stop the ticking redraw too."""
        if self._ticking is not None:
            self._ticking.cancel()
            self._ticking = None
        super().close()
