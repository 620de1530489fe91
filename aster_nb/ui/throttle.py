"""A coalescing redraw throttle: many "something changed" marks, at most one draw per interval.

Event handlers only call :meth:`Throttle.mark` (O(1)); the draw runs later on the event
loop and reads the state as it is then, so intermediate states are dropped and the last
state is always drawn. Nothing sleeps or blocks: one ``loop.call_later`` handle at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

DEFAULT_INTERVAL = 0.25
"""Seconds between draws of a light view (status, goals, handoffs): at most 4 a second."""

MAX_BUSY = 0.2
"""Most of the event loop's time a throttle's draws may take: a draw that took ``d`` seconds
delays the next by at least ``d / MAX_BUSY``, so a costly view slows itself, not the kernel."""


class Throttle:
    """Coalesce marks into draws, at most one per ``interval`` seconds.

    The first mark after a quiet period draws on the next loop iteration (not inside the
    caller, which is usually an event handler); marks during the following ``interval``
    schedule one more draw at its end, which shows the latest state.

    Args:
        draw: redraws the view from the current state; its exceptions go to ``on_error``.
        interval: minimum seconds between the starts of two draws.
        max_busy: most of the loop's time the draws may take: after a draw of ``d``
            seconds the next waits at least ``d / max_busy`` (in (0, 1]).
        on_error: receives an exception raised by ``draw`` (the throttle keeps working).
    """

    def __init__(
        self,
        draw: Callable[[], None],
        *,
        interval: float = DEFAULT_INTERVAL,
        max_busy: float = MAX_BUSY,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval}")
        if not 0 < max_busy <= 1:
            raise ValueError(f"max_busy must be in (0, 1], got {max_busy}")
        self.draw = draw
        self.interval = interval
        self.max_busy = max_busy
        self.gap = interval  # seconds from one draw's start to the next: grows with draw cost
        self.on_error = on_error
        self.draws = 0  # how many times draw ran: the tests count these, not seconds
        self.marks = 0
        self.dirty = False
        self.closed = False
        self._last = float("-inf")  # monotonic time the last draw started
        self._handle: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> bool:
        """Whether a draw is scheduled."""
        return self._handle is not None

    def mark(self) -> None:
        """Note that the view is out of date; a draw follows within ``interval``."""
        self.marks += 1
        self.dirty = True
        if self._handle is not None or self.closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a plain script): nothing can pile up, draw now
            self._fire()
            return
        delay = max(0.0, self._last + self.gap - time.monotonic())
        self._handle = loop.call_later(delay, self._fire)

    def flush(self) -> None:
        """Draw now if out of date (e.g. right after a user's own action)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.dirty:
            self._fire()

    def close(self) -> None:
        """Cancel a pending draw; later marks do nothing."""
        self.closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        if self.closed or not self.dirty:
            return
        self.dirty = False
        self._last = time.monotonic()
        self.draws += 1
        try:
            self.draw()
        except Exception as e:
            if self.on_error is None:
                raise
            self.on_error(e)
        finally:
            took = time.monotonic() - self._last
            self.gap = max(self.interval, took / self.max_busy)
