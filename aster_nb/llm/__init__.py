"""Models behind one async protocol: ``await model.complete(request) -> response``."""

from __future__ import annotations

from .base import Model, Request, Response, ToolCall, Usage, user
from .offline import OfflineModel
from .spend import BudgetExceeded, Metered, Spend


def make_model(
    name: str = "offline", *, seed: int = 0, latency: float = 0.0, spend: Spend | None = None
) -> Model:
    """A model by name: ``offline`` (the default: no key, no network) or a Claude model.

    Claude models use :class:`~aster_nb.llm.anthropic.AnthropicModel` on the official SDK,
    which reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` from the environment.
    ``spend`` meters every call against the run's caps.
    """
    if name == "offline":
        model: Model = OfflineModel(seed=seed, latency=latency)
        return Metered(model, spend) if spend is not None else model
    if name.startswith("claude"):
        from .anthropic import AnthropicModel  # the SDK is an optional extra

        return AnthropicModel(model=name, spend=spend)
    raise ValueError(
        f"unknown model {name!r}; expected 'offline' or a Claude model name such as 'claude-sonnet-4-5'"
    )


__all__ = [
    "BudgetExceeded",
    "Metered",
    "Model",
    "OfflineModel",
    "Request",
    "Response",
    "Spend",
    "ToolCall",
    "Usage",
    "make_model",
    "user",
]
