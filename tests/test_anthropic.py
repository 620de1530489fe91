"""AnthropicModel through the real SDK and real HTTP, against a local Messages-API server."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from aster_nb.agents import Budget, Worker
from aster_nb.errors import UserInputError
from aster_nb.llm import Request, Usage, user
from aster_nb.llm.anthropic import AnthropicModel, ModelCallError
from aster_nb.llm.pricing import Prices, UnknownModelError, cost, prices_for
from aster_nb.llm.spend import BudgetExceeded, Spend
from aster_nb.program import Program
from aster_nb.sandbox import LocalExecutor
from aster_nb.store import Store
from aster_nb.task import Task

from .messages_server import Fault, MessagesServer, offline_reply, prompt_text, text, tool_use

KEY = "sk-ant-api03-" + "Zq7" * 12 + "-TESTKEY"
HAIKU = prices_for("claude-haiku-4-5")


def make(srv: MessagesServer, **kw: Any) -> AnthropicModel:
    opts: dict[str, Any] = {
        "model": "claude-haiku-4-5",
        "api_key": KEY,
        "base_url": srv.url,
        "timeout": 2.0,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
    }
    return AnthropicModel(**(opts | kw))


def req(prompt: str = "Say hello.", **kw: Any) -> Request:
    return Request(
        messages=(user(prompt),), system="You are a careful test assistant.", max_tokens=64, **kw
    )


# -- replies -------------------------------------------------------------------------------


async def test_text_reply_usage_and_prompt_caching() -> None:
    handler = lambda r: text("hello " + prompt_text(r))  # noqa: E731
    async with MessagesServer(handler=handler) as srv, make(srv) as m:
        r1 = await m.complete(req("world"))
        r2 = await m.complete(req("again"))
    assert r1.text == "hello world" and r1.model == "claude-haiku-4-5"
    assert r1.stop_reason == "end_turn" and r1.tool_calls == ()
    body = srv.seen[0].json
    assert body is not None
    assert body["system"] == [
        {
            "type": "text",
            "text": "You are a careful test assistant.",
            "cache_control": {"type": "ephemeral"},
        }
    ]
    assert body["messages"] == [{"role": "user", "content": "world"}]
    sys_tokens = len("You are a careful test assistant.") // 4
    # First call writes the cache, the second reads it; input excludes the cached prefix.
    assert r1.usage == Usage(
        input_tokens=1, output_tokens=2, cache_read_tokens=0, cache_write_tokens=sys_tokens
    )
    assert r2.usage.cache_read_tokens == sys_tokens and r2.usage.cache_write_tokens == 0
    assert m.stats["cache_read_tokens"] == sys_tokens and m.stats["ok"] == 2
    assert m.stats["usd"] == pytest.approx(cost(r1.usage, HAIKU) + cost(r2.usage, HAIKU))


async def test_cache_system_off_sends_plain_string() -> None:
    async with MessagesServer() as srv, make(srv, cache_system=False) as m:
        r = await m.complete(req())
    assert srv.seen[0].json["system"] == "You are a careful test assistant."  # type: ignore[index]
    assert r.usage.cache_write_tokens == 0


async def test_tool_use_round_trip() -> None:
    tools = (
        {
            "name": "get_weather",
            "description": "Weather in a city.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    )

    def handler(r: dict[str, Any]) -> dict[str, Any]:
        last = r["messages"][-1]["content"]
        if isinstance(last, list) and last[0].get("type") == "tool_result":
            return text(f"It is {last[0]['content']}.")
        return tool_use("get_weather", {"city": "Paris"}, say="Let me check.", id="toolu_1")

    async with MessagesServer(handler=handler) as srv, make(srv) as m:
        r = await m.complete(req("Weather in Paris?", tools=tools))
        assert r.text == "Let me check." and r.stop_reason == "tool_use"
        (call,) = r.tool_calls
        assert (call.id, call.name, call.arguments) == ("toolu_1", "get_weather", {"city": "Paris"})
        turns = (
            user("Weather in Paris?"),
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": r.text},
                    {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C"}],
            },
        )
        r2 = await m.complete(Request(messages=turns, tools=tools, max_tokens=64))
    assert r2.text == "It is 18 C." and r2.tool_calls == ()
    sent = srv.seen[-1].json
    assert sent is not None and sent["messages"] == list(turns)  # passed through unchanged
    assert sent["tools"] == list(tools)
    assert r.usage.output_tokens > 0


# -- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["429", "529", "500", "drop", "slow"])
async def test_transient_faults_are_retried(kind: str) -> None:
    fault = Fault(kind, seconds=3.0) if kind == "slow" else Fault(kind)
    async with MessagesServer(script=[fault, fault]) as srv, make(srv, timeout=1.0) as m:
        r = await m.complete(req())
    assert r.text == "ok"
    assert srv.requests == 3 and m.stats["retries"] == 2 and m.stats["failures"] == 0
    # The SDK's own retries are off: every attempt is ours, and says so.
    assert [s.header("x-stainless-retry-count") for s in srv.seen] == ["0", "0", "0"]


@pytest.mark.parametrize(
    ("fault", "wait"),
    [
        (Fault("429", retry_after=1), 1.0),
        (Fault("429", retry_after_ms=300), 0.3),
        (Fault("529", retry_after_ms=200), 0.2),
    ],
)
async def test_retry_after_is_honoured(fault: Fault, wait: float) -> None:
    async with MessagesServer(script=[fault]) as srv, make(srv) as m:
        t0 = time.monotonic()
        await m.complete(req())
        took = time.monotonic() - t0
    assert wait <= took < wait * 1.1 + 1.0
    assert srv.requests == 2 and m.stats["retry_wait_s"] >= wait


async def test_retries_are_bounded_in_count() -> None:
    async with (
        MessagesServer(fault_rate=1.0, fault_kinds=["529"]) as srv,
        make(srv, max_retries=3) as m,
    ):
        with pytest.raises(ModelCallError) as ei:
            await m.complete(req())
    e = ei.value
    assert srv.requests == 4 and e.attempts == 4
    assert (e.kind, e.status, e.retryable) == ("overloaded", 529, True)
    assert "529" in str(e) and "overloaded_error" in str(e) and "after 4 attempts" in str(e)
    assert m.stats["retries"] == 3 and m.stats["failures"] == 1


async def test_retries_are_bounded_in_time() -> None:
    async with (
        MessagesServer(script=[Fault("429", retry_after=30)]) as srv,
        make(srv, max_retry_seconds=2) as m,
    ):
        t0 = time.monotonic()
        with pytest.raises(ModelCallError, match="max_retry_seconds") as ei:
            await m.complete(req())
    assert time.monotonic() - t0 < 1.0  # no point waiting 30 s to fail anyway
    assert srv.requests == 1 and ei.value.kind == "rate_limit"


async def test_bad_request_is_not_retried() -> None:
    async with MessagesServer(script=["400"]) as srv, make(srv) as m:
        with pytest.raises(ModelCallError) as ei:
            await m.complete(req())
    assert srv.requests == 1 and m.stats["retries"] == 0
    assert (ei.value.kind, ei.value.status, ei.value.retryable) == ("bad_request", 400, False)
    assert "invalid_request_error" in str(ei.value)


# -- budget ----------------------------------------------------------------------------------


async def test_budget_is_never_exceeded_under_concurrency() -> None:
    spend = Spend(max_usd=0.01)
    peak = 0.0

    def handler(r: dict[str, Any]) -> dict[str, Any]:
        nonlocal peak  # what is spent plus held, seen while calls are in flight
        peak = max(peak, spend.usd + spend.reserved_usd)
        return text("fine")

    refused = ok = 0
    async with MessagesServer(handler=handler, latency=0.02) as srv, make(srv, spend=spend) as m:
        for _ in range(20):  # waves until the budget admits nothing more
            rs = await asyncio.gather(
                *(m.complete(req("x" * 400, tags=(("worker", f"w{i % 2}"),))) for i in range(30)),
                return_exceptions=True,
            )
            for r in rs:
                if isinstance(r, BudgetExceeded):
                    refused += 1
                else:
                    assert not isinstance(r, BaseException), r
                    ok += 1
            if all(isinstance(r, BudgetExceeded) for r in rs):
                break
    assert 0 < spend.usd <= 0.01 and peak <= 0.01
    assert ok > 30 and refused >= 30
    assert srv.requests == ok == spend.calls  # a refused call never reaches the server
    assert spend.refused == refused == m.stats["refused"] and spend.in_flight == 0
    # Stopped because one more worst case would not fit, not far below the cap.
    worst = (1024 * HAIKU.max_input + 64 * HAIKU.output) / 1e6
    assert spend.usd > 0.01 - worst
    by = spend.by("worker")
    assert set(by) == {"w0", "w1"} and by["w0"].usd + by["w1"].usd == pytest.approx(spend.usd)
    assert spend.by("purpose")["propose"].calls == ok
    with pytest.raises(BudgetExceeded, match=r"max_usd=0\.0100 USD would be exceeded"):
        spend.reserve(worst)


async def test_token_cap_and_failures_release_their_reservation() -> None:
    spend = Spend(max_tokens=300)
    async with MessagesServer(script=["400"], latency=0.5) as srv, make(srv, spend=spend) as m:
        with pytest.raises(ModelCallError):
            await m.complete(req())
        assert spend.failures == 1 and spend.reserved_tokens == 0 and spend.tokens == 0
        with pytest.raises(TimeoutError):  # a caller's timeout cancels the call
            async with asyncio.timeout(0.1):
                await m.complete(req())
        assert m.stats["cancelled"] == 1 and spend.in_flight == 0 and spend.failures == 2
        await m.complete(req())
        assert 0 < spend.tokens <= 300
        with pytest.raises(BudgetExceeded, match="max_tokens=300 tokens"):
            await m.complete(req("y" * 400))
    assert srv.requests == 3


# -- key hygiene, limits ---------------------------------------------------------------------


async def test_api_key_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script = ["429", None, Fault("400", message=f"invalid key {KEY}"), "drop", "drop"]
    errors: list[BaseException] = []
    async with MessagesServer(script=script) as srv:
        m = make(srv, max_retries=1)
        await m.complete(req())  # a retry, then a reply
        for _ in range(2):  # a server echoing the key back; then retries running out
            try:
                await m.complete(req())
            except ModelCallError as e:
                errors.append(e)
        await m.aclose()
    assert len(errors) == 2 and "[redacted]" in str(errors[0])
    assert all(v != KEY for k, v in vars(m).items())  # held by the SDK client only
    for e in errors:
        assert e.__cause__ is None and e.__context__ is None  # no SDK error holding the request
        for s in (str(e), repr(e), repr(vars(e))):
            assert KEY not in s
    assert KEY not in repr(m) and KEY not in str(m)
    assert "retry" in caplog.text and "model call failed" in caplog.text
    for rec in caplog.records:
        assert KEY not in rec.getMessage() and KEY not in repr(rec.args)
    assert KEY not in caplog.text
    # On the wire the key is in one header, the SDK's credential header, and nowhere else.
    assert len(srv.seen) == 5
    for s in srv.seen:
        holding = [(k, v) for k, v in s.headers if KEY in v]
        assert holding in ([("x-api-key", KEY)], [("authorization", f"Bearer {KEY}")])
        assert KEY.encode() not in s.body and KEY not in s.path


async def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    async with MessagesServer() as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        async with AnthropicModel(model="claude-haiku-4-5") as m:
            assert (await m.complete(req())).text == "ok"
            assert KEY not in repr(m) and srv.url in repr(m)
    assert any(KEY in v for _, v in srv.seen[0].headers)


async def test_preflight(monkeypatch: pytest.MonkeyPatch) -> None:
    """One free request checks the key and the address before a run; what the user must fix
    is a UserInputError naming it, with no SDK object (or key) attached."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    async with MessagesServer(keys=[KEY], models=["claude-haiku-4-5"]) as srv:
        async with make(srv) as m:
            await m.preflight()
        assert [(s.method, s.path) for s in srv.seen] == [("GET", "/v1/models/claude-haiku-4-5")]
        # A gateway without /v1/models (404) or a busy API (429, 5xx) is reachable.
        async with make(srv, model="claude-sonnet-4-5") as m:
            await m.preflight()
        async with make(srv, api_key="sk-ant-wrong-key") as m:
            with pytest.raises(UserInputError, match=r"refused the key .*ANTHROPIC_API_KEY") as e:
                await m.preflight()
        assert e.value.__cause__ is None and e.value.__context__ is None
        async with make(srv, api_key=None) as m:
            n = srv.requests
            with pytest.raises(UserInputError, match=r"no API key .*set ANTHROPIC_API_KEY"):
                await m.preflight()
            assert srv.requests == n, "nothing is sent without a key"
    port = srv.port  # closed now
    async with AnthropicModel(
        model="claude-haiku-4-5", api_key=KEY, base_url=f"http://127.0.0.1:{port}"
    ) as m:
        with pytest.raises(UserInputError, match=f"cannot reach .* at http://127.0.0.1:{port}"):
            await m.preflight(timeout=2.0)


@pytest.mark.parametrize("limit", [5, 60])  # 60: spread over 3 SDK clients
async def test_concurrency_limit_is_respected(limit: int) -> None:
    async with MessagesServer(latency=0.1) as srv, make(srv, max_concurrency=limit) as m:
        await asyncio.gather(*(m.complete(req()) for _ in range(3 * limit)))
    assert srv.max_in_flight == limit == m.stats["max_in_flight"] and srv.requests == 3 * limit
    assert srv.connections == limit  # each connection kept alive and reused


async def test_requests_per_minute() -> None:
    # 120/min: a burst of 20 (10 s worth), then one every 0.5 s.
    async with MessagesServer() as srv, make(srv, requests_per_minute=120) as m:
        t0 = time.monotonic()
        await asyncio.gather(*(m.complete(req()) for _ in range(22)))
    assert 0.9 <= time.monotonic() - t0 < 3.0 and srv.requests == 22


# -- pricing, server ------------------------------------------------------------------------------


def test_pricing() -> None:
    p = prices_for("claude-sonnet-4-5-20250929")
    assert p == Prices(input=3.0, output=15.0, cache_write=3.75, cache_read=0.3)
    u = Usage(input_tokens=1_000_000, output_tokens=100_000, cache_read_tokens=2_000_000)
    assert cost(u, p) == pytest.approx(3.0 + 1.5 + 0.6)
    assert prices_for("claude-opus-4-1-20250805").output == 75.0
    with pytest.raises(UnknownModelError, match=r"known: .*claude-haiku-4-5"):
        prices_for("claude-opus-4-99")
    with pytest.raises(UserInputError, match=r"unknown model 'claude-sonet-4-5': did you mean "):
        prices_for("claude-sonet-4-5")  # a UserInputError: the command line says it in a line
    with pytest.raises(UnknownModelError):
        AnthropicModel(model="my-custom-model", api_key=KEY)
    AnthropicModel(model="my-custom-model", api_key=KEY, prices=p)  # own prices: fine


async def test_server_closes_itself() -> None:
    srv = await MessagesServer(lifetime=0.2).start()
    await asyncio.wait_for(srv.closed.wait(), 2.0)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", srv.port)


# -- end to end --------------------------------------------------------------------------------


async def test_worker_end_to_end_with_faults(
    tmp_path: Path, toy: Task, toy_executor: LocalExecutor
) -> None:
    spend = Spend(max_usd=5.0)
    async with (
        MessagesServer(handler=offline_reply, fault_rate=0.3, seed=1) as srv,
        make(srv, spend=spend, max_retries=12, timeout=5.0) as model,
    ):
        w = Worker(
            name="w0",
            task=toy,
            model=model,
            executor=toy_executor,
            store=Store(tmp_path / "run.sqlite"),
            agents=4,
        )
        h = await w.run(
            "Raise the score via alpha and beta",
            Program(code=toy.initial_code),
            Budget(evaluations=12),
        )
    assert h.worker == "w0" and h.stats["evaluations"] == 12
    assert h.stats["model_errors"] == 0 and "handoff model call failed" not in h.concerns
    assert h.best is not None and h.best.score is not None
    faults = srv.requests - srv.statuses[200]
    assert faults > 0 and model.stats["retries"] == faults == spend.retries
    assert model.stats["failures"] == 0 and spend.failures == 0
    assert spend.calls == srv.statuses[200] == model.stats["ok"]
    assert set(spend.by("purpose")) == {"propose", "handoff"}
    assert spend.by("worker")["w0"].calls == spend.calls and len(spend.by("agent")) == 4
    assert 0 < spend.usd <= 5.0
    # Retries and spend are in the store, per attempt.
    att = w.store.attempts()
    handoff_retries = faults - int(att["retries"].sum())
    assert 0 <= handoff_retries <= faults and att["retries"].sum() > 0
    # Proposals of surplus attempts (started before the budget was met, then discarded)
    # were billed too: the handoff counts them beside the attempts.
    proposed = att["cost_usd"].sum() + h.stats["discarded_usd"]
    assert proposed == pytest.approx(spend.by("purpose")["propose"].usd)


async def test_full_run_with_faults_keeps_the_key_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole run (planner, workers, handoffs, synthesis) on Claude through the SDK's own
    environment variables, 30% of requests failing: it completes, counts its retries, and
    the key is in no event and no byte of the store."""
    from aster_nb.run import Run

    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    async with MessagesServer(handler=offline_reply, fault_rate=0.3, seed=2) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        run = await Run.create(
            "toy",
            path=tmp_path / "run.sqlite",
            model="claude-haiku-4-5",
            workers=2,
            agents=3,
            evaluations=6,
            max_usd=5.0,
        )
        events: list[str] = []
        run.bus.subscribe(lambda e: events.append(repr(e)))
        for _ in range(2):
            await run.step()
        status = run.status
        await run.close()
    assert status.error is None and status.round == 2 and status.evaluations >= 24
    faults = srv.requests - srv.statuses[200]
    assert faults > 0
    attempts = Store(tmp_path / "run.sqlite").attempts()
    assert attempts["retries"].sum() > 0 and attempts["cost_usd"].sum() > 0
    assert len(events) > 24 and not any(KEY in e for e in events)
    for f in tmp_path.glob("run.sqlite*"):
        assert KEY.encode() not in f.read_bytes()
