"""How a task's evaluations are repeated, watched and cut short: ``task.toml``'s ``[evaluation]``.

A noisy evaluation (a training run whose loss depends on its seed) needs more than one
number per program: the score is the mean over seeds, a program that would become a best
is re-evaluated on more seeds first (one lucky seed must not win a round), and a slow run
may report intermediate values, by which a clearly worse one is stopped early. This module
holds what a task declares about that (:class:`EvalPlan`, :class:`EarlyStop`) and the
check of the table (:func:`read_evaluation`); the sandbox carries seeds and reports, the
agents (:mod:`aster_nb.agents.noise`) use the plan.

Standard library only: the sandbox server imports the task's parts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DIRECTIONS", "EarlyStop", "EvalPlan", "read_evaluation"]

DIRECTIONS = ("min", "max")
_KEYS = ("seeds", "confirm_seeds", "intermediate", "early_stop")
_STOP_KEYS = ("after", "margin", "direction")


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlyStop:
    """When the parent side stops a run whose intermediate value is clearly worse than its
    parent's at the same step.

    Attributes:
        after: share of the parent's recorded run (its last reported step) before which
            nothing is stopped, in ``[0, 1]`` (``0.25``: not in the first quarter).
        margin: how much worse counts as clearly worse, as a share of the parent's value's
            magnitude (``0.05``: 5 % worse than the parent at the same step).
        direction: ``min`` (lower is better, a loss) or ``max``.
    """

    after: float = 0.25
    margin: float = 0.05
    direction: str = "min"

    def worse(self, value: float, parent: float) -> bool:
        """Whether ``value`` is worse than the parent's ``parent`` by more than the margin."""
        slack = self.margin * abs(parent)
        return value > parent + slack if self.direction == "min" else value < parent - slack


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalPlan:
    """A task's ``[evaluation]`` table, checked.

    Attributes:
        seeds: seeds every ordinary evaluation runs (seeds ``0 .. seeds-1``; the score is
            their mean).
        confirm_seeds: seeds a program's score is the mean of before it may become a
            worker's or a planner's best (seeds ``seeds .. confirm_seeds-1`` are run when it
            would); equal to ``seeds`` when nothing is confirmed.
        intermediate: the name of the reported value the dashboard plots and early stopping
            reads (``""``: none).
        early_stop: when to stop a run early, or ``None`` (never).
        noise: the task's ``noise`` (standard deviation of the score between evaluations).
    """

    seeds: int = 1
    confirm_seeds: int = 1
    intermediate: str = ""
    early_stop: EarlyStop | None = None
    noise: float = 0.0

    @property
    def noisy(self) -> bool:
        """A score is a sample, not a fact: ``noise > 0`` or more than one seed."""
        return self.noise > 0 or self.seeds > 1 or self.confirm_seeds > 1

    @property
    def seeded(self) -> bool:
        """Evaluations get explicit seeds (and a cache keyed by them)."""
        return self.seeds > 1 or self.confirm_seeds > 1

    @property
    def watched(self) -> bool:
        """Evaluations are run with a listener for their reports."""
        return bool(self.intermediate) or self.early_stop is not None

    @property
    def plain(self) -> bool:
        """Nothing here changes how an evaluation runs: one call, no seed, no listener."""
        return not (self.seeded or self.watched)


Fail = Callable[[str, str, object], Exception]


def read_evaluation(table: Mapping[str, Any], *, noise: float, fail: Fail) -> EvalPlan:
    """The :class:`EvalPlan` of an ``[evaluation]`` table.

    Args:
        table: the table as TOML read it (``{}`` when absent).
        noise: the task's ``noise`` key, already checked.
        fail: makes the error for a bad key: ``fail(key, expected, got)``.

    Raises:
        whatever ``fail`` makes: an unknown key or a value of the wrong type or range.
    """
    for key in table:
        if key not in _KEYS:
            raise fail(f"[evaluation] {key}", f"one of the keys {', '.join(_KEYS)}", key)
    seeds = _count(table.get("seeds", 1), "[evaluation] seeds", 1, fail)
    # a noisy task confirms a would-be best on 3 seeds unless told otherwise
    default_confirm = max(seeds, 3) if noise > 0 or seeds > 1 else seeds
    confirm = _count(
        table.get("confirm_seeds", default_confirm), "[evaluation] confirm_seeds", 1, fail
    )
    if confirm < seeds:
        raise fail(
            "[evaluation] confirm_seeds",
            f"a count >= seeds ({seeds}), the seeds a best is confirmed on",
            confirm,
        )
    intermediate = table.get("intermediate", "")
    if not isinstance(intermediate, str) or len(intermediate) > 64:
        raise fail(
            "[evaluation] intermediate", "the name of a reported value (a string)", intermediate
        )
    stop = table.get("early_stop")
    early = None if stop is None else _early_stop(stop, fail)
    if early is not None and not intermediate:
        raise fail(
            "[evaluation] early_stop",
            'a rule over a named value: set intermediate = "loss" (the name the evaluator reports) too',
            stop,
        )
    return EvalPlan(
        seeds=seeds, confirm_seeds=confirm, intermediate=intermediate, early_stop=early, noise=noise
    )


def _count(value: object, where: str, low: int, fail: Fail) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 1000:
        raise fail(where, f"a whole number from {low} to 1000", value)
    return value


def _early_stop(value: object, fail: Fail) -> EarlyStop:
    where = "[evaluation] early_stop"
    if not isinstance(value, dict):
        raise fail(where, 'a table such as {after = 0.25, margin = 0.05, direction = "min"}', value)
    for key in value:
        if key not in _STOP_KEYS:
            raise fail(f"{where}.{key}", f"one of the keys {', '.join(_STOP_KEYS)}", key)
    numbers = {}
    for key, default, low, high in (("after", 0.25, 0.0, 1.0), ("margin", 0.05, 0.0, math.inf)):
        x = value.get(key, default)
        if isinstance(x, bool) or not isinstance(x, int | float) or not low <= x <= high:
            rule = f"a number in [{low:g}, {high:g}]" if high < math.inf else f"a number >= {low:g}"
            raise fail(f"{where}.{key}", rule, x)
        numbers[key] = float(x)
    direction = value.get("direction", "min")
    if direction not in DIRECTIONS:
        raise fail(f"{where}.direction", '"min" (lower is better, a loss) or "max"', direction)
    return EarlyStop(after=numbers["after"], margin=numbers["margin"], direction=direction)
