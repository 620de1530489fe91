"""Grid-Elites: MAP-Elites on a fixed grid of bins whose bounds only ever grow.

MAP-Elites (Mouret & Clune 2015, "Illuminating search spaces by mapping elites",
arXiv:1504.04909) splits each descriptor dimension into ``bins`` equal intervals and keeps
the best program per grid cell.

Bounds come from the constructor (a task's ``feature_bounds``) or, when not given, from
the first ``warmup`` programs: until then the bounds are their min/max widened by
``margin`` and are recomputed at every add, so the archive can be sampled from the first
program on. After that a program outside the bounds widens them and **every** kept
program is re-binned from the stored history. Archives whose bins drift with the data but
never move old programs (OpenEvolve's) end up with elites sitting in bins that no longer
match their descriptors; re-binning everything keeps "cell" meaning the same thing for
every program. Bounds widen past the new point by ``margin`` of the new span, so a
steadily drifting descriptor costs O(log) re-binnings, not one per program.

**High-dimensional descriptors.** A grid has ``bins ** dims`` cells: 10 bins over a
16-dimensional code embedding would be 10**16 cells, the reason CVT-MAP-Elites exists
(Vassiliades et al. 2018). So the default ``bins`` keeps about :data:`CELLS` cells
whatever ``dims`` is: ``max(2, round(CELLS ** (1 / dims)))`` bins per dimension, 10 for 2
dimensions (the classic 10 x 10), 5 for 3, 3 for 4-5, and 2 from 7 on -- 2**16 = 65,536
cells in 16 dimensions, so a grid there is explicitly a coarse orthant map in which most
programs sit alone in their cell. A grid of more than ``max_cells`` cells (default
:data:`MAX_CELLS`) is refused with a message naming the alternatives.

With a descriptor that is refit on the history (the code embedding), every refit re-learns
the bounds from all history and re-bins it, as a widening does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..features import Descriptor
from .base import ArchiveBase

CELLS = 100
"""Cells the default ``bins`` aims at, whatever the number of dimensions (the 10 x 10 grid)."""
MAX_CELLS = 1_000_000
"""Default cap on a grid's cells: beyond, a grid is refused (use Cluster-Elites)."""


def default_bins(dims: int) -> int:
    """Bins per dimension of the default grid: about :data:`CELLS` cells, at least 2 bins."""
    return max(2, round(CELLS ** (1.0 / dims)))


class GridElites(ArchiveBase):
    """MAP-Elites over ``prod(bins)`` equal-width cells.

    Args:
        dims: length of the descriptor every ``ok`` program carries in ``descriptor``
            (``None`` with a ``descriptor``: its length).
        bins: bins per dimension: one int for all, a sequence of ``dims`` ints, each
            ``>= 1``, or ``None`` (default) for :func:`default_bins` (10 in 2-D, 2 from 7-D on).
        bounds: ``(low, high)`` per dimension, shape ``(dims, 2)`` with ``low < high``;
            ``None`` (default) learns them from the first ``warmup`` programs.
        warmup: number of programs whose spread sets the bounds when ``bounds`` is None.
        margin: fraction of the span added beyond learned or widened bounds, ``>= 0``.
        tournament: entrants per parent tournament (see
            :meth:`~aster_nb.archive.base.ArchiveBase.sample`).
        selection: the parent selection rule, one of
            :data:`~aster_nb.archive.selection.SELECTIONS` (default ``adaptive``).
        max_cells: the most cells the grid may have (default :data:`MAX_CELLS`).
        descriptor: computes descriptors instead of reading ``program.descriptor`` (see
            :class:`~aster_nb.archive.base.ArchiveBase`); its bounds are always learned.

    Raises:
        ValueError: bad ``bins``, ``bounds``, ``warmup`` or ``margin``, or ``bins`` giving
            more than ``max_cells`` cells (the message gives the count and what to use).

    Attributes:
        rebins: number of times a program outside the bounds widened them and all history
            was re-binned (the re-binning during warm-up is not counted).
    """

    name = "grid"
    layout = "grid"

    def __init__(
        self,
        *,
        dims: int | None,
        bins: int | Sequence[int] | None = None,
        bounds: Sequence[Sequence[float]] | np.ndarray | None = None,
        warmup: int = 16,
        margin: float = 0.1,
        tournament: int = 8,
        selection: str = "adaptive",
        max_cells: int = MAX_CELLS,
        descriptor: Descriptor | None = None,
    ) -> None:
        if dims is None and descriptor is None:
            raise ValueError("GridElites needs dims: the length of the descriptors")
        if descriptor is not None and bounds is not None:
            raise ValueError(
                f"bounds are for the evaluator's features; a grid over the {descriptor.kind} "
                "descriptor learns its bounds (pass bounds=None)"
            )
        super().__init__(
            dims=dims, tournament=tournament, selection=selection, descriptor=descriptor
        )
        if isinstance(max_cells, bool) or not isinstance(max_cells, int) or max_cells < 1:
            raise ValueError(f"max_cells must be an int >= 1, got {max_cells!r}")
        self.max_cells = max_cells
        self._bins_arg = bins
        self._bins = np.empty(0, dtype=np.int64)
        if not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"warmup must be an int >= 1, got {warmup!r}")
        if not (math.isfinite(margin) and margin >= 0):
            raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
        self.warmup = warmup
        self.margin = float(margin)
        self.rebins = 0
        self._learn_bounds = bounds is None
        self._lo: np.ndarray | None = None
        self._hi: np.ndarray | None = None
        if bounds is not None:
            self._lo, self._hi = _check_bounds(bounds, dims)
        self._labels = np.empty(64, dtype=np.int64)
        self._elite: dict[int, int] = {}  # cell -> history row of its elite
        self._relearn = False  # a refit moved every descriptor: learn bounds, re-bin
        if dims is not None:
            self._on_dims(dims)

    def _on_dims(self, dims: int) -> None:
        bins = default_bins(dims) if self._bins_arg is None else self._bins_arg
        self._bins = _check_bins(bins, dims, self.max_cells)

    def _redescribed(self) -> None:
        self._relearn = True

    # -- protocol -------------------------------------------------------------------------

    @property
    def cells(self) -> int:
        """Total number of grid cells, ``prod(bins)`` (0 before the descriptor length is known)."""
        return math.prod(int(b) for b in self._bins) if len(self._bins) else 0

    def cell_of(self, program_id: str) -> int | None:
        """Flat cell index (C order over the bins) of a kept program, else ``None``."""
        row = self._row_of.get(program_id)
        return None if row is None else int(self._labels[row])

    def _elite_rows(self) -> np.ndarray:
        return np.fromiter(self._elite.values(), dtype=np.int64, count=len(self._elite))

    # -- analysis -------------------------------------------------------------------------

    @property
    def bins(self) -> np.ndarray:
        """Bins per dimension, shape ``(dims,)``."""
        return self._bins.copy()

    @property
    def bounds(self) -> np.ndarray | None:
        """Current ``(low, high)`` per dimension, shape ``(dims, 2)``; None before any program."""
        if self._lo is None or self._hi is None:
            return None
        return np.stack([self._lo, self._hi], axis=1)

    def cell_index(self, features: Sequence[float] | np.ndarray) -> np.ndarray:
        """Flat cell index of each row of ``features`` (shape ``(n, dims)`` or ``(dims,)``).

        Points outside the current bounds are clipped into the edge bins.
        """
        if self._lo is None or self._hi is None:
            raise LookupError("the grid has no bounds yet: add a program or pass bounds=")
        x = np.atleast_2d(np.asarray(features, dtype=float))
        if x.shape[1] != self.dims:
            raise ValueError(f"expected features of shape (n, {self.dims}), got {x.shape}")
        frac = (x - self._lo) / (self._hi - self._lo)
        idx = np.clip(np.floor(frac * self._bins).astype(np.int64), 0, self._bins - 1)
        return np.ravel_multi_index(tuple(idx.T), tuple(int(b) for b in self._bins))

    # -- adding ---------------------------------------------------------------------------

    def _add_ok(self, row: int, desc: np.ndarray | None) -> bool:
        assert desc is not None
        if row == len(self._labels):
            self._labels = np.resize(self._labels, 2 * row)
        if self._relearn or (self._learn_bounds and row < self.warmup):
            self._relearn = False
            self._lo, self._hi = _spread(self._descs, self.margin)
            self._rebin()
            return self._elite[int(self._labels[row])] == row
        assert self._lo is not None and self._hi is not None
        if np.any(desc < self._lo) or np.any(desc > self._hi):
            self._lo, self._hi = _widen(self._lo, self._hi, desc, self.margin)
            self._rebin()
            self.rebins += 1
            return self._elite[int(self._labels[row])] == row
        cell = int(self.cell_index(desc)[0])
        self._labels[row] = cell
        elite = self._elite.get(cell)
        if elite is None or self._score_buf[row] > self._score_buf[elite]:
            self._elite[cell] = row
            return True
        return False

    def _rebin(self) -> None:
        n = self.history_size
        labels = self.cell_index(self._descs)
        self._labels[:n] = labels
        order = np.lexsort((np.arange(n), -self._scores))  # best first, then earliest
        cells, first = np.unique(labels[order], return_index=True)
        self._elite = dict(zip(cells.tolist(), order[first].tolist(), strict=True))


def _check_bins(bins: int | Sequence[int], dims: int, max_cells: int = MAX_CELLS) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(bins))
    if arr.ndim != 1 or arr.dtype.kind not in "iu" or (arr < 1).any():
        raise ValueError(f"bins must be an int >= 1 or {dims} such ints, got {bins!r}")
    if arr.shape == (1,):
        arr = np.repeat(arr, dims)
    if arr.shape != (dims,):
        raise ValueError(f"bins must be an int or a sequence of dims={dims} ints, got {bins!r}")
    cells = math.prod(int(b) for b in arr)
    if cells > min(max_cells, 2**62):  # 2**62: the most a flat int64 cell index can count
        what = f"{arr[0]} bins per dimension" if (arr == arr[0]).all() else f"bins {arr.tolist()}"
        raise ValueError(
            f"{what} in {dims} dimensions make {cells:.3g} cells: too many (max_cells="
            f"{max_cells:,}); use fewer bins (2 per dimension make {2**dims:.3g}), fewer "
            "dimensions, or ClusterElites, whose cells follow the programs"
        )
    return arr.astype(np.int64)


def _check_bounds(
    bounds: Sequence[Sequence[float]] | np.ndarray, dims: int
) -> tuple[np.ndarray, np.ndarray]:
    try:
        arr = np.asarray(bounds, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"bounds must be one (low, high) pair per dimension, shape ({dims}, 2); got {bounds!r}"
        ) from e
    if arr.shape != (dims, 2):
        raise ValueError(
            f"bounds must be one (low, high) pair per dimension: expected shape ({dims}, 2), "
            f"got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or not np.all(arr[:, 0] < arr[:, 1]):
        raise ValueError(
            f"bounds must be finite with low < high in every dimension, got {arr.tolist()}"
        )
    return arr[:, 0].copy(), arr[:, 1].copy()


def _spread(x: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Min/max of ``x`` widened by ``margin`` of the span on each side."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = hi - lo
    # A dimension with no spread yet still needs a non-empty interval.
    span = np.where(span > 0, span, np.maximum(np.abs(lo), 1.0))
    pad = np.maximum(margin * span, 1e-9 * span)
    return lo - pad, hi + pad


def _widen(
    lo: np.ndarray, hi: np.ndarray, x: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds that contain ``x`` with ``margin`` of the new span past it on the side it left."""
    new_lo, new_hi = np.minimum(lo, x), np.maximum(hi, x)
    pad = margin * (new_hi - new_lo)
    return np.where(x < lo, new_lo - pad, lo), np.where(x > hi, new_hi + pad, hi)
