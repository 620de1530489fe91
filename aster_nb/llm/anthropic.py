"""Claude through the Messages API, behind the one model protocol.

Built on the official SDK's ``AsyncAnthropic`` with the SDK's own retries turned off, so
the policy here is the only one: exponential backoff with full jitter, the server's
``retry-after`` honoured, bounded in count and in total time. Concurrency is bounded by a
semaphore and, optionally, by request and token rate limits; each call reserves its
worst-case cost in a shared :class:`~aster_nb.llm.spend.Spend` before it starts.

The API key goes to the SDK clients and nowhere else: it is not kept on the model, not in
its repr, not in any log line or exception raised from here (failures are re-raised as
:class:`ModelCallError`, whose message is scrubbed and which carries no SDK objects).
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Any

import anthropic
from anthropic.resources.messages import AsyncMessages

from ..errors import UserInputError
from .base import Request, Response, ToolCall, Usage
from .pricing import Prices, cost, prices_for
from .spend import BudgetExceeded, Reservation, Spend, Tags, input_token_bound

log = logging.getLogger(__name__)

DEFAULT_MODEL = "claude-sonnet-4-5"

# Statuses worth another attempt: request/lock timeouts, rate limits, server errors and
# 529 overloaded. Every other 4xx says the request itself is wrong.
_RETRY_STATUSES = frozenset({408, 409, 429})
_KEY_SHAPE = re.compile(r"sk-ant-[A-Za-z0-9_\-]{6,}")
# Recent SDKs (2.x) have no ``temperature`` parameter and would reject the call, so it is
# sent only where the installed SDK takes it.
_TAKES_TEMPERATURE = "temperature" in inspect.signature(AsyncMessages.create).parameters
# Connections per SDK client (see AnthropicModel.__init__).
_POOL = 25
# The tool-use system prompt the API adds when tools are given (a few hundred tokens).


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
class _Failure:
    """One failed attempt, reduced to plain data (no SDK objects, no headers)."""

    kind: str
    status: int | None
    message: str
    retryable: bool
    retry_after: float | None = None


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
        spend: a budget and ledger shared with other models; ``None`` for none.
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
        self.max_retries = max_retries
        self.max_retry_seconds = float(max_retry_seconds)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.timeout = float(timeout)
        self._sem = asyncio.Semaphore(max_concurrency)
        self._rpm = TokenBucket(per_minute=requests_per_minute) if requests_per_minute else None
        self._tpm = TokenBucket(per_minute=tokens_per_minute) if tokens_per_minute else None
        self._rng = random.Random()
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
            f"max_concurrency={self.max_concurrency}, max_retries={self.max_retries}, "
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
        failure: _Failure | None = None
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
        t0 = time.monotonic()
        tags: Tags = (("model", self.model), ("purpose", request.purpose), *request.tags)
        bound = input_token_bound(request)
        reservation: Reservation | None = None
        if self.spend is not None:
            # The worst case: every input token billed at the dearest input rate (a cache
            # write) and the reply running to max_tokens.
            worst = bound * self.prices.max_input + request.max_tokens * self.prices.output
            try:
                reservation = self.spend.reserve(worst / 1e6, bound + request.max_tokens, tags=tags)
            except BudgetExceeded:
                self.stats["refused"] += 1
                raise
        self.stats["calls"] += 1
        # Rate-limit tokens are a realistic guess (~4 characters a token), not the bound.
        tpm_take = bound // 4 + request.max_tokens
        try:
            msg, retries = await self._call(self._params(request), tpm_take, tags)
        except BaseException as e:
            self.stats["failures"] += 1
            if isinstance(e, asyncio.CancelledError):
                self.stats["cancelled"] += 1
            if reservation is not None and self.spend is not None:
                self.spend.release(reservation, failed=True)
            raise
        usage = _usage(msg)
        usd = cost(usage, self.prices)
        if reservation is not None and self.spend is not None:
            self.spend.settle(reservation, usage, usd)
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

    async def _call(self, params: dict[str, Any], tpm_take: int, tags: Tags) -> tuple[Any, int]:
        """``(reply, retries)`` for ``params``, retrying transient failures; ModelCallError if none."""
        deadline = time.monotonic() + self.max_retry_seconds
        attempt = 0
        while True:
            failure: _Failure | None = None
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
            delay = self._delay(attempt, failure.retry_after)
            left = deadline - time.monotonic()
            give_up: str | None = None
            if not failure.retryable:
                give_up = "not retryable"
            elif attempt >= self.max_retries:
                give_up = f"gave up after {attempt + 1} attempts"
            elif delay > left:
                give_up = (
                    f"gave up: the next attempt would start after max_retry_seconds="
                    f"{self.max_retry_seconds:g} (wait {delay:.2f} s, {max(left, 0):.2f} s left)"
                )
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
            if self.spend is not None:
                self.spend.note_retry(tags)
            log.info(
                "%s: %s; retry %d of %d in %.2f s",
                self.model,
                failure.message,
                attempt + 1,
                self.max_retries,
                delay,
            )
            await asyncio.sleep(delay)
            attempt += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # Do as told, plus a little jitter so callers told the same time do not all
            # come back in the same instant.
            return retry_after * (1.0 + 0.1 * self._rng.random())
        # Full jitter: uniform over [0, ceiling] spreads retries out best under contention.
        return self._rng.uniform(0.0, min(self.backoff_max, self.backoff_base * 2.0**attempt))

    def _failure(self, e: anthropic.AnthropicError) -> _Failure:
        if isinstance(e, anthropic.APIStatusError):
            status = e.status_code
            headers = e.response.headers
            retryable = status in _RETRY_STATUSES or status >= 500
            hint = headers.get("x-should-retry")
            if hint in ("true", "false"):
                retryable = hint == "true"
            kind = _kind(status)
            detail = getattr(e, "api_message", None) or _body_message(e.body)
            err_type = getattr(e, "type", None) or _body_type(e.body) or kind
            return _Failure(
                kind=kind,
                status=status,
                message=self._scrub(f"HTTP {status} {err_type}: {detail}"),
                retryable=retryable,
                retry_after=_retry_after(headers) if retryable else None,
            )
        if isinstance(e, anthropic.APITimeoutError):
            return _Failure(
                "timeout", None, f"no reply within timeout={self.timeout:g} s", retryable=True
            )
        if isinstance(e, anthropic.APIConnectionError):
            cause = e.__cause__
            why = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
            return _Failure(
                "connection", None, self._scrub(f"connection failed{why}"), retryable=True
            )
        return _Failure("client", None, self._scrub(f"{type(e).__name__}: {e}"), retryable=False)

    def _scrub(self, text: str) -> str:
        client = self._clients[0]
        for secret in (client.api_key, client.auth_token):
            if secret:
                text = text.replace(secret, "[redacted]")
        return _KEY_SHAPE.sub("[redacted]", text)

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


def _kind(status: int) -> str:
    named = {
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
    if status in named:
        return named[status]
    return "server_error" if status >= 500 else "client_error"


def _retry_after(headers: Any) -> float | None:
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


def _body_message(body: object) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
    return str(body)[:300] if body is not None else ""


def _body_type(body: object) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        t = body["error"].get("type")
        return t if isinstance(t, str) else None
    return None
