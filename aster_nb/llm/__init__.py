"""Models behind one async protocol: ``await model.complete(request) -> response``."""

from __future__ import annotations

from ..errors import UserInputError
from .base import Model, Request, Response, ToolCall, Usage, user
from .offline import OfflineModel
from .pricing import PRICES, did_you_mean
from .spend import BudgetExceeded, Metered, Spend
from .watch import FailureWatch, ModelsFailing, Watched, aclose, preflight


def make_model(
    name: str = "offline", *, seed: int = 0, latency: float = 0.0, spend: Spend | None = None
) -> Model:
    """A model by name: ``offline`` (the default: no key, no network) or a Claude model.

    Claude models use :class:`~aster_nb.llm.anthropic.AnthropicModel` on the official SDK,
    which reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` from the environment.
    ``spend`` meters every call against the run's caps.

    Raises:
        UserInputError: an unknown name (the message suggests the closest known ones).
            Nothing is checked over the network here; see :func:`preflight`.
    """
    if name == "offline":
        model: Model = OfflineModel(seed=seed, latency=latency)
        return Metered(model, spend) if spend is not None else model
    if name.startswith("claude"):
        from .anthropic import AnthropicModel  # the SDK is an optional extra

        return AnthropicModel(model=name, spend=spend)
    known = ["offline", *sorted(PRICES)]
    raise UserInputError(
        f"unknown model {name!r}: {did_you_mean(name, known)}expected 'offline' or a Claude "
        f"model name; known: {', '.join(known)}"
    )


__all__ = [
    "BudgetExceeded",
    "FailureWatch",
    "Metered",
    "Model",
    "ModelsFailing",
    "OfflineModel",
    "Request",
    "Response",
    "Spend",
    "ToolCall",
    "Usage",
    "Watched",
    "aclose",
    "make_model",
    "preflight",
    "user",
]
