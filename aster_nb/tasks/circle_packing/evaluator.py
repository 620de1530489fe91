"""Evaluator for packing 26 circles into the unit square, maximizing the sum of radii.

Reference: AlphaEvolve (Novikov et al., "AlphaEvolve: A coding agent for scientific and
algorithmic discovery", Google DeepMind, 2025, appendix B.12 and its published results
notebook) reports a sum of radii of 2.6358627564 for 26 circles, above the previous best
known 2.634 (Erich Friedman's Packing Center). Its verifier accepts a packing only if it is
strictly valid, and so does this one.

The program's ``run_packing()`` returns ``(centers, radii)`` (a third element, such as a
self-reported sum, is ignored). Nothing the program reports is trusted: the packing is
checked and the score recomputed from the raw centres and radii, in float64, with no
tolerance:

* ``centers`` has shape exactly (26, 2) and ``radii`` exactly (26,), all finite;
* every radius is > 0;
* every circle lies in the square: ``x - r >= 0``, ``x + r <= 1``, same for ``y``;
* every pair is apart: ``sqrt((xi - xj)**2 + (yi - yj)**2) >= ri + rj``.

Touching is allowed; overlapping by a single rounding error is not. Only numpy and the
standard library are used, so this file can be copied as an example.
"""

from __future__ import annotations

import importlib.util
import uuid

import numpy as np

N_CIRCLES = 26
ENTRY = "run_packing"
NEAR_WALL = 1e-3  # a circle this close to the boundary counts as touching it (feature)


def _load(program_path: str):
    name = f"circle_packing_program_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, program_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a Python module from {program_path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _invalid(reason: str, **metrics: float) -> dict:
    return {"valid": False, "reason": reason, "metrics": metrics}


def check_packing(centers, radii) -> dict:
    """Check a packing and score it. Returns the evaluator's result dict."""
    try:
        c = np.asarray(centers, dtype=np.float64)
        r = np.asarray(radii, dtype=np.float64)
    except (TypeError, ValueError) as e:
        return _invalid(f"centers/radii are not numeric arrays: {e}")
    if c.shape != (N_CIRCLES, 2):
        return _invalid(f"centers must have shape ({N_CIRCLES}, 2), got {c.shape}")
    if r.shape != (N_CIRCLES,):
        return _invalid(f"radii must have shape ({N_CIRCLES},), got {r.shape}")
    bad = ~np.isfinite(c).all(axis=1) | ~np.isfinite(r)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        return _invalid(
            f"circle {i} is not finite: center {c[i].tolist()}, radius {float(r[i])!r} "
            f"({int(bad.sum())} non-finite circle(s))"
        )
    if (r <= 0).any():
        i = int(np.argmin(r))
        return _invalid(f"circle {i} has radius {float(r[i])!r} <= 0 (radii must be > 0)")

    x, y = c[:, 0], c[:, 1]
    # How far each circle pokes out through each wall; > 0 is a violation. Written as the
    # four inequalities of the rules, so rounding is judged exactly as stated there.
    poke = np.stack([-(x - r), (x + r) - 1.0, -(y - r), (y + r) - 1.0], axis=1)
    if (poke > 0).any():
        i, w = np.unravel_index(int(np.argmax(poke)), poke.shape)
        side = ("left (x - r < 0)", "right (x + r > 1)", "bottom (y - r < 0)", "top (y + r > 1)")[w]
        n_out = int((poke > 0).any(axis=1).sum())
        return _invalid(
            f"circle {i} (center ({float(x[i])!r}, {float(y[i])!r}), radius {float(r[i])!r}) crosses the {side} "
            f"side by {poke[i, w]:.3g}; {n_out} circle(s) outside the square",
            max_wall_violation=float(poke[i, w]),
        )

    dist = np.sqrt((x[:, None] - x[None, :]) ** 2 + (y[:, None] - y[None, :]) ** 2)
    overlap = (r[:, None] + r[None, :]) - dist  # > 0: the pair overlaps by that much
    iu = np.triu_indices(N_CIRCLES, k=1)
    pair_overlap = overlap[iu]
    if (pair_overlap > 0).any():
        k = int(np.argmax(pair_overlap))
        i, j = int(iu[0][k]), int(iu[1][k])
        return _invalid(
            f"circles {i} and {j} overlap by {pair_overlap[k]:.3g}: distance {float(dist[i, j])!r} "
            f"< r{i} + r{j} = {float(r[i] + r[j])!r}; {int((pair_overlap > 0).sum())} overlapping pair(s)",
            max_overlap=float(pair_overlap[k]),
        )

    total = float(np.sum(r))
    wall_gap = np.min(np.stack([x - r, 1.0 - x - r, y - r, 1.0 - y - r]), axis=0)
    near_wall = float(np.mean(wall_gap < NEAR_WALL))
    cv = float(np.std(r) / np.mean(r))
    gaps = -pair_overlap  # >= 0 for every pair of a valid packing
    return {
        "score": total,
        "metrics": {
            "sum_radii": total,
            "min_radius": float(r.min()),
            "max_radius": float(r.max()),
            "radius_cv": cv,
            "near_wall_fraction": near_wall,
            "contacts": float(np.sum(gaps < 1e-6) + np.sum(wall_gap < 1e-6)),
            "min_gap": float(min(gaps.min(), wall_gap.min())),
            "gap_to_record": 2.6358627564 - total,
        },
        # Uniform grids have cv near 0, big-and-small mixtures near 0.5+; packings pressed
        # against the walls differ from those floating in the middle in the second feature.
        "features": [cv, near_wall],
    }


def evaluate(program_path: str) -> dict:
    """Run the program's ``run_packing()`` and check its packing (see the module docstring)."""
    module = _load(program_path)
    entry = getattr(module, ENTRY, None)
    if not callable(entry):
        return _invalid(f"the program defines no function {ENTRY}()")
    result = entry()
    if not isinstance(result, (tuple, list)) or len(result) < 2:
        return _invalid(
            f"{ENTRY}() must return (centers, radii), got {type(result).__name__}"
            + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        )
    return check_packing(result[0], result[1])
