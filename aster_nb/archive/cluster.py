"""Cluster-Elites: CVT-MAP-Elites whose cells are k-means clusters of the whole history.

CVT-MAP-Elites (Vassiliades, Chatzilygeroudis & Mouret 2018, "Using Centroidal Voronoi
Tessellations to Scale Up the Multidimensional Archive of Phenotypic Elites Algorithm",
IEEE Trans. Evol. Comput. 22(4)) partitions the descriptor space into the Voronoi cells of
``k`` centroids and keeps the best program per cell. The original places the centroids by
k-means on points drawn uniformly from known bounds, so when the programs crowd into one
corner -- as edited programs do -- most cells stay empty. Here the centroids are k-means
clusters of the descriptors of every program seen so far, so each cell holds at least one
program by construction and the cells are densest where the search actually goes.

How it stays cheap as the history grows (numbers from ``benchmarks/archive_scaling.py``,
2 cores, skewed 2-D and 8-D descriptors, 100,000 programs):

* ``k = min(k_max, ceil(sqrt(2 n)), distinct points)``: twice the classic rule of thumb
  ``sqrt(n / 2)`` (Mardia, Kent & Bibby 1979, "Multivariate Analysis"). Cells then hold
  ``~sqrt(n / 2)`` programs each, so both the number of niches and the competition inside
  a niche grow with ``n``; ``k_max`` (default 64) is reached at ``n = k_max**2 / 2``
  (about 2,000 programs). Why twice: at 400 evaluations (4 seeds, offline model) the
  classic rule's 14 cells gave mean best 2.003 / -0.3938 (circle packing / Erdős),
  ``sqrt(2 n)`` (27 cells) 2.044 / -0.3901, and ``n / 8`` (46 cells) 1.974 / -0.3939: too
  few niches starve diversity, too many spread a weak proposer thin.
* Re-clustering happens only when the history has grown by the factor ``growth`` (default
  1.25) since the last one: 48 re-clusters up to 100,000 programs, whose total cost is a
  geometric series dominated by the last few (1.0 s in all, 0.14 s for the one near
  100,000). Between re-clusters a new program joins the cell of its nearest centroid,
  O(k * dims): about 13 us per ``add``, 24 us with re-clusters amortized.
* Each re-cluster is warm-started from the previous centroids (plus k-means++ picks for
  new ones, Arthur & Vassilvitskii 2007), so Lloyd's iterations start near a fixed point,
  and they are capped at ``max_iter`` (default 10). At 100,000 programs, 10 warm
  iterations reach an inertia within 0.1% of running Lloyd to convergence (~100
  iterations) in a ninth of the time; a cold k-means++ restart was slower (1.2 s in 2-D,
  10 s in 8-D) and no better (1-4% higher inertia); scikit-learn's ``MiniBatchKMeans``
  from the same warm start was no faster than 10 full iterations and 8-95% worse. The
  warm start also keeps cells in place from one re-cluster to the next, which matters
  more to an archive than the last percent of inertia.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..features import Descriptor
from .base import ArchiveBase

# Rows of the (points x centroids) distance matrix computed at once: small enough to stay
# in cache (4 MB at k = 64), which measured 1.5x faster than one big matrix at 100k rows,
# and it bounds memory however long the history gets.
_CHUNK = 8_192


class ClusterElites(ArchiveBase):
    """CVT-MAP-Elites over k-means clusters of all history; every cell is always filled.

    Each cell's elite is the best program among *all* history programs assigned to it, so a
    re-cluster can move programs between cells but never loses the global best, and
    :meth:`coverage` is 1.0 whenever the archive is non-empty.

    Descriptors are z-scored by the history's mean and standard deviation (a dimension
    with zero spread is left unscaled) before clustering, so features in different units
    weigh alike. The statistics are frozen between re-clusters so that assignments stay
    consistent with the centroids.

    Args:
        dims: length of the descriptor every ``ok`` program carries in ``descriptor``.
        k_max: upper bound on the number of cells (default 64).
        growth: re-cluster when the history has grown by this factor since the last
            re-cluster; must be > 1 (default 1.25).
        seed: seed of the k-means++ picks, so the same programs in the same order give the
            same cells.
        max_iter: cap on Lloyd iterations per re-cluster (default 10); the warm start makes
            more rarely useful (see the module docs).
        tournament: entrants per parent tournament (see
            :meth:`~aster_nb.archive.base.ArchiveBase.sample`).
        selection: the parent selection rule, one of
            :data:`~aster_nb.archive.selection.SELECTIONS` (default ``adaptive``).
        descriptor: computes descriptors instead of reading ``program.descriptor`` (see
            :class:`~aster_nb.archive.base.ArchiveBase`); with one, ``dims`` may be
            ``None``. A ``scaled`` descriptor (the code embedding) is not standardized, and
            when an adaptive one is refit, all history is re-clustered at once, warm-started
            from each cell's members in the new coordinates.

    Attributes:
        reclusters: number of re-clusters done so far.
        recluster_seconds: total wall time spent re-clustering.
        last_iterations: Lloyd iterations the last re-cluster ran.
    """

    name = "cluster"
    layout = "centroids"

    def __init__(
        self,
        *,
        dims: int,
        k_max: int = 64,
        growth: float = 1.25,
        seed: int = 0,
        max_iter: int = 10,
        tournament: int = 8,
        selection: str = "adaptive",
        descriptor: Descriptor | None = None,
    ) -> None:
        if dims is None and descriptor is None:
            raise ValueError("ClusterElites needs dims: the length of the descriptors")
        super().__init__(
            dims=dims, tournament=tournament, selection=selection, descriptor=descriptor
        )
        if not isinstance(k_max, int) or k_max < 1:
            raise ValueError(f"k_max must be an int >= 1, got {k_max!r}")
        if not growth > 1.0:
            raise ValueError(
                f"growth must be > 1 (a geometric re-cluster schedule), got {growth!r}"
            )
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
        self.k_max = k_max
        self.growth = float(growth)
        self.seed = seed
        self.max_iter = max_iter
        self.reclusters = 0
        self.recluster_seconds = 0.0
        self.last_iterations = 0
        self._rng = np.random.default_rng(seed)
        self._standardize = descriptor is None or not descriptor.scaled
        self._labels = np.empty(64, dtype=np.int64)
        self._elite = np.empty(0, dtype=np.int64)  # cell -> history row of its elite
        self._distinct: set[tuple[float, ...]] = set()
        self._next_recluster = 1
        self._moved = False  # all descriptors changed since the last re-cluster
        self._placed = 0  # rows [0, placed) have a cell
        if dims is not None:
            self._on_dims(dims)

    def _on_dims(self, dims: int) -> None:
        self._mean = np.zeros(dims)
        self._std = np.ones(dims)
        self._centroids_z = np.empty((0, dims))

    # -- protocol -------------------------------------------------------------------------

    @property
    def cells(self) -> int:
        """Current number of clusters (0 before the first program)."""
        return len(self._elite)

    def cell_of(self, program_id: str) -> int | None:
        """Cell of a kept program (elite or not) under the current clustering, else ``None``."""
        row = self._row_of.get(program_id)
        return None if row is None else int(self._labels[row])

    def _elite_rows(self) -> np.ndarray:
        return self._elite

    # -- analysis -------------------------------------------------------------------------

    @property
    def centroids(self) -> np.ndarray:
        """Cell centroids in the original descriptor units, shape ``(cells, dims)``."""
        return self._centroids_z * self._std + self._mean

    @property
    def scale(self) -> np.ndarray:
        """Each dimension's divisor before distances are taken, shape ``(dims,)``: the
        history's standard deviation at the last re-cluster (1 where a dimension has no
        spread or the descriptor is already scaled). A program belongs to the cell of the
        nearest centroid in ``descriptor / scale``, so a map draws the cells' Voronoi
        regions in that metric."""
        std = getattr(self, "_std", None)  # set once the descriptor length is known
        return np.ones(self.dims or 0) if std is None else std.copy()

    def labels(self) -> np.ndarray:
        """Cell of every history row, shape ``(history_size,)`` (a copy)."""
        return self._labels[: self.history_size].copy()

    def target_k(self, n: int) -> int:
        """Number of cells wanted for a history of ``n`` points (before the distinct cap)."""
        return min(self.k_max, math.ceil(math.sqrt(2 * n))) if n > 0 else 0

    # -- adding ---------------------------------------------------------------------------

    def _redescribed(self) -> None:
        # Every row moved: re-cluster now, starting from each cell's members.
        self._moved = True
        self._next_recluster = 0

    def _add_ok(self, row: int, desc: np.ndarray | None) -> bool:
        assert desc is not None
        if not self._moved:  # after a refit the set is rebuilt from all rows
            self._distinct.add(tuple(desc.tolist()))
        if row == len(self._labels):
            self._labels = np.resize(self._labels, 2 * row)
        n = row + 1
        if n >= self._next_recluster:
            self.recluster()
            return bool(self._elite[self._labels[row]] == row)
        z = (desc - self._mean) / self._std
        cell = int(np.argmin(((self._centroids_z - z) ** 2).sum(axis=1)))
        self._labels[row] = cell
        self._placed = row + 1
        if self._score_buf[row] > self._score_buf[self._elite[cell]]:
            self._elite[cell] = row
            return True
        return False

    def recluster(self) -> None:
        """Re-standardize, re-cluster all history and recompute every cell's elite.

        Called automatically on the geometric schedule; calling it by hand is harmless.
        """
        n = self.history_size
        if n == 0:
            return
        t0 = time.perf_counter()
        x = self._descs
        mean = x.mean(axis=0)
        std = x.std(axis=0) if self._standardize else np.ones(x.shape[1])
        # A dimension with no spread yet is left unscaled rather than divided by ~0.
        std = np.where(std > 1e-12 * (1.0 + np.abs(mean)), std, 1.0)
        z = (x - mean) / std
        if self._moved:
            # Only "at least k_max distinct points" matters to k, so counting stops there.
            self._distinct = set()
            for row in x:  # row by row: converting all of x first costs 0.1 s at 100k
                self._distinct.add(tuple(row.tolist()))
                if len(self._distinct) >= self.k_max:
                    break
            # The old centroids mean nothing in the new coordinates; the old cells' members
            # do: each cell starts at its members' new mean (rows added since are unplaced).
            placed, cells = self._placed, len(self._elite)
            old = self._labels[:placed]
            counts = np.bincount(old, minlength=cells)
            sums, _ = _means(z[:placed], old, cells)
            init = sums[counts > 0] / counts[counts > 0, None]
            self._moved = False
        else:
            # Warm start: the previous centroids, moved into the new standardization.
            init = (self._centroids_z * self._std + self._mean - mean) / std
        k = min(self.target_k(n), len(self._distinct))
        init = kmeanspp_extend(z, init[:k], k, self._rng)
        centroids, labels, self.last_iterations = lloyd(z, init, max_iter=self.max_iter)
        centroids, labels = _fill_empty(z, centroids, labels)

        self._mean, self._std, self._centroids_z = mean, std, centroids
        self._labels[:n] = labels
        self._placed = n
        self._elite = _best_per_cell(labels, self._scores, len(centroids))
        self._next_recluster = max(n + 1, math.ceil(n * self.growth))
        self.reclusters += 1
        self.recluster_seconds += time.perf_counter() - t0


# -- k-means pieces -------------------------------------------------------------------------


def nearest(z: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid to each row of ``z``."""
    labels = np.empty(len(z), dtype=np.int64)
    # |z - c|^2 = |z|^2 - 2 z.c + |c|^2, and |z|^2 does not change the argmin.
    m = -2.0 * centroids.T
    cc = np.einsum("ij,ij->i", centroids, centroids)
    for s in range(0, len(z), _CHUNK):
        d = z[s : s + _CHUNK] @ m
        d += cc
        labels[s : s + _CHUNK] = d.argmin(axis=1)
    return labels


def sq_dist(z: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Squared distance of each row of ``z`` to its labelled centroid (exact, no cancellation)."""
    return ((z - centroids[labels]) ** 2).sum(axis=1)


def _means(z: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(labels, minlength=k)
    # bincount per dimension is several times faster than np.add.at on large histories.
    sums = np.stack(
        [np.bincount(labels, weights=z[:, j], minlength=k) for j in range(z.shape[1])], 1
    )
    return sums, counts


def lloyd(
    z: np.ndarray, centroids: np.ndarray, *, max_iter: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """At most ``max_iter`` Lloyd iterations from ``centroids``; stops when no label moves.

    Returns the centroids, the label of the nearest centroid of each point (so the labels
    always agree with the returned centroids) and the number of iterations run. A centroid
    left without points is moved onto the point worst served by its centroid, as
    scikit-learn does.
    """
    k = len(centroids)
    centroids = centroids.copy()
    labels = nearest(z, centroids)
    for it in range(1, max_iter + 1):
        sums, counts = _means(z, labels, k)
        empty = np.flatnonzero(counts == 0)
        full = counts > 0
        centroids[full] = sums[full] / counts[full, None]
        if len(empty):
            far = np.argsort(-sq_dist(z, centroids, labels), kind="stable")[: len(empty)]
            centroids[empty] = z[far]
        new_labels = nearest(z, centroids)
        if np.array_equal(new_labels, labels):
            return centroids, labels, it
        labels = new_labels
    return centroids, labels, max_iter


def kmeanspp_extend(
    z: np.ndarray, centroids: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """Add k-means++ picks (D^2 sampling) to ``centroids`` until there are ``k``, fewer
    if every point already sits on a centroid.

    Args:
        z: the points, ``(n, dims)``.
        centroids: the centroids to keep, ``(m, dims)`` (``m`` may be 0).
        k: the number wanted.
        rng: the source of the picks.
    """
    if len(centroids) >= k:
        return centroids
    picks = [c for c in centroids]
    if not picks:
        picks.append(z[int(rng.integers(len(z)))])
    first = np.asarray(picks)
    d2 = sq_dist(z, first, nearest(z, first))
    while len(picks) < k:
        cum = np.cumsum(d2)
        if cum[-1] <= 0.0:  # every point sits on a centroid: no distinct point left
            break
        i = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(z) - 1)
        picks.append(z[i])
        d2 = np.minimum(d2, ((z - z[i]) ** 2).sum(axis=1))
    return np.asarray(picks, dtype=float)


def _fill_empty(
    z: np.ndarray, centroids: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Make every cell non-empty: move an empty cell's centroid onto the worst-served point.

    Rare (Lloyd already re-seeds empty clusters); only the moved point changes cell, which
    is its nearest centroid afterwards since it sits on it.
    """
    k = len(centroids)
    counts = np.bincount(labels, minlength=k)
    empty = np.flatnonzero(counts == 0)
    if len(empty) == 0:
        return centroids, labels
    centroids, labels = centroids.copy(), labels.copy()
    d2 = sq_dist(z, centroids, labels)
    for c in empty:
        movable = counts[labels] > 1
        i = int(np.argmax(np.where(movable, d2, -1.0)))
        counts[labels[i]] -= 1
        counts[c] = 1
        labels[i] = c
        centroids[c] = z[i]
        d2[i] = 0.0
    return centroids, labels


def _best_per_cell(labels: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """History row of the best score in each cell; ties go to the earlier row."""
    rows = np.arange(len(labels))
    order = np.lexsort((rows, -scores))  # best first, then earliest
    cells, first = np.unique(labels[order], return_index=True)
    elite = np.full(k, -1, dtype=np.int64)
    elite[cells] = order[first]
    if (elite < 0).any():  # _fill_empty makes this unreachable; keep the invariant loud
        raise RuntimeError(f"empty cells after re-clustering: {np.flatnonzero(elite < 0)}")
    return elite
