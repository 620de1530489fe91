"""One async protocol for every model: ``await model.complete(request) -> Response``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call in a model reply (Messages-API ``tool_use`` block)."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a call consumed; cache fields follow the Messages API's prompt caching."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )

    @property
    def total(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )


@dataclass(frozen=True, slots=True)
class Request:
    """One model call.

    Attributes:
        messages: Messages-API style turns: ``{"role": "user"|"assistant", "content": ...}``
            where content is a string or a list of content blocks.
        system: the stable prefix (role, task statement); backends may cache it.
        purpose: what the call is for (``propose``, ``handoff``, ``merge``, ``plan``, ``tool``):
            used for accounting and by the offline model to pick its operator.
        max_tokens: reply length cap.
        temperature: sampling temperature.
        tools: tool schemas (name, description, input_schema) for tool-using agents.
        seed: a per-call seed; deterministic backends use it with the prompt.
        tags: ``(key, value)`` pairs for accounting, e.g. ``(("worker", "p0.w1"),
            ("agent", "3"))``; backends total usage and cost by them.
    """

    messages: tuple[dict[str, Any], ...]
    system: str = ""
    purpose: str = "propose"
    max_tokens: int = 4096
    temperature: float = 1.0
    tools: tuple[dict[str, Any], ...] = ()
    seed: int | None = None
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def prompt(self) -> str:
        """The text of the last user turn (what the offline model reads)."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                c = m.get("content", "")
                if isinstance(c, str):
                    return c
                return "\n".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in c)
        return ""


@dataclass(frozen=True, slots=True)
class Response:
    """A model reply."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    latency: float = 0.0
    model: str = ""
    stop_reason: str = "end_turn"
    cost_usd: float = 0.0
    retries: int = 0  # transient failures the backend retried before this reply


@runtime_checkable
class Model(Protocol):
    """Anything that completes a :class:`Request`."""

    name: str

    async def complete(self, request: Request) -> Response: ...


def user(text: str) -> dict[str, Any]:
    """A user turn."""
    return {"role": "user", "content": text}
