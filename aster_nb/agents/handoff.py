"""What a worker hands back to its planner."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..program import Program

_SECTION = re.compile(r"^\s*\**(DONE|LEARNED|CONCERNS)\**\s*:\s*", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Handoff:
    """A worker's report at the end of its budget.

    Attributes:
        worker: the worker's name.
        goal: the goal it worked on.
        round: the planner round.
        done: what was tried and what came of it.
        learned: what paid and what did not.
        concerns: failure modes, noise, stagnation.
        best: the best program it found (the base if nothing beat it).
        base_id: the program it started from.
        diff: unified diff from the base to ``best``.
        stats: counts and scores: attempts, evaluations, failed, improved, base_score,
            best_score, tokens.
    """

    worker: str
    goal: str
    round: int
    done: str
    learned: str
    concerns: str
    best: Program | None
    base_id: str | None
    diff: str
    stats: dict[str, Any] = field(default_factory=dict)


def parse_sections(text: str) -> dict[str, str]:
    """``DONE`` / ``LEARNED`` / ``CONCERNS`` sections of a model's handoff text.

    A reply without the headers is kept whole as ``done`` rather than dropped.
    """
    parts = _SECTION.split(text)
    out = {"done": "", "learned": "", "concerns": ""}
    if len(parts) == 1:
        out["done"] = text.strip()
        return out
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        out[name.lower()] = body.strip()
    return out
