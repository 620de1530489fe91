"""Evaluator of the deceptive task: a trap any hill climber falls into.

``solve()`` returns ``{"a": ..., "b": ..., "c": ...}``, three positive numbers. Each adds
``h(ln x)`` to the score, a one-dimensional deceptive landscape in ``u = ln x`` (the scale
on which a multiplicative edit moves a constant, and an LLM moves it by orders of
magnitude):

=============  ============================  ================================
``u``          ``h(u)``                      what it is
=============  ============================  ================================
``u <= 1``     ``1 - (1 - u)**2``            the trap's slope; its top, 1, at x = e
``1 .. 2``     ``1 - 0.8 (u - 1)``           the way out drops to 0.2
``2 .. 6``     ``0.2 + 0.175 (u - 2)``       a long ramp, always below the trap's top
``u >= 6``     ``3 - 2.1 (u - 7)**2``        the real basin; its top, 3, at x = e**7
=============  ============================  ================================

``h`` is continuous. Every program starts at x = 1 (u = 0, h = 0): the gradient leads each
constant to the trap (score 3 in all), and from there every step towards the real basin
(score 9 in all) is a step down until the ramp has been climbed to u = 6, a factor of 150
in x. A greedy climber stops at 3; a search that keeps worse but different programs and
breeds from them can cross, one constant at a time (each one crossed is worth +2).

Metrics: ``crossed`` (how many constants are past the valley, u > 6) and ``trapped``
(how many sit in the trap's basin, u < 1.5). No features: the archive finds its own.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import uuid

KEYS = ("a", "b", "c")


def h(u: float) -> float:
    """The deceptive landscape of one constant, in ``u = ln x`` (see the module docstring)."""
    if u <= 1.0:
        return 1.0 - (1.0 - u) ** 2
    if u <= 2.0:
        return 1.0 - 0.8 * (u - 1.0)
    if u <= 6.0:
        return 0.2 + 0.175 * (u - 2.0)
    return 3.0 - 2.1 * (u - 7.0) ** 2


def score_values(values) -> dict:
    """Check the returned constants and score them."""
    if not isinstance(values, dict):
        return {
            "valid": False,
            "reason": f"solve() must return a dict, got {type(values).__name__}",
        }
    us = []
    for key in KEYS:
        v = values.get(key)
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            return {"valid": False, "reason": f"{key!r} must be a finite number, got {v!r}"}
        if v <= 0:
            return {"valid": False, "reason": f"{key!r} must be > 0, got {v!r}"}
        us.append(math.log(v))
    return {
        "score": sum(h(u) for u in us),
        "metrics": {
            "crossed": float(sum(u > 6.0 for u in us)),
            "trapped": float(sum(u < 1.5 for u in us)),
        },
    }


def evaluate(program_path: str) -> dict:
    """Run the program's ``solve()`` and score the constants it returns."""
    spec = importlib.util.spec_from_file_location(f"trap_{uuid.uuid4().hex}", program_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a Python module from {program_path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    solve = getattr(module, "solve", None)
    if not callable(solve):
        return {"valid": False, "reason": "the program defines no function solve()"}
    return score_values(solve())
