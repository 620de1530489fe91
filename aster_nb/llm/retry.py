"""When a failed model call is worth another attempt, how long to wait, and when to stop.

Plain data and arithmetic, no SDK: a backend reduces each failed attempt to a
:class:`Failure` (no SDK objects, no headers, so nothing that holds a key), asks its
:class:`RetryPolicy` for the delay and whether to give up, and, when it does, raises
:class:`ModelCallError`. The policy: exponential backoff with full jitter, the server's
``retry-after`` honoured, bounded in count and in total time.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "RETRY_STATUSES",
    "Failure",
    "ModelCallError",
    "RetryPolicy",
    "retry_after",
    "status_kind",
]

# Statuses worth another attempt: request/lock timeouts, rate limits, server errors and
# 529 overloaded. Every other 4xx says the request itself is wrong.
RETRY_STATUSES = frozenset({408, 409, 429})
_KINDS = {
    400: "bad_request",
    401: "auth",
    403: "permission",
    404: "not_found",
    408: "timeout",
    409: "conflict",
    413: "too_large",
    429: "rate_limit",
    529: "overloaded",
}


class ModelCallError(Exception):
    """A model call that failed for good.

    Attributes:
        kind: ``rate_limit``, ``overloaded``, ``server_error``, ``timeout``, ``connection``,
            ``bad_request``, ``auth``, ... (what the last attempt hit).
        status: the HTTP status of the last attempt, if it got one.
        attempts: attempts made.
        retryable: whether the last failure was transient (retries or time ran out).
    """

    def __init__(
        self, message: str, *, kind: str, status: int | None, attempts: int, retryable: bool
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.attempts = attempts
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt, reduced to plain data (no SDK objects, no headers)."""

    kind: str
    status: int | None
    message: str
    retryable: bool
    retry_after: float | None = None


@dataclass(slots=True)
class RetryPolicy:
    """How a model retries transient failures.

    Attributes:
        max_retries: retries after the first attempt.
        max_seconds: no retry starts later than this many seconds after the call began
            (a ``retry-after`` reaching past it ends the call at once).
        backoff_base: first backoff ceiling in seconds; it doubles per retry.
        backoff_max: backoff ceiling in seconds.
        rng: the jitter's source.
    """

    max_retries: int = 8
    max_seconds: float = 300.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry ``attempt + 1``."""
        if retry_after is not None:
            # Do as told, plus a little jitter so callers told the same time do not all
            # come back in the same instant.
            return retry_after * (1.0 + 0.1 * self.rng.random())
        # Full jitter: uniform over [0, ceiling] spreads retries out best under contention.
        return self.rng.uniform(0.0, min(self.backoff_max, self.backoff_base * 2.0**attempt))

    def give_up(self, failure: Failure, attempt: int, delay: float, left: float) -> str | None:
        """Why not to retry after ``failure`` on ``attempt`` (0 for the first), or None.

        Args:
            delay: the wait before the next attempt (:meth:`delay`).
            left: seconds left of :attr:`max_seconds`.
        """
        if not failure.retryable:
            return "not retryable"
        if attempt >= self.max_retries:
            return f"gave up after {attempt + 1} attempts"
        if delay > left:
            return (
                f"gave up: the next attempt would start after max_retry_seconds="
                f"{self.max_seconds:g} (wait {delay:.2f} s, {max(left, 0):.2f} s left)"
            )
        return None


def status_kind(status: int) -> str:
    """What an HTTP status means for a model call (``rate_limit``, ``server_error``, ...)."""
    if status in _KINDS:
        return _KINDS[status]
    return "server_error" if status >= 500 else "client_error"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, then ``retry-after``)."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw) * scale)
        except ValueError:
            pass
        if name == "retry-after":  # an HTTP date
            try:
                when = email.utils.parsedate_to_datetime(raw).timestamp()
            except (TypeError, ValueError):
                return None
            return max(0.0, when - time.time())
    return None
