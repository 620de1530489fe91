"""Plane geometry for archive maps: descriptors projected to 2-D, Voronoi regions, grid boxes.

An archive's cells live in its descriptor space, of any dimension; a map draws them in a
plane. This module holds the arithmetic of that picture and nothing else (no archives, no
stores, no plotting library), so :mod:`aster_nb.snapshot` reads as what it draws and this
as how:

* :class:`Projection` -- descriptors to the plane: as they are in 1-2 dimensions, the
  first two coordinates (already principal components, as a code embedding's are), or
  the first two principal components of the standardized descriptors.
* :func:`voronoi_regions` -- the region of each centre inside a box, in the metric the
  archive assigns programs by (its per-dimension scale), else in coordinates scaled to
  the box so both axes weigh alike; :func:`voronoi_region` for one centre, by half-plane
  clips (Sutherland-Hodgman).
* :func:`grid_box` -- the rectangle of one cell of a grid archive, or of the column of
  cells behind one box when a grid over more than two dimensions is seen in its first two.
* :func:`padded_bounds` -- the box around points that leaves edge cells visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PAD",
    "Bounds",
    "Projection",
    "clip_halfplane",
    "grid_box",
    "padded_bounds",
    "voronoi_region",
    "voronoi_regions",
]

PAD = 0.05
"""Share of the points' span added on each side of a map's box, so edge cells are visible."""

Bounds = tuple[tuple[float, float], tuple[float, float]]
"""A box in the plane: ``((x_low, x_high), (y_low, y_high))``."""


@dataclass(frozen=True, slots=True)
class Projection:
    """Descriptors to the plane: ``((x - mean) / scale) @ basis``, or, when ``basis`` is
    ``None`` (1-2 dimensions), the descriptors as they are (one dimension along x).

    Attributes:
        mean: subtracted from each descriptor, shape ``(dims,)``.
        scale: each dimension is divided by it, shape ``(dims,)``.
        basis: ``(dims, 2)``; ``None``: no projection.
        axes: the two axis titles.
        explained: share of the variance along each of the two axes (:meth:`pca` only).
    """

    mean: np.ndarray
    scale: np.ndarray
    basis: np.ndarray | None
    axes: tuple[str, str]
    explained: tuple[float, float] | None = None

    @classmethod
    def as_is(cls, dims: int, names: Sequence[str]) -> Projection:
        """The descriptors as they are: 2 dimensions as x and y, 1 along x, 0 at the origin."""
        axes = (names[0] if dims else "", names[1] if dims == 2 else "")
        return cls(np.zeros(dims), np.ones(dims), None, axes)

    @classmethod
    def leading(cls, dims: int, names: Sequence[str]) -> Projection:
        """The first two coordinates, as they are: for descriptors whose coordinates are
        already principal components sorted by variance (a code embedding's)."""
        return cls(np.zeros(dims), np.ones(dims), np.eye(dims)[:, :2], (names[0], names[1]))

    @classmethod
    def pca(cls, x: np.ndarray) -> Projection:
        """The first two principal components of ``x`` (``(n, dims)``, ``dims > 2``), each
        dimension standardized first so no unit dominates.

        Each axis' sign is fixed (its largest-magnitude loading is positive), so the map
        does not flip between redraws.
        """
        dims = x.shape[1]
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        z = (x - mean) / scale
        _, s, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
        var = s**2 / max(float(np.sum(s**2)), 1e-300)
        basis = vt[:2].T if vt.shape[0] >= 2 else np.eye(dims)[:, :2]
        basis = basis * np.sign(basis[np.argmax(np.abs(basis), axis=0), [0, 1]])
        axes = (f"PC1 ({var[0]:.0%} of variance)", f"PC2 ({var[1]:.0%} of variance)")
        return cls(mean, scale, basis, axes, (var[0], var[1]))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Points of the descriptors ``x`` (``(n, dims)``) in the plane, ``(n, 2)``."""
        x = np.asarray(x, dtype=float)
        if len(x) == 0:
            return np.empty((0, 2))
        if self.basis is not None:
            return ((x - self.mean) / self.scale) @ self.basis
        if x.shape[1] == 2:
            return x
        if x.shape[1] == 1:  # one feature: spread along x only
            return np.column_stack([x[:, 0], np.zeros(len(x))])
        return np.zeros((len(x), 2))


def padded_bounds(xy: np.ndarray, pad: float = PAD) -> Bounds:
    """The box around the points ``xy`` (``(n, 2)``), widened by ``pad`` of its span on each
    side (of the value, or 0.5, along an axis without span); ``(-1, 1)`` without points."""
    out = []
    for d in range(2):
        if len(xy) == 0:
            out.append((-1.0, 1.0))
            continue
        lo, hi = float(np.min(xy[:, d])), float(np.max(xy[:, d]))
        width = (hi - lo) * pad if hi > lo else max(abs(lo) * pad, 0.5)
        out.append((lo - width, hi + width))
    return (out[0], out[1])


def grid_box(bounds: np.ndarray, bins: np.ndarray, cell: int) -> np.ndarray:
    """The rectangle of flat cell ``cell`` (C order over ``bins``, as
    ``np.ravel_multi_index`` numbers it) of a grid of ``bins`` over ``bounds`` (``(dims,
    2)``, low and high per dimension), in the plane of its first two dimensions, as 4
    corners, ``(4, 2)``.

    With one dimension the cell is a band across the plot (``y`` from -1 to 1). With more
    than two, the rectangle is where every cell sharing the first two bin indices lies in
    that plane: the column of ``prod(bins[2:])`` cells behind it.
    """
    bins = np.asarray(bins, dtype=np.int64)
    # the flat index holds one bin index per dimension: unravel it, never read it as one
    idx = np.asarray(np.unravel_index(int(cell), tuple(int(b) for b in bins)), dtype=float)
    width = (bounds[:, 1] - bounds[:, 0]) / bins
    lo = bounds[:, 0] + idx * width
    hi = bounds[:, 0] + (idx + 1) * width
    if len(lo) == 1:  # one feature: bands across the plot
        lo, hi = np.array([lo[0], -1.0]), np.array([hi[0], 1.0])
    return np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])


def voronoi_regions(
    centers: np.ndarray, bounds: Bounds, *, metric: np.ndarray | None = None
) -> list[np.ndarray]:
    """The Voronoi region of each of ``centers`` (``(n, 2)``) inside the box ``bounds``.

    Args:
        centers: the centres in the plane.
        bounds: the box the regions are clipped to.
        metric: the divisor of each axis before distances are taken, ``(2,)``: the scale
            an archive assigns programs to centres by (Cluster-Elites' standardization),
            so each drawn region holds exactly the points the archive puts in its cell.
            ``None``: the box's span, so both axes weigh alike on the drawn square (raw
            features often differ in units by 10x; distances in them would draw slivers).

    Raises:
        ValueError: ``metric`` is not two positive finite numbers.
    """
    (x0, x1), (y0, y1) = bounds
    origin = np.array([x0, y0])
    if metric is None:
        span = np.array([x1 - x0, y1 - y0])
    else:
        span = np.asarray(metric, dtype=float)
        if span.shape != (2,) or not np.all(np.isfinite(span)) or not np.all(span > 0):
            raise ValueError(f"metric must be two positive finite numbers, got {metric!r}")
    scaled = (np.asarray(centers, dtype=float) - origin) / span
    corner = np.array([x1 - x0, y1 - y0]) / span
    box = np.array([[0.0, 0.0], [corner[0], 0.0], corner, [0.0, corner[1]]])
    return [voronoi_region(scaled, i, box) * span + origin for i in range(len(scaled))]


def voronoi_region(centers: np.ndarray, i: int, box: np.ndarray) -> np.ndarray:
    """The region of ``centers[i]`` in the Voronoi diagram of ``centers``, inside the
    convex polygon ``box``: ``box`` clipped by the half-plane nearer to ``centers[i]`` than
    to each other centre (Sutherland-Hodgman).

    Neighbours are taken nearest first, and once a centre is farther than twice the
    region's farthest vertex it cannot cut the region any more, so a cell costs a handful
    of clips rather than one per centre."""
    poly = box.astype(float)
    ci = centers[i]
    dist = np.sqrt(((centers - ci) ** 2).sum(axis=1))
    reach = float(np.sqrt(((poly - ci) ** 2).sum(axis=1)).max())
    for j in np.argsort(dist, kind="stable"):
        if j == i or dist[j] == 0.0:
            continue  # itself, or a duplicate centre: the tie goes to both
        if dist[j] > 2 * reach or len(poly) == 0:
            break
        normal = centers[j] - ci
        poly = clip_halfplane(poly, normal, float(normal @ (ci + centers[j]) / 2))
        if len(poly):
            reach = float(np.sqrt(((poly - ci) ** 2).sum(axis=1)).max())
    return poly


def clip_halfplane(poly: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """The part of the convex polygon ``poly`` (``(m, 2)``) where ``normal @ x <= offset``;
    ``(0, 2)`` if none."""
    side = poly @ normal - offset
    inside = side <= 1e-12
    if inside.all():
        return poly
    if not inside.any():
        return np.empty((0, 2))
    out = []
    n = len(poly)
    for k in range(n):
        a, b = poly[k], poly[(k + 1) % n]
        sa, sb = side[k], side[(k + 1) % n]
        if inside[k]:
            out.append(a)
        if inside[k] != inside[(k + 1) % n]:
            out.append(a + (b - a) * (sa / (sa - sb)))
    return np.array(out)
