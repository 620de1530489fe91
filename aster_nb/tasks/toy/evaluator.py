"""Evaluator for the toy task: a separable quadratic with a known optimum.

``solve()`` returns ``{"a": ..., "b": ..., "c": ..., "d": ...}``. The score is

    -(a - 3)**2 - (c - 0.5)**2 - (b + 1.5)**2 - (d - 2)**2

so it is 0 exactly at a = 3, c = 0.5 (block ``alpha``) and b = -1.5, d = 2 (block
``beta``); each block's share of the score depends on that block alone, so improvements
to the two blocks add up. The features are (a, b). It runs in milliseconds, for tests.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import uuid

OPTIMUM = {"a": 3.0, "b": -1.5, "c": 0.5, "d": 2.0}


def _invalid(reason: str) -> dict:
    return {"valid": False, "reason": reason, "metrics": {}}


def score_values(values) -> dict:
    """Check the returned constants and score them."""
    if not isinstance(values, dict):
        return _invalid(
            f"solve() must return a dict with keys a, b, c, d; got {type(values).__name__}"
        )
    x = {}
    for key in OPTIMUM:
        v = values.get(key)
        # bool is an int subclass, but True is not a meaningful constant here
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return _invalid(f"{key!r} must be a number, got {v!r}")
        if not math.isfinite(v):
            return _invalid(f"{key!r} must be finite, got {v!r}")
        x[key] = float(v)
    alpha = -((x["a"] - OPTIMUM["a"]) ** 2) - (x["c"] - OPTIMUM["c"]) ** 2
    beta = -((x["b"] - OPTIMUM["b"]) ** 2) - (x["d"] - OPTIMUM["d"]) ** 2
    return {
        "score": alpha + beta,
        "metrics": {"alpha_part": alpha, "beta_part": beta, **x},
        "features": [x["a"], x["b"]],
    }


def evaluate(program_path: str) -> dict:
    """Run the program's ``solve()`` and score the constants it returns."""
    spec = importlib.util.spec_from_file_location(f"toy_program_{uuid.uuid4().hex}", program_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a Python module from {program_path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    solve = getattr(module, "solve", None)
    if not callable(solve):
        return _invalid("the program defines no function solve()")
    return score_values(solve())
