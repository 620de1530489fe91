"""Claude through the Messages API, behind the one model protocol.

Built on the official SDK's ``AsyncAnthropic`` with the SDK's own retries turned off, so
the policy of :mod:`~aster_nb.llm.retry` is the only one: exponential backoff with full
jitter, the server's ``retry-after`` honoured, bounded in count and in total time.
Concurrency is bounded by a semaphore and, optionally, by request and token rate limits
(:mod:`~aster_nb.llm.ratelimit`). Each reply reports its usage and cost; spending is
booked, and capped, by :class:`~aster_nb.llm.spend.Metered` alone (``spend=`` puts the
model's calls behind one).

The API key goes to the SDK clients and nowhere else: it is not kept on the model, not in
its repr, not in any log line or exception raised from here (failures are re-raised as
:class:`ModelCallError`, whose message is scrubbed and which carries no SDK objects).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any

import anthropic
from anthropic.resources.messages import AsyncMessages

from ..errors import UserInputError
from .anthropic_failures import failure_of, scrub
from .base import Request, Response, ToolCall, Usage
from .pricing import Prices, cost, prices_for
from .ratelimit import TokenBucket
from .retry import Failure, ModelCallError, RetryPolicy
from .spend import BudgetExceeded, Metered, Spend, input_token_bound, report_retry

__all__ = ["DEFAULT_MODEL", "AnthropicModel", "ModelCallError"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "claude-sonnet-4-5"

# Recent SDKs (2.x) have no ``temperature`` parameter and would reject the call, so it is
# sent only where the installed SDK takes it.
_TAKES_TEMPERATURE = "temperature" in inspect.signature(AsyncMessages.create).parameters
# Connections per SDK client (see AnthropicModel.__init__).
_POOL = 25


class AnthropicModel:
    """Claude via ``anthropic.AsyncAnthropic``, implementing :class:`~aster_nb.llm.base.Model`.

    Args:
        model: the Claude model id.
        api_key: the API key; ``None`` lets the SDK read ``ANTHROPIC_API_KEY``. Handed to
            the SDK client only.
        base_url: the API's address; ``None`` lets the SDK read ``ANTHROPIC_BASE_URL``.
        max_concurrency: calls in flight at once (also the HTTP connections kept open).
        requests_per_minute: request rate cap (every attempt counts); ``None`` for none.
        tokens_per_minute: token rate cap; each attempt takes its estimated input plus
            ``max_tokens`` and gives back the difference once the true usage is known.
        max_retries: retries after the first attempt for transient failures (429, 529,
            5xx, timeouts, dropped connections).
        max_retry_seconds: no retry starts later than this many seconds after the call
            began (a ``retry-after`` reaching past it ends the call at once); the total
            time is thus at most this plus one ``timeout``.
        backoff_base: first backoff ceiling in seconds; it doubles per retry.
        backoff_max: backoff ceiling in seconds.
        timeout: seconds one attempt may take.
        prices: USD per million tokens; looked up from ``model`` when omitted.
        spend: a budget and ledger shared with other models; ``None`` for none. Calls
            then go through a :class:`~aster_nb.llm.spend.Metered` on it (refusals also
            count in :attr:`stats`); ``Metered(AnthropicModel(...), spend)`` is the same
            without them.
        cache_system: send the system prompt as a cached block (``cache_control``).
    """

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        api_key: str | None = None,
        base_url: str | None = None,
        max_concurrency: int = 64,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_retries: int = 8,
        max_retry_seconds: float = 300.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        timeout: float = 600.0,
        prices: Prices | None = None,
        spend: Spend | None = None,
        cache_system: bool = True,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if max_retry_seconds <= 0 or timeout <= 0:
            raise ValueError(
                f"max_retry_seconds and timeout must be > 0, got {max_retry_seconds}, {timeout}"
            )
        self.name = model
        self.model = model
        self.prices = prices if prices is not None else prices_for(model)
        self.spend = spend
        self.cache_system = cache_system
        self.max_concurrency = max_concurrency
        self.retry = RetryPolicy(
            max_retries=max_retries,
            max_seconds=float(max_retry_seconds),
            backoff_base=float(backoff_base),
            backoff_max=float(backoff_max),
        )
        self.timeout = float(timeout)
        self._metered = (
            Metered(_Unmetered(self), spend, prices=self.prices) if spend is not None else None
        )
        self._sem = asyncio.Semaphore(max_concurrency)
        self._rpm = TokenBucket(per_minute=requests_per_minute) if requests_per_minute else None
        self._tpm = TokenBucket(per_minute=tokens_per_minute) if tokens_per_minute else None
        # The HTTP pool scans all its connections at every request event (and polls each
        # idle socket), so one pool's CPU per call grows with its size. Large concurrency is
        # therefore spread over several SDK clients of at most _POOL connections each, every
        # connection kept alive. Limits is built from the SDK's own type, whichever HTTP
        # library that SDK version uses.
        shards = -(-max_concurrency // _POOL)
        size = -(-max_concurrency // shards)
        limits = type(anthropic.DEFAULT_CONNECTION_LIMITS)(
            max_connections=size, max_keepalive_connections=size
        )
        self._clients = [
            anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                max_retries=0,  # ours is the only retry policy
                timeout=self.timeout,
                http_client=anthropic.DefaultAsyncHttpxClient(limits=limits, timeout=self.timeout),
            )
            for _ in range(shards)
        ]
        self._load = [0] * shards  # attempts in flight per client
        self.stats: dict[str, float] = dict.fromkeys(
            (
                "calls",
                "ok",
                "failures",
                "refused",
                "cancelled",
                "retries",
                "retry_wait_s",
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "usd",
                "in_flight",
                "max_in_flight",
            ),
            0,
        )

    def __repr__(self) -> str:
        return (
            f"AnthropicModel(model={self.model!r}, base_url={self._safe_base_url()!r}, "
            f"max_concurrency={self.max_concurrency}, max_retries={self.retry.max_retries}, "
            f"spend={self.spend!r})"
        )

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        for c in self._clients:
            await c.close()

    async def __aenter__(self) -> AnthropicModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def preflight(self, *, timeout: float = 10.0) -> None:
        """Check what would otherwise fail every call of a run, before the run starts.

        A key must be set, and the API must answer one cheap request (``GET
        /v1/models/{model}``: free, unmetered, no retries) within ``timeout`` seconds.
        Any answer but an authentication error counts as reachable: a gateway may not
        serve ``/v1/models`` (404), and a 429 or 5xx passes (calls retry those).

        Raises:
            UserInputError: no key; the API at the base URL did not answer; or it
                refused the key. The message names what to set.
        """
        client = self._clients[0]
        if not (client.api_key or client.auth_token):
            raise UserInputError(
                f"no API key for model {self.model!r}: set ANTHROPIC_API_KEY (or pass "
                "api_key=), or use the offline model (--model offline), which needs none"
            )
        url = self._safe_base_url()
        failure: Failure | None = None
        try:
            await client.models.retrieve(self.model, timeout=timeout)
        except anthropic.AnthropicError as e:
            failure = self._failure(e)  # plain data: no SDK object leaves this block
        if failure is None:
            return
        if failure.kind in ("timeout", "connection"):
            raise UserInputError(
                f"cannot reach the Anthropic API at {url} ({failure.message}): check "
                "ANTHROPIC_BASE_URL and the network, or use the offline model (--model offline)"
            )
        if failure.kind in ("auth", "permission"):
            raise UserInputError(
                f"the Anthropic API at {url} refused the key for model {self.model!r} "
                f"({failure.message}): check ANTHROPIC_API_KEY"
            )
        log.warning("preflight of %s at %s: %s (going ahead)", self.model, url, failure.message)

    # -- the protocol --------------------------------------------------------------------

    async def complete(self, request: Request) -> Response:
        if self._metered is None:
            return await self._complete(request)
        try:
            return await self._metered.complete(request)
        except BudgetExceeded:
            self.stats["refused"] += 1
            raise

    async def _complete(self, request: Request) -> Response:
        """One call, unmetered: the reply with its usage, cost and retries."""
        t0 = time.monotonic()
        self.stats["calls"] += 1
        # Rate-limit tokens are a realistic guess (~4 characters a token), not the bound.
        tpm_take = input_token_bound(request) // 4 + request.max_tokens
        try:
            msg, retries = await self._call(self._params(request), tpm_take)
        except BaseException as e:
            self.stats["failures"] += 1
            if isinstance(e, asyncio.CancelledError):
                self.stats["cancelled"] += 1
            raise
        usage = _usage(msg)
        usd = cost(usage, self.prices)
        s = self.stats
        s["ok"] += 1
        s["input_tokens"] += usage.input_tokens
        s["output_tokens"] += usage.output_tokens
        s["cache_read_tokens"] += usage.cache_read_tokens
        s["cache_write_tokens"] += usage.cache_write_tokens
        s["usd"] += usd
        texts, calls = [], []
        for block in msg.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                calls.append(ToolCall(id=block.id, name=block.name, arguments=dict(block.input)))
        return Response(
            text="".join(texts),
            tool_calls=tuple(calls),
            usage=usage,
            latency=time.monotonic() - t0,  # what the caller waited, retries included
            model=msg.model,
            stop_reason=msg.stop_reason or "end_turn",
            cost_usd=usd,
            retries=retries,
        )

    # -- internals -----------------------------------------------------------------------

    def _params(self, request: Request) -> dict[str, Any]:
        p: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": list(request.messages),  # as given: content may be blocks
        }
        if _TAKES_TEMPERATURE:
            p["temperature"] = request.temperature
        if request.system:
            if self.cache_system:
                p["system"] = [
                    {
                        "type": "text",
                        "text": request.system,
                        "cache_control": {"type": "ephemeral"},
                    }
                ]
            else:
                p["system"] = request.system
        if request.tools:
            p["tools"] = list(request.tools)
        return p

    async def _call(self, params: dict[str, Any], tpm_take: int) -> tuple[Any, int]:
        """``(reply, retries)`` for ``params``, retrying transient failures; ModelCallError if none."""
        deadline = time.monotonic() + self.retry.max_seconds
        attempt = 0
        while True:
            failure: Failure | None = None
            async with self._sem:
                if self._rpm is not None:
                    await self._rpm.take(1)
                if self._tpm is not None:
                    await self._tpm.take(tpm_take)
                self.stats["in_flight"] += 1
                self.stats["max_in_flight"] = max(
                    self.stats["max_in_flight"], self.stats["in_flight"]
                )
                # The least loaded client: with the semaphore, none exceeds its pool.
                shard = min(range(len(self._load)), key=self._load.__getitem__)
                self._load[shard] += 1
                try:
                    msg = await self._clients[shard].messages.create(**params)
                except anthropic.AnthropicError as e:
                    failure = self._failure(e)
                finally:
                    self.stats["in_flight"] -= 1
                    self._load[shard] -= 1
            if failure is None:
                if self._tpm is not None:
                    self._tpm.give(tpm_take - _usage(msg).total)
                return msg, attempt
            if self._tpm is not None:
                self._tpm.give(tpm_take)  # a failed attempt is not billed
            delay = self.retry.delay(attempt, failure.retry_after)
            give_up = self.retry.give_up(failure, attempt, delay, deadline - time.monotonic())
            if give_up is not None:
                # Raised outside the except block, so no SDK exception (which holds the
                # request and its auth header) is chained to ours.
                why = f"{self.model}: {failure.message} ({give_up})"
                log.warning("model call failed: %s", why)
                raise ModelCallError(
                    why,
                    kind=failure.kind,
                    status=failure.status,
                    attempts=attempt + 1,
                    retryable=failure.retryable,
                )
            self.stats["retries"] += 1
            self.stats["retry_wait_s"] += delay
            report_retry()
            log.info(
                "%s: %s; retry %d of %d in %.2f s",
                self.model,
                failure.message,
                attempt + 1,
                self.retry.max_retries,
                delay,
            )
            await asyncio.sleep(delay)
            attempt += 1

    def _failure(self, e: anthropic.AnthropicError) -> Failure:
        return failure_of(e, timeout=self.timeout, secrets=self._secrets())

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets())

    def _secrets(self) -> tuple[str | None, ...]:
        client = self._clients[0]
        return (client.api_key, client.auth_token)

    def _safe_base_url(self) -> str:
        url = self._clients[0].base_url
        return self._scrub(str(url.copy_with(username=None, password=None)))


def _usage(msg: Any) -> Usage:
    u = msg.usage
    return Usage(
        input_tokens=u.input_tokens or 0,
        output_tokens=u.output_tokens or 0,
        cache_read_tokens=getattr(u, "cache_read_input_tokens", None) or 0,
        cache_write_tokens=getattr(u, "cache_creation_input_tokens", None) or 0,
    )


class _Unmetered:
    """An :class:`AnthropicModel`'s own calls, for the :class:`Metered` it holds."""

    def __init__(self, model: AnthropicModel) -> None:
        self.name = model.name
        self.complete = model._complete
