"""Pack 26 circles into the unit square so that the sum of their radii is as large as possible.

Entry point: ``run_packing() -> (centers, radii)``, ``centers`` of shape (26, 2) and ``radii``
of shape (26,). The evaluator accepts a packing only if every circle lies inside [0, 1]^2 and
no two circles overlap, checked exactly (no tolerance).

The program has three parts: ``layout`` places the centres on rings, ``radii`` turns centres
into radii, and ``refine`` is a small random local search over the centres. Whatever they
return, ``_make_valid`` (outside the blocks) repairs it into a strictly valid packing, so
changing any constant still gives a valid program.
"""

import numpy as np

N_CIRCLES = 26

# EVOLVE-BLOCK-START layout
# One circle at (CENTER_X, CENTER_Y) and two concentric rings around it. The inner ring
# holds INNER_COUNT circles and the outer ring the rest; points a large ring puts outside
# the square are clipped back onto its edge.
CENTER_X = 0.5
CENTER_Y = 0.5
INNER_COUNT = 8
INNER_RADIUS = 0.2
INNER_PHASE = 0.0  # rotation of the inner ring, radians
OUTER_RADIUS = 0.7
OUTER_PHASE = 0.2  # rotation of the outer ring, radians
OUTER_STRETCH = 1.0  # > 1 pulls the outer ring towards the corners (a squarer ring)


def initial_centers(n):
    inner = int(np.clip(np.rint(INNER_COUNT), 0, n - 1))
    outer = n - 1 - inner
    points = [(CENTER_X, CENTER_Y)]
    for count, radius, phase, stretch in (
        (inner, INNER_RADIUS, INNER_PHASE, 1.0),
        (outer, OUTER_RADIUS, OUTER_PHASE, OUTER_STRETCH),
    ):
        for k in range(count):
            angle = phase + 2.0 * np.pi * k / count
            c, s = np.cos(angle), np.sin(angle)
            # stretch the unit circle towards the unit square's boundary (|c| or |s| -> 1)
            scale = 1.0 / max(abs(c), abs(s)) ** (stretch - 1.0) if stretch != 1.0 else 1.0
            points.append((CENTER_X + radius * c * scale, CENTER_Y + radius * s * scale))
    return np.array(points, dtype=float)


# EVOLVE-BLOCK-END


# EVOLVE-BLOCK-START radii
# Each circle starts as large as the walls allow; every overlapping pair is then shrunk in
# proportion until it just touches. Growth passes let the circles, one at a time, take a
# share (GROWTH_RATE) of the free space their neighbours leave around them.
WALL_FRACTION = 1.0  # share of the wall distance a circle may use
GROWTH_PASSES = 1
GROWTH_RATE = 0.05  # 0: no growth, 1: grow until touching a wall or a neighbour


def choose_radii(centers):
    n = len(centers)
    x, y = centers[:, 0], centers[:, 1]
    walls = WALL_FRACTION * np.minimum(np.minimum(x, 1.0 - x), np.minimum(y, 1.0 - y))
    dist = np.sqrt((x[:, None] - x[None, :]) ** 2 + (y[:, None] - y[None, :]) ** 2)
    dist[np.arange(n), np.arange(n)] = np.inf
    radii = walls.copy()
    for i in range(n):
        for j in range(i + 1, n):
            if radii[i] + radii[j] > dist[i, j]:
                scale = dist[i, j] / (radii[i] + radii[j])
                radii[i] *= scale
                radii[j] *= scale
    rate = min(max(GROWTH_RATE, 0.0), 1.0)
    for _ in range(int(GROWTH_PASSES)):
        for i in range(n):
            free = min(walls[i], np.min(dist[i] - radii))  # dist[i, i] is inf
            radii[i] += rate * max(free - radii[i], 0.0)
    return radii


# EVOLVE-BLOCK-END


# EVOLVE-BLOCK-START refine
# Random local search: move one centre by a Gaussian step, recompute the radii with
# choose_radii, keep the move if the sum of radii grew. The step shrinks geometrically.
ITERATIONS = 30
STEP = 0.05
STEP_DECAY = 0.999  # multiplies STEP after every iteration
SEED = 0


def refine(centers):
    rng = np.random.default_rng(int(SEED))
    best = np.clip(centers, 0.0, 1.0)
    best_sum = float(np.sum(choose_radii(best)))
    step = STEP
    for _ in range(int(ITERATIONS)):
        i = rng.integers(len(best))
        trial = best.copy()
        trial[i] = np.clip(trial[i] + rng.normal(0.0, abs(step), size=2), 0.0, 1.0)
        trial_sum = float(np.sum(choose_radii(trial)))
        if trial_sum > best_sum:
            best, best_sum = trial, trial_sum
        step *= STEP_DECAY
    return best


# EVOLVE-BLOCK-END


MARGIN = 1e-6  # centres stay this far inside the square so every circle can have r > 0


def _clip_centers(centers, n=N_CIRCLES):
    """Exactly n distinct centres inside [MARGIN, 1 - MARGIN]^2."""
    c = np.nan_to_num(np.asarray(centers, dtype=float).reshape(-1, 2)[:n], nan=0.5)
    if len(c) < n:  # too few centres: add points on a small spiral around the middle
        k = np.arange(n - len(c))
        spiral = 0.3 * np.sqrt((k + 0.5) / len(k))[:, None]
        c = np.vstack([c, 0.5 + spiral * np.stack([np.cos(2.4 * k), np.sin(2.4 * k)], axis=1)])
    c = np.clip(c, MARGIN, 1.0 - MARGIN)
    for i in range(1, n):  # coincident centres would force a zero radius
        for attempt in range(1000):
            if np.min(np.hypot(*(c[:i] - c[i]).T)) > 1e-7:
                break
            nudge = 1e-5 * np.array([np.cos(attempt), np.sin(attempt)])
            c[i] = np.clip(c[i] + nudge, MARGIN, 1.0 - MARGIN)
    return c


def _make_valid(centers, radii, n=N_CIRCLES):
    """Repair (centers, radii) into a strictly valid packing of n circles.

    Radii are cut to the walls and shrunk pairwise until no two circles overlap, circles left
    with no radius get one, and the result is checked with the arithmetic the evaluator uses.
    """
    c = _clip_centers(centers, n)
    r = np.nan_to_num(np.asarray(radii, dtype=float).ravel()[:n], nan=0.0)
    r = np.concatenate([r, np.zeros(n - len(r))])
    x, y = c[:, 0], c[:, 1]
    walls = np.minimum(np.minimum(x, 1.0 - x), np.minimum(y, 1.0 - y))
    dist = np.sqrt((x[:, None] - x[None, :]) ** 2 + (y[:, None] - y[None, :]) ** 2)
    dist[np.arange(n), np.arange(n)] = np.inf
    r = np.clip(r, 0.0, walls)
    for i in range(n):
        for j in range(i + 1, n):
            if r[i] + r[j] > dist[i, j]:
                scale = dist[i, j] / (r[i] + r[j])
                r[i] *= scale
                r[j] *= scale
    for i in np.flatnonzero(r <= 0.0):
        # neighbours give up at most half their distance to i, so i gets a positive radius
        r = np.minimum(r, dist[i] / 2.0)
        r[i] = min(walls[i], np.min(dist[i] - r))
    dist[np.arange(n), np.arange(n)] = 0.0
    for k in range(60):  # rounding can leave a violation of a few ulps: shrink until none
        r = r * max(1.0 - 1e-12 * 2.0**k, 0.5)
        overlap = np.triu(dist < r[:, None] + r[None, :], k=1).any()
        outside = ((x - r < 0) | (x + r > 1) | (y - r < 0) | (y + r > 1)).any()
        if not overlap and not outside:
            break
    return c, r


def run_packing():
    centers = _clip_centers(refine(initial_centers(N_CIRCLES)))
    return _make_valid(centers, choose_radii(centers))


if __name__ == "__main__":
    c, r = run_packing()
    print(f"sum of radii: {r.sum():.12f}")
