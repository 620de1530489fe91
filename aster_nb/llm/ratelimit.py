"""Request and token rate limits of a model: an async token bucket.

The Messages API limits requests and tokens per minute, and over short intervals too; a
backend takes from a bucket before each attempt, so a burst of concurrent calls waits here
instead of collecting 429s.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["TokenBucket"]


class TokenBucket:
    """An async token bucket refilled at ``per_minute`` and holding at most ``burst``.

    Args:
        per_minute: tokens added per minute.
        burst: the bucket's size; 10 seconds' worth by default, since the API enforces its
            limits over short intervals too, not just per minute.
    """

    def __init__(self, *, per_minute: float, burst: float | None = None) -> None:
        if per_minute <= 0:
            raise ValueError(f"per_minute must be > 0, got {per_minute}")
        self.rate = per_minute / 60.0
        self.burst = float(burst) if burst is not None else max(1.0, per_minute / 6.0)
        self.level = self.burst
        self._t = time.monotonic()
        self._lock = asyncio.Lock()  # waiters are served in arrival order

    async def take(self, amount: float) -> None:
        """Wait until ``amount`` can be taken; one larger than the bucket waits for a full one."""
        async with self._lock:
            need = min(amount, self.burst)
            while True:
                self._refill()
                if self.level >= need:
                    self.level -= amount  # may go negative: later takers repay the debt
                    return
                await asyncio.sleep((need - self.level) / self.rate)

    def give(self, amount: float) -> None:
        """Return ``amount`` (negative to charge more after the fact)."""
        self._refill()
        self.level = min(self.burst, self.level + amount)

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.burst, self.level + (now - self._t) * self.rate)
        self._t = now
