"""What model calls cost: list prices per million tokens, and the cost of a :class:`Usage`.

The table holds Anthropic's public list prices as known when it was written; prices change,
so they may be outdated. Check https://www.anthropic.com/pricing and pass your own
:class:`Prices` (every caller that takes a model name also takes ``prices=``) when they
differ, or for batch, regional or long-context rates, which this table does not model.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ..errors import UserInputError
from .base import Usage


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per million tokens.

    Attributes:
        input: uncached input tokens.
        output: output tokens (thinking included).
        cache_write: input tokens written to the prompt cache (5-minute TTL: 1.25x input).
        cache_read: input tokens read from the prompt cache (0.1x input).
    """

    input: float
    output: float
    cache_write: float
    cache_read: float

    def __post_init__(self) -> None:
        for name in ("input", "output", "cache_write", "cache_read"):
            if getattr(self, name) < 0:
                raise ValueError(f"Prices.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def max_input(self) -> float:
        """The dearest rate an input token can be billed at (a bound for reservations)."""
        return max(self.input, self.cache_write, self.cache_read)


def _std(input: float, output: float) -> Prices:
    # Anthropic's cache multipliers: writes (5-minute TTL) 1.25x input, reads 0.1x input.
    return Prices(input, output, round(input * 1.25, 6), round(input * 0.1, 6))


# Keys are model aliases; dated ids (``claude-sonnet-4-5-20250929``) match their alias.
# List prices as of late 2025 / early 2026; they may be outdated: override with ``prices=``.
# Sonnet 4.x above 200k input tokens (1M-context beta) is billed higher; not modelled here.
PRICES: dict[str, Prices] = {
    "claude-opus-4-6": _std(5.0, 25.0),
    "claude-opus-4-5": _std(5.0, 25.0),
    "claude-opus-4-1": _std(15.0, 75.0),
    "claude-opus-4-0": _std(15.0, 75.0),
    "claude-opus-4": _std(15.0, 75.0),
    "claude-sonnet-4-6": _std(3.0, 15.0),
    "claude-sonnet-4-5": _std(3.0, 15.0),
    "claude-sonnet-4-0": _std(3.0, 15.0),
    "claude-sonnet-4": _std(3.0, 15.0),
    "claude-3-7-sonnet": _std(3.0, 15.0),
    "claude-haiku-4-5": _std(1.0, 5.0),
    "claude-3-5-haiku": _std(0.8, 4.0),
    "claude-3-haiku": Prices(0.25, 1.25, 0.30, 0.03),
}

# What may follow a known alias: a date, a "-latest", a Vertex "@date" or a Bedrock
# "-v1:0". Anything else (say "-6" after "claude-opus-4") is another model, not a version.
_SUFFIX = re.compile(r"^(?:[-@]\d{8})?(?:-latest)?(?:-v\d+(?::\d+)?)?$")
_BEDROCK = re.compile(r"^(?:[a-z]+\.)?anthropic\.")


class UnknownModelError(UserInputError, LookupError):
    """A model name with no entry in :data:`PRICES` (a typo, most often: the message names
    the closest known names)."""


def close_models(name: str, known: list[str] | None = None, n: int = 3) -> list[str]:
    """The known model names closest to ``name`` (say ``claude-sonnet-4-5`` for the typo
    ``claude-sonet-4-5``), best first; empty when nothing is close."""
    pool = sorted(PRICES) if known is None else known
    return difflib.get_close_matches(name.strip().lower(), pool, n=n, cutoff=0.6)


def did_you_mean(name: str, known: list[str] | None = None) -> str:
    """``"did you mean 'a' or 'b'? "`` for a mistyped model name, or ``""``."""
    close = close_models(name, known)
    if not close:
        return ""
    others = f" (or {', '.join(repr(c) for c in close[1:])})" if close[1:] else ""
    return f"did you mean {close[0]!r}{others}? "


def prices_for(model: str) -> Prices:
    """The list prices of ``model``, matched by the longest known alias it starts with.

    Raises:
        UnknownModelError: the model is not in the table; the message names the known
            models and how to pass prices.
    """
    name = model.strip().lower()
    # Bedrock ids ("us.anthropic.claude-...") carry a region and a vendor prefix.
    name = _BEDROCK.sub("", name)
    matches = [a for a in PRICES if name.startswith(a) and _SUFFIX.match(name[len(a) :])]
    best = max(matches, key=len, default=None)
    if best is None:
        raise UnknownModelError(
            f"unknown model {model!r}: {did_you_mean(model)}known: {', '.join(sorted(PRICES))}, "
            "or 'offline'. For a Claude model missing from this table, pass "
            "prices=Prices(input=..., output=..., cache_write=..., cache_read=...) "
            "(USD per million tokens)"
        )
    return PRICES[best]


def cost(usage: Usage, prices: Prices) -> float:
    """USD billed for ``usage`` at ``prices``."""
    return (
        usage.input_tokens * prices.input
        + usage.output_tokens * prices.output
        + usage.cache_write_tokens * prices.cache_write
        + usage.cache_read_tokens * prices.cache_read
    ) / 1e6
