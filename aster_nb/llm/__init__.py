"""Models behind one async protocol: ``await model.complete(request) -> response``."""

from .base import Model, Request, Response, ToolCall, Usage, user
from .offline import OfflineModel


def make_model(name: str = "offline", *, seed: int = 0, latency: float = 0.0) -> Model:
    """A model by name: ``offline`` (the default, no key or network needed)."""
    if name == "offline":
        return OfflineModel(seed=seed, latency=latency)
    raise ValueError(f"unknown model {name!r}; expected 'offline'")


__all__ = [
    "Model",
    "OfflineModel",
    "Request",
    "Response",
    "ToolCall",
    "Usage",
    "make_model",
    "user",
]
