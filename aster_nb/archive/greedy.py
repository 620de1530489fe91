"""Greedy: a single cell holding the best program, as in autoresearch-style hill climbing.

Every edit starts from the best program found so far. It is the baseline the
quality-diversity archives must beat: no niches, no diversity pressure, only the small
top-k list that inspirations are drawn from.
"""

from __future__ import annotations

import bisect

import numpy as np

from ..features import Descriptor
from ..program import Program
from .base import ArchiveBase
from .selection import mix_top_and_random
from .validation import check_sample_args


class Greedy(ArchiveBase):
    """One cell: the best ``ok`` program. The parent is always that program.

    Args:
        dims: descriptor length to validate on ``ok`` programs, as the other archives do;
            ``None`` (default) accepts programs without features, since a single cell
            needs no descriptor (then :meth:`descriptors` has 0 columns).
        top_k: number of best programs kept as the inspiration pool (the best included).
        descriptor: computes descriptors (see :class:`~aster_nb.archive.base.ArchiveBase`);
            a single cell does not use them, but a map of the archive does.
    """

    name = "greedy"
    layout = "single"

    def __init__(
        self, *, dims: int | None = None, top_k: int = 8, descriptor: Descriptor | None = None
    ) -> None:
        super().__init__(dims=dims, descriptor=descriptor)
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        self.top_k = top_k
        self._top: list[tuple[float, int]] = []  # (-score, row), sorted: best, then earliest

    @property
    def cells(self) -> int:
        """Always 1."""
        return 1

    def cell_of(self, program_id: str) -> int | None:
        """0 for any kept ``ok`` program (there is one cell), else ``None``."""
        return 0 if program_id in self._row_of else None

    def _elite_rows(self) -> np.ndarray:
        return np.asarray([] if self._best_row is None else [self._best_row], dtype=np.int64)

    def _add_ok(self, row: int, desc: np.ndarray | None) -> bool:
        bisect.insort(self._top, (-float(self._score_buf[row]), row))
        del self._top[self.top_k :]
        return self._best_row == row

    def top(self) -> list[Program]:
        """The ``top_k`` best programs, best first (ties: earlier first)."""
        return [self._programs[r] for _, r in self._top]

    def sample(
        self, rng: np.random.Generator, *, n_inspirations: int = 2, explore: float = 0.1
    ) -> tuple[Program, list[Program]]:
        """The best program as parent; inspirations from the rest of the top-k list.

        ``explore`` is validated but otherwise ignored: a greedy search never breeds from a
        worse program. Inspirations are the next best ``ceil(n/2)`` programs then random
        others from the top-k list; fewer when the list is shorter.

        Raises:
            LookupError: no ``ok`` program has been added yet.
            ValueError: ``explore`` is outside ``[0, 1]`` or ``n_inspirations < 0``.
        """
        check_sample_args(n_inspirations, explore)
        if self._best_row is None:
            raise LookupError(
                f"cannot sample from an empty greedy archive: add an ok program first "
                f"({self.failures} failed programs were offered)"
            )
        pool = np.asarray([r for _, r in self._top if r != self._best_row], dtype=np.int64)
        picks = mix_top_and_random(rng, pool, n_inspirations)
        return self._programs[self._best_row], [self._programs[r] for r in picks]
