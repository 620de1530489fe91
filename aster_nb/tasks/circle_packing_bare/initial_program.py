"""Pack 26 circles into the unit square, maximizing the sum of radii (a bare start).

``run_packing() -> (centers, radii)``. This start places only 25 of the 26 circles: the
last one is left at the corner (0, 0), where it gets radius 0, so the packing breaks the
strict rules and scores 0 until an edit places it.
"""

import numpy as np


# EVOLVE-BLOCK-START main
def construct_packing():
    n = 26
    centers = np.zeros((n, 2))
    centers[0] = [0.5, 0.5]  # one circle in the middle
    for i in range(8):  # a ring of 8 around it
        angle = 2 * np.pi * i / 8
        centers[i + 1] = [0.5 + 0.3 * np.cos(angle), 0.5 + 0.3 * np.sin(angle)]
    for i in range(16):  # an outer ring of 16, pulled back inside the square
        angle = 2 * np.pi * i / 16
        point = [0.5 + 0.7 * np.cos(angle), 0.5 + 0.7 * np.sin(angle)]
        centers[i + 9] = np.clip(point, 0.01, 0.99)
    return centers, compute_max_radii(centers)


def compute_max_radii(centers):
    """Each radius starts at the distance to the nearest wall; overlapping pairs shrink
    until they touch, less a relative 1e-9 so that rounding never leaves an overlap."""
    n = len(centers)
    radii = np.ones(n)
    for i in range(n):
        x, y = centers[i]
        radii[i] = min(x, y, 1 - x, 1 - y)
    for i in range(n):
        for j in range(i + 1, n):
            dist = np.sqrt(np.sum((centers[i] - centers[j]) ** 2))
            if radii[i] + radii[j] > dist:
                scale = (1 - 1e-9) * dist / (radii[i] + radii[j])
                radii[i] *= scale
                radii[j] *= scale
    return radii


# EVOLVE-BLOCK-END


def run_packing():
    return construct_packing()
