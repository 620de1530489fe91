"""Pause and stop, shared by a run and every worker under it."""

from __future__ import annotations

import asyncio


class Control:
    """A switch agents check before each new attempt.

    ``pause()`` lets attempts already started finish (and be stored) and starts no new one
    until ``resume()``; ``stop()`` starts no new attempt ever again. Both take effect at
    once: an attempt that had not started when they returned never starts.
    """

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self.stopping = False
        self.reason = ""  # why it stopped, when not by a researcher (e.g. a spending cap)

    @property
    def paused(self) -> bool:
        return not self._open.is_set() and not self.stopping

    def pause(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def stop(self, reason: str = "") -> None:
        self.stopping = True
        self.reason = reason or self.reason
        self._open.set()  # wake paused agents so they see the stop

    async def admit(self) -> bool:
        """Wait while paused; ``True`` if a new attempt may start, ``False`` once stopping."""
        while not self._open.is_set():
            await self._open.wait()
        return not self.stopping
