"""Model failures in a row: a run-wide watch, and a wrapper that reports every call to it.

A model that fails every call (a revoked key, a gateway gone, a model the account may not
use) used to look like a run that merely found nothing: a failed call makes no program, so
it spends no evaluation budget, and the run went on calling (or ended with ``evaluations:
0`` and exit code 0). The watch counts failed calls in a row across every model of a run
(agents, handoffs, merges, planning); at ``limit`` it trips, calls ``on_trip`` (a run stops
starting attempts and ends ``failed``), and every later call through :class:`Watched` is
refused at once instead of waiting out its retries.

:func:`preflight` and :func:`aclose` reach the backend under any wrappers, so a run checks
and closes its models without knowing how they are wrapped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .base import Model, Request, Response
from .spend import BudgetExceeded

__all__ = ["FailureWatch", "ModelsFailing", "Watched", "aclose", "preflight"]


class ModelsFailing(Exception):
    """The run's model calls failed too many times in a row; no more calls are made."""


@dataclass(slots=True)
class FailureWatch:
    """Counts failed model calls, in a row and in all.

    Attributes:
        limit: failures in a row that trip the watch; ``None`` never trips.
        on_trip: called once, with :attr:`reason`, when the watch trips.
        streak: failures since the last success.
        failures: failed calls in all (since the watch was made).
        last: the last failure's message.
        reason: why the watch tripped (``""`` until it does).
    """

    limit: int | None = 20
    on_trip: Callable[[str], None] | None = None
    streak: int = 0
    failures: int = 0
    last: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"the model failure limit must be >= 1 or None, got {self.limit}")

    @property
    def tripped(self) -> bool:
        return bool(self.reason)

    def failed(self, error: str) -> None:
        """Note one failed call (``error`` says what happened)."""
        self.failures += 1
        self.streak += 1
        self.last = error
        if self.limit is not None and self.streak >= self.limit and not self.reason:
            self.reason = f"{self.streak} model calls failed in a row; last: {error}"
            if self.on_trip is not None:
                self.on_trip(self.reason)

    def succeeded(self) -> None:
        self.streak = 0

    def reset(self) -> None:
        """Allow calls again (the researcher asked for another round); totals are kept."""
        self.streak = 0
        self.reason = ""


class Watched:
    """``model`` with every call reported to ``watch``; refused once the watch has tripped.

    A call that raises counts as a failure, except a spending cap (:class:`BudgetExceeded`:
    nothing was called) and a cancellation (the caller gave up; a caller's own timeout is
    reported by the caller, see :meth:`FailureWatch.failed`).
    """

    def __init__(self, model: Model, watch: FailureWatch) -> None:
        self.model = model
        self.watch = watch
        self.name = model.name

    async def complete(self, request: Request) -> Response:
        if self.watch.tripped:
            raise ModelsFailing(self.watch.reason)
        try:
            resp = await self.model.complete(request)
        except BudgetExceeded:
            raise
        except Exception as e:
            self.watch.failed(f"{type(e).__name__}: {e}")
            raise
        self.watch.succeeded()
        return resp

    async def preflight(self) -> None:
        await preflight(self.model)

    async def aclose(self) -> None:
        await aclose(self.model)

    def __repr__(self) -> str:
        return f"Watched({self.model!r})"


def _backend(model: object, method: str) -> Callable[[], object] | None:
    """``model``'s ``method``, or that of the model it wraps (``Metered``, ``Watched``)."""
    while isinstance(model, Model):
        fn = getattr(model, method, None)
        if callable(fn):
            return fn
        model = getattr(model, "model", None)
    return None


async def preflight(model: Model) -> None:
    """Check ``model`` can be called before a run starts (its ``preflight()``, if it has one).

    Raises:
        UserInputError: what the user must fix (a missing key, an unreachable API).
    """
    fn = _backend(model, "preflight")
    if fn is not None:
        await fn()  # type: ignore[misc]


async def aclose(model: Model) -> None:
    """Release ``model``'s connections (its ``aclose()``, if it has one)."""
    fn = _backend(model, "aclose")
    if fn is not None:
        await fn()  # type: ignore[misc]
