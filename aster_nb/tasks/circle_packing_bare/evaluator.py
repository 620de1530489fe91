"""Evaluator of the bare circle-packing task: 26 circles in the unit square, strict rules,
no features, and score 0 for a packing that breaks the rules.

This is the setting of a third-party starting point rather than aster_nb's own
``circle_packing`` task: the evaluator reports no behaviour descriptor (so the archive
must find its own), and a packing that breaks a rule is not ``invalid`` but scores 0, as
evaluators written for other tools often do, so whole plateaus of programs tie at 0.

The rules are those of ``circle_packing`` (AlphaEvolve's verifier, no tolerance): exactly
26 finite centres and radii, every radius > 0, every circle inside [0, 1]^2, no two
circles overlapping, all checked in float64 on the raw numbers the program returns. The
score is the sum of the radii of a valid packing, else 0.

Metrics (always the same keys, so they can serve as a descriptor): ``valid`` (1 or 0),
``sum_radii`` (of the returned radii, valid or not; 0 if they are not 26 finite numbers),
``min_radius``, ``radius_cv`` (std / mean of the radii) and ``violation`` (the worst
overlap or wall crossing, 0 for a valid packing).
"""

from __future__ import annotations

import importlib.util
import uuid

import numpy as np

N_CIRCLES = 26
ENTRY = "run_packing"


def _load(program_path: str):
    spec = importlib.util.spec_from_file_location(f"bare_packing_{uuid.uuid4().hex}", program_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a Python module from {program_path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(valid: bool, reason: str, radii: np.ndarray | None, violation: float) -> dict:
    ok = radii is not None and radii.shape == (N_CIRCLES,) and bool(np.isfinite(radii).all())
    total = float(radii.sum()) if ok else 0.0
    metrics = {
        "valid": float(valid),
        "sum_radii": total,
        "min_radius": float(radii.min()) if ok else 0.0,
        "radius_cv": float(radii.std() / radii.mean()) if ok and radii.mean() > 0 else 0.0,
        "violation": float(violation),
    }
    if not valid:
        print(f"scored 0: {reason}")  # the agents see the program's output
    return {"score": total if valid else 0.0, "metrics": metrics}


def check_packing(centers, radii) -> dict:
    """Score a packing: the sum of radii if it keeps every rule, else 0 (with the reason)."""
    try:
        c = np.asarray(centers, dtype=np.float64)
        r = np.asarray(radii, dtype=np.float64)
    except (TypeError, ValueError) as e:
        return _result(False, f"centers/radii are not numeric arrays: {e}", None, 0.0)
    if c.shape != (N_CIRCLES, 2) or r.shape != (N_CIRCLES,):
        return _result(
            False,
            f"centers must have shape ({N_CIRCLES}, 2) and radii ({N_CIRCLES},), "
            f"got {c.shape} and {r.shape}",
            r if r.ndim == 1 else None,
            0.0,
        )
    if not (np.isfinite(c).all() and np.isfinite(r).all()):
        return _result(False, "centres and radii must be finite", None, 0.0)
    if (r <= 0).any():
        i = int(np.argmin(r))
        return _result(False, f"circle {i} has radius {float(r[i])!r} <= 0", r, abs(float(r[i])))
    x, y = c[:, 0], c[:, 1]
    poke = np.stack([-(x - r), (x + r) - 1.0, -(y - r), (y + r) - 1.0], axis=1)
    dist = np.sqrt((x[:, None] - x[None, :]) ** 2 + (y[:, None] - y[None, :]) ** 2)
    overlap = ((r[:, None] + r[None, :]) - dist)[np.triu_indices(N_CIRCLES, k=1)]
    worst = max(float(poke.max()), float(overlap.max()))
    if worst > 0:
        crossing = poke.max() >= overlap.max()
        what = "a circle crosses the square's side" if crossing else "two circles overlap"
        return _result(False, f"{what} by {worst:.3g}", r, worst)
    return _result(True, "", r, 0.0)


def evaluate(program_path: str) -> dict:
    """Run the program's ``run_packing()`` and score its packing (see the module docstring)."""
    entry = getattr(_load(program_path), ENTRY, None)
    if not callable(entry):
        return {"valid": False, "reason": f"the program defines no function {ENTRY}()"}
    result = entry()
    if not isinstance(result, (tuple, list)) or len(result) < 2:
        return _result(False, f"{ENTRY}() must return (centers, radii)", None, 0.0)
    return check_packing(result[0], result[1])
