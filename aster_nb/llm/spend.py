"""A run's budget and ledger, shared by every model the run calls.

A call first reserves a conservative estimate of what it may cost (an upper bound on its
input tokens, billed at the dearest input rate, plus ``max_tokens`` of output); the
reservation is refused if it, plus what is spent, plus what other calls in flight hold,
could pass a cap. When the call ends its reservation is settled with the true usage, or
released if nothing was billed. Spending therefore never passes a cap, however many calls
run at once. Everything here is synchronous and runs on the event loop's thread, so there
is nothing between a check and its update for another task to slip into.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from .base import Model, Request, Response, Usage
from .pricing import Prices, cost

log = logging.getLogger(__name__)

Tags = tuple[tuple[str, str], ...]


class BudgetExceeded(Exception):
    """A call was refused because it could take spending past a cap.

    Attributes:
        cap: ``"usd"`` or ``"tokens"``.
        limit: the cap.
        spent: settled so far.
        reserved: held by calls in flight.
        estimate: what the refused call reserved.
    """

    def __init__(
        self, *, cap: str, limit: float, spent: float, reserved: float, estimate: float
    ) -> None:
        unit = "USD" if cap == "usd" else "tokens"
        fmt = (lambda v: f"{v:.4f}") if cap == "usd" else (lambda v: f"{v:.0f}")
        super().__init__(
            f"budget: max_{cap}={fmt(limit)} {unit} would be exceeded: spent {fmt(spent)} + "
            f"in flight {fmt(reserved)} + this call's estimate {fmt(estimate)} = "
            f"{fmt(spent + reserved + estimate)} {unit}"
        )
        self.cap = cap
        self.limit = limit
        self.spent = spent
        self.reserved = reserved
        self.estimate = estimate


@dataclass(frozen=True, slots=True)
class Reservation:
    """Budget held by one call until it is settled or released.

    Attributes:
        id: unique within its :class:`Spend`.
        usd: the cost estimate held.
        tokens: the token estimate held.
        tags: the accounting keys the call's totals go under.
    """

    id: int
    usd: float
    tokens: int
    tags: Tags = ()


@dataclass(slots=True)
class Totals:
    """What a set of calls consumed.

    Attributes:
        usd: cost settled.
        usage: tokens settled, by kind.
        calls: calls that got a reply.
        retries: attempts retried after a transient failure.
        failures: calls that ended without a reply (budget refusals not included).
    """

    usd: float = 0.0
    usage: Usage = field(default_factory=Usage)
    calls: int = 0
    retries: int = 0
    failures: int = 0

    @property
    def tokens(self) -> int:
        return self.usage.total

    def as_dict(self) -> dict[str, Any]:
        u = self.usage
        return {
            "usd": self.usd,
            "tokens": self.tokens,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_read_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
            "calls": self.calls,
            "retries": self.retries,
            "failures": self.failures,
        }


class Spend:
    """A budget and ledger shared across all models of a run.

    Args:
        max_usd: cap on cost in USD; ``None`` for no cap.
        max_tokens: cap on tokens of every kind (input, output, cache); ``None`` for no cap.
    """

    def __init__(self, *, max_usd: float | None = None, max_tokens: int | None = None) -> None:
        if max_usd is not None and max_usd < 0:
            raise ValueError(f"max_usd must be >= 0, got {max_usd}")
        if max_tokens is not None and max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        self.max_usd = max_usd
        self.max_tokens = max_tokens
        self.total = Totals()
        self.refused = 0
        self.reserved_usd = 0.0
        self.reserved_tokens = 0
        self._open: dict[int, Reservation] = {}
        self._ids = itertools.count()
        self._by: dict[tuple[str, str], Totals] = {}

    # -- the budget ------------------------------------------------------------------------

    def reserve(self, usd: float = 0.0, tokens: int = 0, *, tags: Tags = ()) -> Reservation:
        """Hold ``usd`` and ``tokens`` for a call about to start.

        Raises:
            BudgetExceeded: spent + in flight + this estimate could pass a cap.
        """
        if usd < 0 or tokens < 0:
            raise ValueError(f"estimates must be >= 0, got usd={usd}, tokens={tokens}")
        if self.max_usd is not None and self.total.usd + self.reserved_usd + usd > self.max_usd:
            self.refused += 1
            raise BudgetExceeded(
                cap="usd",
                limit=self.max_usd,
                spent=self.total.usd,
                reserved=self.reserved_usd,
                estimate=usd,
            )
        if (
            self.max_tokens is not None
            and self.total.tokens + self.reserved_tokens + tokens > self.max_tokens
        ):
            self.refused += 1
            raise BudgetExceeded(
                cap="tokens",
                limit=self.max_tokens,
                spent=self.total.tokens,
                reserved=self.reserved_tokens,
                estimate=tokens,
            )
        r = Reservation(id=next(self._ids), usd=usd, tokens=tokens, tags=tags)
        self._open[r.id] = r
        self.reserved_usd += usd
        self.reserved_tokens += tokens
        return r

    def settle(self, reservation: Reservation, usage: Usage, cost: float) -> None:
        """Record a call's true ``usage`` and ``cost`` and free its reservation."""
        self._close(reservation)
        if cost > reservation.usd + 1e-12 or usage.total > reservation.tokens:
            # The estimate is meant to be an upper bound; if it was not, say so loudly.
            log.warning(
                "a call used more than it reserved: %.6f USD / %d tokens vs %.6f / %d",
                cost,
                usage.total,
                reservation.usd,
                reservation.tokens,
            )
        for t in self._targets(reservation.tags):
            t.usd += cost
            t.usage = t.usage + usage
            t.calls += 1

    def release(self, reservation: Reservation, *, failed: bool = True) -> None:
        """Free a reservation whose call billed nothing (``failed`` counts it as a failure)."""
        self._close(reservation)
        if failed:
            for t in self._targets(reservation.tags):
                t.failures += 1

    def note_retry(self, tags: Tags = ()) -> None:
        """Count one retried attempt under ``tags``."""
        for t in self._targets(tags):
            t.retries += 1

    def book(
        self,
        usage: Usage,
        cost: float,
        *,
        tags: Tags = (),
        calls: int = 0,
        failures: int = 0,
        retries: int = 0,
    ) -> None:
        """Add what calls metered by another ledger consumed (a worker in another process
        keeps its own, see :mod:`aster_nb.actors`): they count against this ledger's caps
        from now on, and its totals are the run's."""
        for t in self._targets(tags):
            t.usd += cost
            t.usage = t.usage + usage
            t.calls += calls
            t.failures += failures
            t.retries += retries

    # -- the ledger ------------------------------------------------------------------------

    @property
    def usd(self) -> float:
        return self.total.usd

    @property
    def tokens(self) -> int:
        return self.total.tokens

    @property
    def calls(self) -> int:
        return self.total.calls

    @property
    def retries(self) -> int:
        return self.total.retries

    @property
    def failures(self) -> int:
        return self.total.failures

    @property
    def in_flight(self) -> int:
        return len(self._open)

    def by(self, key: str) -> dict[str, Totals]:
        """Totals for each value of tag ``key`` (``worker``, ``agent``, ``purpose``, ...)."""
        return {v: t for (k, v), t in self._by.items() if k == key}

    def summary(self) -> dict[str, Any]:
        """Everything as plain data (for JSON or a notebook table)."""
        keys = sorted({k for k, _ in self._by})
        return {
            **self.total.as_dict(),
            "max_usd": self.max_usd,
            "max_tokens": self.max_tokens,
            "refused": self.refused,
            "in_flight": self.in_flight,
            "by": {k: {v: t.as_dict() for v, t in self.by(k).items()} for k in keys},
        }

    def __repr__(self) -> str:
        return (
            f"Spend(usd={self.usd:.4f}/{self.max_usd}, tokens={self.tokens}/{self.max_tokens}, "
            f"calls={self.calls}, retries={self.retries}, failures={self.failures}, "
            f"in_flight={self.in_flight})"
        )

    def _close(self, r: Reservation) -> None:
        if self._open.pop(r.id, None) is None:
            raise ValueError(f"reservation {r.id} is not open (settled or released twice?)")
        self.reserved_usd -= r.usd
        self.reserved_tokens -= r.tokens
        if not self._open:
            self.reserved_usd = 0.0  # no float residue once nothing is in flight

    def _targets(self, tags: Tags) -> list[Totals]:
        out = [self.total]
        for tag in dict(tags).items():  # one entry per key: a repeated key counts once
            out.append(self._by.setdefault(tag, Totals()))
        return out


# Tokens the Messages API adds for the tool definitions' framing; generous on purpose.
_TOOLS_OVERHEAD = 1024


def input_token_bound(request: Request) -> int:
    """An upper bound on a request's input tokens, from its size in bytes.

    A token covers at least one byte of UTF-8, so bytes bound tokens; the JSON punctuation
    counted with the messages stands in for the tokens each turn's framing costs.
    """
    n = len(request.system.encode()) + 16
    for m in request.messages:
        n += len(json.dumps(m, ensure_ascii=False, default=str).encode()) + 8
    if request.tools:
        n += len(json.dumps(list(request.tools), default=str).encode()) + _TOOLS_OVERHEAD
    return n


class Metered:
    """Any model under a :class:`Spend`: reserve an upper bound before a call, settle after.

    The only place spend is booked: backends report what each call used (``usage`` and
    ``cost_usd`` in the :class:`~aster_nb.llm.base.Response`, retries through
    :func:`report_retry`) and keep no ledger; the caps and the ledger are here. The
    reservation bills every input token at the dearest input rate (a cache write) and the
    reply at ``max_tokens``. With no prices the calls cost nothing in USD and only a token
    cap binds.

    Args:
        model: the model to call.
        spend: the run's ledger and caps.
        prices: USD per million tokens; default the model's own ``prices``, if it has any.
    """

    def __init__(self, model: Model, spend: Spend, *, prices: Prices | None = None) -> None:
        self.model = model
        self.spend = spend
        self.prices: Prices | None = (
            prices if prices is not None else getattr(model, "prices", None)
        )
        self.name = model.name

    async def complete(self, request: Request) -> Response:
        bound = input_token_bound(request)
        usd = 0.0
        if self.prices is not None:
            worst = bound * self.prices.max_input + request.max_tokens * self.prices.output
            usd = worst / 1e6
        tags = (*request.tags, ("model", self.name), ("purpose", request.purpose))
        r = self.spend.reserve(usd, bound + request.max_tokens, tags=tags)
        t0 = time.monotonic()
        scope = _call.set((self.spend, tags))
        try:
            resp = await self.model.complete(request)
        except BaseException:
            self.spend.release(r)
            raise
        finally:
            _call.reset(scope)
        c = cost(resp.usage, self.prices) if self.prices is not None else resp.cost_usd
        self.spend.settle(r, resp.usage, c)
        return replace(resp, cost_usd=c, latency=resp.latency or time.monotonic() - t0)


# The spend and tags of the metered call in progress in this task, for report_retry.
_call: ContextVar[tuple[Spend, Tags] | None] = ContextVar("aster_nb_metered_call", default=None)


def report_retry() -> None:
    """Count one retried attempt of the model call in progress.

    A backend calls this before each retry; the :class:`Metered` that made the call (if
    any) books it under the call's tags at once, so a call cancelled mid-retries still
    counts the retries it made.
    """
    current = _call.get()
    if current is not None:
        spend, tags = current
        spend.note_retry(tags)
