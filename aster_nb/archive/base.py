"""The archive protocol and the parts every archive shares.

An archive keeps the evaluated programs a search may breed from. Agents :meth:`~Archive.sample`
a parent and a few inspirations, propose an edit, and the evaluated child goes back through
:meth:`~Archive.add`. Three archives implement the protocol:

* :class:`~aster_nb.archive.cluster.ClusterElites` -- CVT-MAP-Elites whose cells are k-means
  clusters of the whole history, so no cell is ever empty;
* :class:`~aster_nb.archive.grid.GridElites` -- MAP-Elites on a fixed grid of bins;
* :class:`~aster_nb.archive.greedy.Greedy` -- a single cell holding the best program.

Only programs whose evaluation is ``ok`` are kept. A failed program is counted in
``failures`` and never becomes a parent: in OpenEvolve, where invalid programs could be
parents, most of their children were invalid too.

The checks every archive shares are in :mod:`~aster_nb.archive.validation`; how a parent
and inspirations are picked, in :mod:`~aster_nb.archive.selection`; rebuilding an archive
from stored programs, in :mod:`~aster_nb.archive.replay`.
"""

from __future__ import annotations

import bisect
import math
from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

import numpy as np

from ..features import Descriptor
from ..program import Program
from .selection import TOP_K, Progress, choose_parent, dominated_novelty, mix_top_and_random
from .validation import (
    check_archive_args,
    check_descriptor,
    check_nonempty,
    check_program_descriptor,
    check_sample_args,
)


@runtime_checkable
class Archive(Protocol):
    """What the search needs from an archive. See :class:`ArchiveBase` for the semantics."""

    name: str
    failures: int

    def add(self, program: Program) -> bool: ...

    def sample(
        self, rng: np.random.Generator, *, n_inspirations: int = 2, explore: float = 0.1
    ) -> tuple[Program, list[Program]]: ...

    def elites(self) -> list[Program]: ...

    def best(self) -> Program | None: ...

    def coverage(self) -> float: ...

    def qd_score(self, offset: float | None = None) -> float: ...

    def descriptors(self) -> np.ndarray: ...

    def cell_of(self, program_id: str) -> int | None: ...

    @property
    def cells(self) -> int: ...

    def __len__(self) -> int: ...


class ArchiveBase(ABC):
    """Validation, ranking and sampling shared by the archives.

    Subclasses implement :meth:`_add_ok` (place a valid ``ok`` program), :meth:`_elite_rows`
    (history rows of the current elites), :meth:`cell_of` and :attr:`cells`.
    Each archive keeps every ``ok`` program it accepted as a *history row*: row ``i`` is the
    ``i``-th accepted program, so a lower row is an earlier program, which is how ties on
    score are broken (the earlier program stays the elite).

    Args:
        dims: number of descriptor dimensions every ``ok`` program must carry in
            ``program.descriptor``; ``None`` (only :class:`~aster_nb.archive.greedy.Greedy`)
            skips the check. With a ``descriptor``, its length (``None``: whatever the
            descriptor gives the first program).
        tournament: size of the tournament that picks a parent by fitness in :meth:`sample`.
        selection: how :meth:`sample` picks a parent among the elites (:data:`SELECTIONS`).
        descriptor: computes each program's descriptor (from its code or result, see
            :mod:`aster_nb.features`) instead of reading ``program.descriptor``. An adaptive
            one (the code embedding) is refit when it says it is due, every history row
            is re-described, and the archive re-places them all (:meth:`_redescribed`).

    Attributes:
        failures: number of programs passed to :meth:`add` that were not ``ok``; they are
            counted and dropped.
    """

    name: str = "base"
    layout: str = "elites"
    """How the cells divide descriptor space, for drawing them (:mod:`aster_nb.snapshot`):
    ``"centroids"``, the Voronoi regions of ``centroids``; ``"grid"``, boxes of ``bins`` over
    ``bounds``; ``"single"``, one cell, nothing to draw; ``"elites"`` (any other archive),
    regions around the elites."""

    def __init__(
        self,
        *,
        dims: int | None,
        tournament: int = 8,
        selection: str = "adaptive",
        descriptor: Descriptor | None = None,
    ) -> None:
        check_archive_args(
            dims=dims, tournament=tournament, selection=selection, descriptor=descriptor
        )
        self.dims = dims
        self.tournament = tournament
        self.selection = selection
        self.descriptor = descriptor
        # curiosity (Cully & Demiris 2018): per cell, +1 for each child of one of its
        # programs that became an elite, -0.5 for each that did not
        self._curiosity: dict[int, float] = {}
        self._progress = Progress()
        # the best programs (-score, row), best first: adaptive's inspirations when it
        # exploits the best, as greedy's are
        self._leaders: list[tuple[float, int]] = []
        self.failures = 0
        self._programs: list[Program] = []
        # Growable buffers (capacity doubles), so per-add cost stays O(1) and the
        # re-clustering / re-binning passes get contiguous arrays without copying lists.
        self._score_buf = np.empty(64)
        self._desc_buf = np.empty((64, dims if dims is not None else 0))
        self._row_of: dict[str, int] = {}
        self._best_row: int | None = None
        self._min_score = math.inf

    # -- adding ---------------------------------------------------------------------------

    def add(self, program: Program) -> bool:
        """Offer an evaluated program to the archive.

        Args:
            program: a program with ``result`` set and, when it is ``ok``, a ``descriptor``
                of length ``dims``.

        Returns:
            ``True`` if the program is now the elite of a cell (a new cell, or strictly
            better than the previous elite: on equal score the earlier program stays).
            ``False`` for a program that is not ``ok`` (it only increments ``failures``), for
            one that lost to its cell's elite, and for a program id already in the archive
            (identical code is one program; the first evaluation is kept).

        Raises:
            ValueError: the program is not evaluated, an ``ok`` program has no finite
                score, or its descriptor is missing, of the wrong length or not finite.
        """
        if program.result is None:
            raise ValueError(
                f"add() expects an evaluated program (result set); program {program.id} has none"
            )
        if not program.ok:
            self.failures += 1
            return False
        score = program.score
        if score is None or not math.isfinite(score):
            raise ValueError(
                f"an ok program needs a finite score, program {program.id} has {score!r}"
            )
        if self.descriptor is not None:
            if program.id in self._row_of:  # before describing: an embedding remembers rows
                return False
            desc = self._described(program)
        else:
            desc = self._program_descriptor(program)
            if program.id in self._row_of:
                return False
        row = len(self._programs)
        if row == len(self._score_buf):
            self._score_buf = np.resize(self._score_buf, 2 * row)
            self._desc_buf = np.resize(self._desc_buf, (2 * row, self._desc_buf.shape[1]))
        self._programs.append(program)
        self._score_buf[row] = score
        if self.dims is not None:
            self._desc_buf[row] = desc
        self._row_of[program.id] = row
        self._min_score = min(self._min_score, float(score))
        best_before = None if self._best_row is None else float(self._score_buf[self._best_row])
        self._progress.update(float(score), best_before, self._min_score)
        if self._best_row is None or score > self._score_buf[self._best_row]:
            self._best_row = row
        if self.descriptor is not None and self.descriptor.due():
            self._desc_buf[: row + 1] = self.descriptor.refit()
            self._redescribed()
            desc = self._desc_buf[row]
        bisect.insort(self._leaders, (-float(score), row))
        del self._leaders[TOP_K:]
        parent = program.parents[0] if program.parents else None
        parent_cell = self.cell_of(parent) if parent in self._row_of else None
        elite = self._add_ok(row, desc)
        if parent_cell is not None:
            gain = 1.0 if elite else -0.5
            self._curiosity[parent_cell] = self._curiosity.get(parent_cell, 0.0) + gain
        return elite

    def _described(self, program: Program) -> np.ndarray:
        assert self.descriptor is not None
        desc = np.asarray(self.descriptor(program), dtype=float).reshape(-1)
        if self.dims is None:
            check_nonempty(desc, descriptor=self.descriptor, program_id=program.id)
            self.dims = len(desc)
            self._desc_buf = np.empty((len(self._score_buf), self.dims))
            self._on_dims(self.dims)
        check_descriptor(desc, dims=self.dims, descriptor=self.descriptor, program_id=program.id)
        return desc

    def _on_dims(self, dims: int) -> None:  # noqa: B027 - an optional hook
        """Called once the descriptor length is known, if it was not at construction."""

    def _redescribed(self) -> None:  # noqa: B027 - an optional hook
        """Every history row got a new descriptor (an adaptive descriptor was refit): the
        archive re-places all rows before the next add is placed."""

    @property
    def _scores(self) -> np.ndarray:
        """Scores of the history rows (a view)."""
        return self._score_buf[: len(self._programs)]

    @property
    def _descs(self) -> np.ndarray:
        """Descriptors of the history rows, shape ``(history_size, dims)`` (a view)."""
        return self._desc_buf[: len(self._programs)]

    def _program_descriptor(self, program: Program) -> np.ndarray | None:
        if self.dims is None:
            desc = program.descriptor
            return None if desc is None else np.asarray(desc, dtype=float)
        return check_program_descriptor(program, dims=self.dims, archive=self.name)

    @abstractmethod
    def _add_ok(self, row: int, desc: np.ndarray | None) -> bool:
        """Place history row ``row`` (already appended); return whether it is now an elite."""

    @abstractmethod
    def _elite_rows(self) -> np.ndarray:
        """History rows of the current elites, any order."""

    # -- reading --------------------------------------------------------------------------

    @property
    @abstractmethod
    def cells(self) -> int:
        """Number of cells (niches) the archive has now."""

    @abstractmethod
    def cell_of(self, program_id: str) -> int | None:
        """Cell the program with this id falls in (elite or not); ``None`` if not kept."""

    def _ranked_rows(self) -> np.ndarray:
        rows = np.asarray(self._elite_rows(), dtype=np.int64)
        if rows.size == 0:
            return rows
        scores = self._scores[rows]
        # Best first; on equal score the earlier row (lower index) first.
        return rows[np.lexsort((rows, -scores))]

    def elites(self) -> list[Program]:
        """One program per non-empty cell, best score first (ties: earlier program first)."""
        return [self._programs[r] for r in self._ranked_rows()]

    def best(self) -> Program | None:
        """The best ``ok`` program ever added (the earliest among equal scores), or ``None``."""
        return None if self._best_row is None else self._programs[self._best_row]

    def __len__(self) -> int:
        """Number of elites (non-empty cells)."""
        return len(self._elite_rows())

    def coverage(self) -> float:
        """Fraction of cells holding an elite, in ``[0, 1]``; 0.0 when there are no cells."""
        cells = self.cells
        return len(self) / cells if cells else 0.0

    def qd_score(self, offset: float | None = None) -> float:
        """Quality-diversity score: the sum over elites of ``score - offset``.

        Args:
            offset: subtracted from every elite's score. ``None`` (default) uses the lowest
                ``ok`` score ever added to this archive, so every term is ``>= 0`` and an
                archive of one program scores 0. That default moves as the archive learns;
                to compare runs or archives, pass the same fixed offset to all of them.

        Returns:
            The QD score; 0.0 for an empty archive.
        """
        rows = self._elite_rows()
        if len(rows) == 0:
            return 0.0
        off = self._min_score if offset is None else float(offset)
        return float(np.sum(self._scores[rows] - off))

    def descriptors(self) -> np.ndarray:
        """Descriptors of :meth:`elites`, in the same order: shape ``(len(self), dims)``."""
        return self._descs[self._ranked_rows()].copy()

    def history(self) -> tuple[list[Program], np.ndarray]:
        """Every ``ok`` program accepted so far, in the order added, and its descriptor as
        the archive sees it now, shape ``(history_size, dims)`` (copies)."""
        return list(self._programs), self._descs.copy()

    @property
    def history_size(self) -> int:
        """Number of distinct ``ok`` programs accepted so far (elites or not)."""
        return len(self._programs)

    # -- sampling -------------------------------------------------------------------------

    def sample(
        self, rng: np.random.Generator, *, n_inspirations: int = 2, explore: float = 0.1
    ) -> tuple[Program, list[Program]]:
        """Pick a parent and inspirations among the elites.

        The parent follows :attr:`selection` (:mod:`aster_nb.archive.selection`). The
        default, ``adaptive``, breeds from the best elite while the best score keeps
        improving and, once it stalls, runs a tournament of ``tournament`` elites won by
        the one farthest from anything better (Dominated Novelty Search); ``tournament``
        is the best of ``tournament`` random elites (Goldberg & Deb 1991), whose rank
        quantile follows ``Beta(1, tournament)`` whatever the number of cells. Except in
        ``adaptive``'s exploiting phase, the parent is a uniformly random elite with
        probability ``explore`` (the classic MAP-Elites rule, which keeps every niche
        breeding).

        ``tournament=8, explore=0.1`` came from a sweep of the ``tournament`` rule on both
        real tasks at 400 evaluations, 3 seeds: mean best 2.090 / -0.3915 (circle packing /
        Erdős) against 1.957 / -0.3932 for ``4, 0.2`` and 2.027 / -0.3931 for ``16, 0.05``.

        Inspirations are other programs, never the parent. When ``adaptive`` breeds from
        the best, they are the next best programs, as :class:`~aster_nb.archive.greedy.Greedy`'s
        are: the first ``ceil(n/2)`` in order, the rest at random among the best
        :data:`~aster_nb.archive.selection.TOP_K`. Otherwise they are other elites: the first ``ceil(n/2)`` are the
        best remaining elites (what works), the rest uniformly random cells (what differs).
        Fewer are returned when the archive holds fewer other elites.

        Args:
            rng: source of all randomness, so a seeded generator reproduces the picks.
            n_inspirations: number of inspirations wanted, ``>= 0``.
            explore: probability in ``[0, 1]`` of a uniformly random parent.

        Returns:
            ``(parent, inspirations)``.

        Raises:
            LookupError: the archive holds no ``ok`` program yet.
            ValueError: ``explore`` is outside ``[0, 1]`` or ``n_inspirations < 0``.
        """
        check_sample_args(n_inspirations, explore)
        ranked = self._ranked_rows()
        n = len(ranked)
        if n == 0:
            raise LookupError(
                f"cannot sample from an empty {self.name} archive: add an ok program first "
                f"({self.failures} failed programs were offered)"
            )
        parent_pos = choose_parent(
            self.selection,
            rng,
            n=n,
            tournament=self.tournament,
            explore=explore,
            stalled=self._progress.stalled(),
            merit=lambda kind: self._merit(ranked, kind),
        )
        if self.selection == "adaptive" and ranked[parent_pos] == self._best_row:
            # exploiting the best, as greedy does: recombine with the next best programs
            pool = np.asarray([r for _, r in self._leaders if r != self._best_row], dtype=np.int64)
            picks = mix_top_and_random(rng, pool, n_inspirations)
            return self._programs[ranked[parent_pos]], [self._programs[r] for r in picks]
        others = np.delete(np.arange(n), parent_pos)
        picks = mix_top_and_random(rng, others, n_inspirations)
        return self._programs[ranked[parent_pos]], [self._programs[ranked[p]] for p in picks]

    def _merit(self, ranked: np.ndarray, kind: str) -> np.ndarray:
        """Each ranked elite's ``curiosity`` (its cell's) or ``dns`` (dominated novelty)."""
        if kind == "curiosity":
            cells = [self.cell_of(self._programs[r].id) for r in ranked.tolist()]
            return np.array([self._curiosity.get(c, 0.0) if c is not None else 0.0 for c in cells])
        scaled = self.descriptor is not None and self.descriptor.scaled
        return dominated_novelty(self._descs[ranked], self._scores[ranked], scaled=scaled)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dims={self.dims}, elites={len(self)}, cells={self.cells}, "
            f"history={self.history_size}, failures={self.failures})"
        )
