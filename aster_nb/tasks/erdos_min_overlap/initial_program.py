"""A step function for Erdős' minimum overlap problem.

Find h on [0, 2] with values in [0, 1] and integral 1 that makes
M(h) = max_k ∫ h(x) (1 - h(x + k)) dx as small as possible (1 - h counts as 0 outside
[0, 2]). Any such h proves the upper bound M(h) on the minimum overlap constant.

Entry point: ``construct_function() -> values``, the heights of equal-width steps on [0, 2].
The evaluator rescales them to integral 1 and computes M exactly.

The program has two parts: ``shape`` draws a smooth bump at a chosen resolution, and
``refine`` is a small random local search on the step heights. ``_project`` (outside the
blocks) maps any heights into [0, 1] with integral 1, so changing a constant always gives a
valid step function.
"""

import numpy as np

# EVOLVE-BLOCK-START shape
# A bump HEIGHT * exp(-|(x - CENTER) / WIDTH| ** POWER) + TILT * (x - 1), sampled at the
# midpoints of NUM_STEPS equal steps. _project then shifts it up or down and clips it into
# [0, 1] so that its integral is 1: a larger HEIGHT gives a flat top at 1 and steeper sides.
NUM_STEPS = 40
CENTER = 1.0
WIDTH = 0.35
POWER = 2.0
HEIGHT = 1.0
TILT = 0.0


def initial_values():
    n = max(1, int(NUM_STEPS))
    x = (np.arange(n) + 0.5) * (2.0 / n)
    return HEIGHT * np.exp(-(np.abs((x - CENTER) / WIDTH) ** POWER)) + TILT * (x - 1.0)


# EVOLVE-BLOCK-END


# EVOLVE-BLOCK-START refine
# Random local search: add Gaussian noise to a run of RUN_LENGTH neighbouring steps, project
# back to a valid h, keep the change if the bound went down. The step size decays.
ITERATIONS = 20
STEP = 0.1
STEP_DECAY = 0.999  # multiplies STEP after every iteration
RUN_LENGTH = 3
SEED = 0


def refine(h):
    rng = np.random.default_rng(int(SEED))
    best, best_bound = h, overlap_bound(h)
    step = STEP
    n = len(h)
    width = int(min(max(RUN_LENGTH, 1), n))
    for _ in range(int(ITERATIONS)):
        start = rng.integers(n - width + 1)
        trial = best.copy()
        trial[start : start + width] += rng.normal(0.0, abs(step), size=width)
        trial = _project(trial)
        bound = overlap_bound(trial)
        if bound < best_bound:
            best, best_bound = trial, bound
        step *= STEP_DECAY
    return best


# EVOLVE-BLOCK-END


def _project(values):
    """clip(values + c, 0, 1) with the constant c that makes the mean 1/2 (integral 1)."""
    v = np.nan_to_num(np.asarray(values, dtype=float).ravel(), nan=0.5, posinf=1.0, neginf=0.0)
    if v.size == 0:
        v = np.full(1, 0.5)
    # the mean of clip(v + c, 0, 1) grows with c from 0 (at lo) to 1 (at hi): bisect on c
    # until lo and hi are neighbouring floats
    lo, hi = -1.0 - v.max(), 1.0 - v.min()
    while lo < (mid := 0.5 * (lo + hi)) < hi:
        if np.mean(np.clip(v + mid, 0.0, 1.0)) < 0.5:
            lo = mid
        else:
            hi = mid
    return np.clip(v + hi, 0.0, 1.0)


def overlap_bound(h):
    """M(h) for heights h on equal steps of [0, 2] (the evaluator recomputes it)."""
    h = np.asarray(h, dtype=float)
    dx = 2.0 / len(h)
    return float(np.max(np.correlate(h, 1.0 - h, mode="full")) * dx)


def construct_function():
    return refine(_project(initial_values()))


if __name__ == "__main__":
    h = construct_function()
    print(f"{len(h)} steps, M(h) = {overlap_bound(h / (np.sum(h) * 2.0 / len(h))):.10f}")
