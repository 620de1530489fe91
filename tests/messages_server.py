"""A Messages-API server on 127.0.0.1 for tests: the real SDK talks to it over real HTTP.

It speaks just enough HTTP/1.1 (keep-alive included, since the SDK's client reuses
connections) to serve ``POST /v1/messages``, and ``GET /v1/models`` and ``GET
/v1/models/{id}`` (a run's preflight asks the latter; never faulted). What it answers comes from a handler the test
passes (``handler(request_json) -> reply``, sync or async); the server fills in what the
handler leaves out (id, model, stop reason, usage) so replies are valid Messages JSON.
Usage is plausible: ~4 characters a token, and a system block marked ``cache_control``
that was seen before is reported as a cache read (a cache write the first time).

Faults come from a script (one entry per request, in order) and then at random by rate:
``429`` (with ``retry-after``), ``529`` overloaded, ``500``, ``400``, ``slow`` (a reply
held past the client's timeout) and ``drop`` (the socket closed without a reply).

It stops by itself: ``async with MessagesServer(...) as srv`` closes it, and it closes
anyway ``lifetime`` seconds after starting. ``python -m tests.messages_server`` runs one
in its own process and prints its URL as JSON (used by the benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import inspect
import json
import random
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

Reply = dict[str, Any]
Handler = Callable[[dict[str, Any]], Reply | Awaitable[Reply]]

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    529: "Overloaded",
}
ERRORS = {
    400: ("invalid_request_error", "messages: the request is invalid"),
    401: ("authentication_error", "invalid x-api-key"),
    404: ("not_found_error", "not found"),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure to inject into one request.

    Attributes:
        kind: ``"429"``, ``"529"``, ``"500"``, ``"400"``, ``"slow"`` or ``"drop"``.
        retry_after: seconds sent as ``retry-after`` (429, 529 and 500 may carry it).
        retry_after_ms: milliseconds sent as ``retry-after-ms``.
        seconds: how long ``slow`` holds the reply.
        message: the error message sent, if not the usual one.
    """

    kind: str
    retry_after: float | None = None
    retry_after_ms: float | None = None
    seconds: float = 5.0
    message: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("429", "529", "500", "400", "slow", "drop"):
            raise ValueError(f"unknown fault kind {self.kind!r}")


@dataclass(slots=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: list[tuple[str, str]]  # lower-cased names, in order, repeats kept
    body: bytes
    json: dict[str, Any] | None = None
    status: int | None = None  # None: dropped or never answered
    fault: str | None = None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)


def text(t: str) -> Reply:
    """A reply with one text block."""
    return {"content": [{"type": "text", "text": t}]}


def tool_use(name: str, arguments: dict[str, Any], *, say: str = "", id: str = "") -> Reply:
    """A reply calling tool ``name`` (after an optional text block)."""
    blocks: list[dict[str, Any]] = [{"type": "text", "text": say}] if say else []
    blocks.append({"type": "tool_use", "id": id, "name": name, "input": arguments})
    return {"content": blocks, "stop_reason": "tool_use"}


def echo(request: dict[str, Any]) -> Reply:
    """The default handler: a short text reply."""
    return text("ok")


async def offline_reply(request: dict[str, Any]) -> Reply:
    """The offline model's answer to the same prompt: real edits through the HTTP path."""
    from aster_nb.llm import OfflineModel, Request, user

    prompt = prompt_text(request)
    purpose = "propose"
    for marker, p in (
        ("## Outcome", "handoff"),
        ("## Candidates", "merge"),
        ("## Current goals", "plan"),
    ):
        if marker in prompt:
            purpose = p
    system = request.get("system", "")
    if isinstance(system, list):
        system = "".join(b.get("text", "") for b in system)
    resp = await OfflineModel(seed=0).complete(
        Request(messages=(user(prompt),), system=system, purpose=purpose)
    )
    return text(resp.text)


def prompt_text(request: dict[str, Any]) -> str:
    """The text of the last user turn."""
    for m in reversed(request.get("messages", [])):
        if m.get("role") == "user":
            return _text_of(m.get("content", ""))
    return ""


class MessagesServer:
    """A local Messages-API server for tests.

    Args:
        handler: builds each reply from the request JSON; ``echo`` by default. It may return
            a full Message or just ``{"content": [...]}`` (and ``stop_reason``).
        latency: seconds each successful reply waits before it is sent.
        script: faults for the first requests, in order (``None`` or ``"ok"``: no fault).
        fault_rate: probability of a fault on each request after the script.
        fault_kinds: kinds drawn (uniformly) when a fault is due by rate.
        retry_after_ms: ``retry-after-ms`` sent with 429s drawn by rate.
        slow_seconds: how long a ``slow`` fault drawn by rate holds its reply.
        seed: seeds the fault draws.
        lifetime: seconds after which the server closes itself, whatever the test does.
        record: keep every :class:`Seen` request (off for benchmarks).
        host: the address to listen on.
        port: the port; 0 picks a free one.
        keys: if given, the only API keys accepted (others get 401 on every path).
        models: if given, the only model ids ``GET /v1/models/{id}`` knows (others: 404).
    """

    def __init__(
        self,
        *,
        handler: Handler = echo,
        latency: float = 0.0,
        script: Sequence[Fault | str | None] = (),
        fault_rate: float = 0.0,
        fault_kinds: Sequence[str] = ("429", "529", "500", "drop"),
        retry_after_ms: float = 50.0,
        slow_seconds: float = 5.0,
        seed: int = 0,
        lifetime: float = 60.0,
        record: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        keys: Sequence[str] | None = None,
        models: Sequence[str] | None = None,
    ) -> None:
        self.handler = handler
        self.latency = latency
        self.script = [Fault(f) if isinstance(f, str) and f != "ok" else f for f in script]
        self.fault_rate = fault_rate
        self.fault_kinds = tuple(fault_kinds)
        for k in self.fault_kinds:
            Fault(k)  # validates the kind
        self.retry_after_ms = retry_after_ms
        self.slow_seconds = slow_seconds
        self.lifetime = lifetime
        self.record = record
        self.host = host
        self.port = port
        self.keys = None if keys is None else frozenset(keys)
        self.models = None if models is None else tuple(models)
        self.requests = 0
        self.statuses: Counter[int | str] = Counter()  # status code, or "drop"
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self.closed = asyncio.Event()
        self._rng = random.Random(seed)
        self._cached: set[str] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> MessagesServer:
        # A deep backlog: a thousand clients connecting at once must not see SYNs dropped.
        self._server = await asyncio.start_server(
            self._connection, self.host, self.port, backlog=4096
        )
        self.port = self._server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.lifetime, lambda: loop.create_task(self.close()))
        return self

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._server is None or self.closed.is_set():
            return
        self.closed.set()
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def __aenter__(self) -> MessagesServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- HTTP ------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            while not self.closed.is_set():
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                headers = [
                    (k.strip().lower(), v.strip())
                    for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
                ]
                h = dict(headers)
                try:
                    if "chunked" in h.get("transfer-encoding", "").lower():
                        body = await _read_chunked(reader)
                    else:
                        body = await reader.readexactly(int(h.get("content-length", "0")))
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                keep = h.get("connection", "").lower() != "close" and version == "HTTP/1.1"
                if not await self._serve(writer, method, target, headers, body) or not keep:
                    return
        except asyncio.CancelledError:
            # Only close() cancels these; ending quietly spares Python 3.11's stream callback
            # from logging the cancellation as an error.
            return
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _serve(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> bool:
        """Answer one request; ``False`` when the connection must close."""
        self.requests += 1
        n = self.requests
        seen = Seen(method=method, path=target, headers=headers, body=body)
        if self.record:
            self.seen.append(seen)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            path = target.split("?")[0]
            if self.keys is not None and _key(seen) not in self.keys:
                return await self._error(writer, seen, 401, n)
            if method == "GET" and (path == "/v1/models" or path.startswith("/v1/models/")):
                return await self._models(writer, seen, path, n)
            if method != "POST" or path != "/v1/messages":
                return await self._error(writer, seen, 404, n)
            try:
                req = json.loads(body)
                seen.json = req
            except ValueError:
                return await self._error(writer, seen, 400, n)
            fault = self._fault()
            seen.fault = fault.kind if fault is not None else None
            if fault is not None and fault.kind == "drop":
                self.statuses["drop"] += 1
                return False  # the connection closes with no reply
            if fault is not None and fault.kind != "slow":
                return await self._error(writer, seen, int(fault.kind), n, fault)
            await asyncio.sleep(fault.seconds if fault is not None else self.latency)
            reply = self.handler(req)
            if inspect.isawaitable(reply):
                reply = await reply
            msg = self._message(req, reply, n)
            return await self._send(writer, seen, 200, json.dumps(msg).encode(), n)
        finally:
            self.in_flight -= 1

    async def _models(self, writer: asyncio.StreamWriter, seen: Seen, path: str, n: int) -> bool:
        def info(model: str) -> dict[str, Any]:
            return {
                "type": "model",
                "id": model,
                "display_name": model,
                "created_at": "2025-01-01T00:00:00Z",
            }

        if path == "/v1/models":
            ids = self.models if self.models is not None else ("claude-haiku-4-5",)
            page = {
                "data": [info(m) for m in ids],
                "has_more": False,
                "first_id": ids[0] if ids else None,
                "last_id": ids[-1] if ids else None,
            }
            return await self._send(writer, seen, 200, json.dumps(page).encode(), n)
        model = path.removeprefix("/v1/models/")
        if self.models is not None and model not in self.models:
            return await self._error(writer, seen, 404, n, message=f"model: {model}")
        return await self._send(writer, seen, 200, json.dumps(info(model)).encode(), n)

    async def _error(
        self,
        writer: asyncio.StreamWriter,
        seen: Seen,
        status: int,
        n: int,
        f: Fault | None = None,
        *,
        message: str | None = None,
    ) -> bool:
        kind, default = ERRORS[status]
        message = message or (f.message if f is not None else None) or default
        extra = {}
        if f is not None and f.retry_after is not None:
            extra["retry-after"] = f"{f.retry_after:g}"
        if f is not None and f.retry_after_ms is not None:
            extra["retry-after-ms"] = f"{f.retry_after_ms:g}"
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return await self._send(writer, seen, status, json.dumps(body).encode(), n, extra)

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        seen: Seen,
        status: int,
        body: bytes,
        n: int,
        extra: dict[str, str] | None = None,
    ) -> bool:
        head = [
            f"HTTP/1.1 {status} {REASONS[status]}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            f"request-id: req_{n:08d}",
            *(f"{k}: {v}" for k, v in (extra or {}).items()),
        ]
        seen.status = status
        self.statuses[status] += 1
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await writer.drain()
        except ConnectionError:
            return False  # the client gave up (a timeout): nothing more to do
        return not writer.is_closing()

    def _fault(self) -> Fault | None:
        if self.script:
            f = self.script.pop(0)
            return f if isinstance(f, Fault) else None
        if self.fault_rate and self._rng.random() < self.fault_rate:
            kind = self._rng.choice(self.fault_kinds)
            if kind == "429":
                return Fault(kind, retry_after_ms=self.retry_after_ms)
            return Fault(kind, seconds=self.slow_seconds)
        return None

    # -- Messages --------------------------------------------------------------------------

    def _message(self, req: dict[str, Any], reply: Reply, n: int) -> dict[str, Any]:
        content = [dict(b) for b in reply.get("content", [])]
        for i, b in enumerate(content):
            if b.get("type") == "tool_use" and not b.get("id"):
                b["id"] = f"toolu_{n:08d}_{i}"
        system = req.get("system", "")
        blocks = system if isinstance(system, list) else [{"type": "text", "text": system}]
        cached = [b for b in blocks if b.get("cache_control")]
        plain = [b for b in blocks if not b.get("cache_control")]
        messages = "".join(_text_of(m.get("content", "")) for m in req.get("messages", []))
        tools = json.dumps(req["tools"]) if req.get("tools") else ""
        usage = {
            "input_tokens": _tokens(messages + tools + "".join(b.get("text", "") for b in plain)),
            "output_tokens": _tokens(
                "".join(
                    b.get("text", "") if b.get("type") == "text" else json.dumps(b.get("input"))
                    for b in content
                )
            ),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        for b in cached:
            key = hashlib.sha256(b.get("text", "").encode()).hexdigest()
            field_ = (
                "cache_read_input_tokens" if key in self._cached else "cache_creation_input_tokens"
            )
            usage[field_] += _tokens(b.get("text", ""))
            self._cached.add(key)
        has_tool = any(b.get("type") == "tool_use" for b in content)
        return {
            "id": f"msg_{n:08d}",
            "type": "message",
            "role": "assistant",
            "model": req.get("model", "claude-test"),
            "content": content,
            "stop_reason": reply.get("stop_reason") or ("tool_use" if has_tool else "end_turn"),
            "stop_sequence": None,
            "usage": usage,
            **{k: v for k, v in reply.items() if k not in ("content", "stop_reason")},
        }


def _key(seen: Seen) -> str | None:
    """The API key a request carries (SDK versions send ``x-api-key`` or a bearer token)."""
    bearer = seen.header("authorization") or ""
    return seen.header("x-api-key") or (bearer[7:] if bearer.startswith("Bearer ") else None)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    out = []
    for b in content:
        if isinstance(b, dict):
            t = b.get("text") or b.get("content") or ""
            out.append(t if isinstance(t, str) else _text_of(t))
    return "\n".join(out)


def _tokens(s: str) -> int:
    return max(1, len(s) // 4) if s else 0


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readexactly(2)


async def _main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description="Run a local Messages-API server (for benchmarks).")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--lifetime", type=float, default=600.0)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument(
        "--fault-kinds", default="429,529,500,drop", help="comma-separated kinds drawn by rate"
    )
    ap.add_argument("--offline", action="store_true", help="answer with the offline model")
    a = ap.parse_args(argv)
    srv = MessagesServer(
        handler=offline_reply if a.offline else echo,
        latency=a.latency,
        lifetime=a.lifetime,
        fault_rate=a.fault_rate,
        fault_kinds=a.fault_kinds.split(","),
        record=False,
    )
    async with srv:
        print(json.dumps({"url": srv.url}), flush=True)
        # Also stop when the parent goes away (its end of our stdin closes).
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        stdin_closed = asyncio.ensure_future(reader.read())
        done = asyncio.ensure_future(srv.closed.wait())
        await asyncio.wait([stdin_closed, done], return_when=asyncio.FIRST_COMPLETED)
        for t in (stdin_closed, done):
            t.cancel()
        print(
            json.dumps({"requests": srv.requests, "max_in_flight": srv.max_in_flight}), flush=True
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(sys.argv[1:]))
