"""Evaluator for Erdős' minimum overlap problem (upper bounds from step functions).

The problem: for a measurable h on [0, 2] with 0 <= h <= 1 and ∫ h = 1, let

    M(h) = max over real k of  ∫ h(x) (1 - h(x + k)) dx,

where ``1 - h`` is the density of the complementary set and so counts as 0 outside [0, 2]
(in Erdős' discrete problem h and 1 - h are the densities of the two halves A and B of a
partition of {1, ..., 2n}, and M counts the pairs a - b = k). The minimum overlap constant
is the infimum of M(h) over all such h (Haugland, J. Number Theory 58, 1996, with
Swinnerton-Dyer's proof; the infimum may be taken over step functions), so every h gives
the upper bound M(h). Anchors:

* upper bound 0.380927, J. K. Haugland, "The minimum overlap problem revisited" (2016);
* upper bound 0.380924 as stated in the AlphaEvolve paper (Novikov et al., Google DeepMind,
  2025, appendix B); its published step function evaluates to 0.3809230 (0.38092303510845);
* lower bound 0.379005, E. P. White, "Erdős' minimum overlap problem" (2022).

The program's ``construct_function()`` returns the heights of n equal-width steps on
[0, 2]. Nothing it reports is trusted; the evaluator

1. requires a non-empty 1-D array of finite, non-negative numbers with a positive sum
   (n <= MAX_STEPS);
2. rescales the heights so the integral is 1 (``h *= n / (2 * sum(h))``);
3. requires every rescaled height to be <= 1. A program that normalizes itself gets
   values within a few ulps of 1 back, so heights up to 1 + ROUNDING_SLACK pass and are
   used as they are: that can move M by no more than a few times ROUNDING_SLACK, far
   below the differences between the records above. A larger height means the heights cannot be a
   density with integral 1, and the output is invalid with the offending step named;
4. computes M exactly: for steps of width dx = 2 / n, the overlap at shift k is piecewise
   linear in k with breaks at whole-step shifts (a correlation of two box functions is a
   triangle), so its maximum over all real k is attained at a whole-step shift m and
   M = dx * max_m sum_i h[i] (1 - h[i + m]), with 1 - h taken as 0 beyond the ends.
   This is ``np.correlate(h, 1 - h, "full").max() * dx``, the same quantity AlphaEvolve's
   published verifier computes.

Score = -M (higher is better). Check: the constant h = 1/2 gives
M = max_k (1/4) (2 - |k|) = 1/2 at k = 0; Haugland's two-step h = (1/3, 2/3) gives 4/9.
Only numpy and the standard library are used, so this file can be copied as an example.
"""

from __future__ import annotations

import importlib.util
import uuid

import numpy as np

ENTRY = "construct_function"
MAX_STEPS = 1 << 20
ROUNDING_SLACK = 1e-9
DIRECT_LIMIT = 4096  # above this many steps correlate with FFTs (error ~1e-15 * n)


def _load(program_path: str):
    name = f"erdos_program_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, program_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a Python module from {program_path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _invalid(reason: str, **metrics: float) -> dict:
    return {"valid": False, "reason": reason, "metrics": metrics}


def _max_correlation(h: np.ndarray) -> float:
    """max over whole-step shifts m of sum_i h[i] * (1 - h[i + m]) (outside: 0)."""
    g = 1.0 - h
    n = len(h)
    if n <= DIRECT_LIMIT:
        return float(np.max(np.correlate(h, g, mode="full")))
    size = 1 << (2 * n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(g, size)), size)
    return float(np.max(corr))


def overlap_bound(values) -> dict:
    """Check raw step heights and compute M(h). Returns the evaluator's result dict."""
    try:
        h = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        return _invalid(f"the step heights are not a numeric array: {e}")
    if h.ndim != 1:
        return _invalid(f"the step heights must be a 1-D array, got shape {h.shape}")
    n = h.size
    if n == 0:
        return _invalid("the step function has no steps (empty array)")
    if n > MAX_STEPS:
        return _invalid(f"{n} steps is more than the {MAX_STEPS} this evaluator accepts")
    if not np.isfinite(h).all():
        i = int(np.flatnonzero(~np.isfinite(h))[0])
        return _invalid(f"step {i} of {n} is {float(h[i])!r}; every height must be finite")
    if (h < 0).any():
        i = int(np.argmin(h))
        return _invalid(
            f"step {i} of {n} has height {float(h[i])!r} < 0; h must be non-negative "
            f"({int((h < 0).sum())} negative step(s))"
        )
    total = float(np.sum(h))
    if not total > 0:
        return _invalid("every height is 0, so h cannot be rescaled to integral 1")

    dx = 2.0 / n
    h = h * (n / (2.0 * total))
    if h.max() > 1.0 + ROUNDING_SLACK:
        i = int(np.argmax(h))
        return _invalid(
            f"after rescaling to integral 1, step {i} of {n} has height {float(h[i])!r} > 1 "
            f"({int((h > 1.0 + ROUNDING_SLACK).sum())} step(s) above 1); h must stay in [0, 1]",
            max_height=float(h[i]),
        )

    bound = _max_correlation(h) * dx
    edges = np.arange(n + 1) * dx
    in_middle = np.clip(np.minimum(edges[1:], 1.5) - np.maximum(edges[:-1], 0.5), 0.0, None)
    middle_mass = float(np.sum(h * in_middle))
    variation = float(np.sum(np.abs(np.diff(h))))
    return {
        "score": -bound,
        "metrics": {
            "bound": bound,
            "n": float(n),
            "log2_n": float(np.log2(n)),
            "middle_mass": middle_mass,
            "total_variation": variation,
            "max_height": float(h.max()),
            "min_height": float(h.min()),
            "gap_to_alphaevolve": bound - 0.38092303510845,
        },
        # How concentrated h is (mass in [0.5, 1.5]) and how much it oscillates: smooth
        # bumps, flat-topped plateaus and the wiggly record functions sit apart.
        "features": [middle_mass, variation],
    }


def evaluate(program_path: str) -> dict:
    """Run the program's ``construct_function()`` and bound its step function."""
    module = _load(program_path)
    entry = getattr(module, ENTRY, None)
    if not callable(entry):
        return _invalid(f"the program defines no function {ENTRY}()")
    return overlap_bound(entry())
