"""Archives of evaluated programs: where parents and inspirations are sampled from.

=================  ===============================================================
``"cluster"``      :class:`ClusterElites` -- CVT-MAP-Elites over k-means clusters of all
                   history; every cell always holds a program (the default).
``"grid"``         :class:`GridElites` -- MAP-Elites on a fixed grid with growing bounds.
``"greedy"``       :class:`Greedy` -- one cell, the best program (hill climbing).
=================  ===============================================================

All implement :class:`Archive`; build one by name with :func:`make_archive`, rebuild one
from stored programs with :func:`replay_archive`. To write a new archive, subclass
:class:`ArchiveBase` (validation, ranking and sampling come with it); :class:`Archive` is
the protocol the search relies on, for type hints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..features import make_descriptor
from .base import Archive, ArchiveBase
from .cluster import ClusterElites
from .greedy import Greedy
from .grid import GridElites
from .replay import replay_archive

__all__ = [
    "ARCHIVES",
    "Archive",
    "ArchiveBase",
    "ClusterElites",
    "Greedy",
    "GridElites",
    "make_archive",
    "replay_archive",
]

ARCHIVES: dict[str, type[ArchiveBase]] = {
    "cluster": ClusterElites,
    "grid": GridElites,
    "greedy": Greedy,
}


def make_archive(
    kind: str,
    *,
    dims: int | None,
    seed: int,
    bounds: Sequence[Sequence[float]] | None = None,
    descriptor: str = "features",
    **kw: Any,
) -> Archive:
    """Build an archive by name.

    Args:
        kind: ``"cluster"``, ``"grid"`` or ``"greedy"``.
        dims: descriptor length the archive validates ``program.descriptor`` against;
            ignored unless ``descriptor`` is ``"features"``.
        seed: seed of the archive's own randomness (ClusterElites' k-means++ picks);
            the grid and greedy archives have none and ignore it.
        bounds: ``(low, high)`` per feature, e.g. a task's ``feature_bounds``; used by the
            grid (``None``: learned from the first programs), ignored by the others, which
            need no bounds. Only for ``descriptor="features"``.
        descriptor: what the archive's descriptors are (:mod:`aster_nb.features`):
            ``"features"`` reads ``program.descriptor`` (the evaluator's features there);
            ``"metrics"``, ``"embedding"`` and ``"code"`` make the archive compute its own
            from each program.
        **kw: further keyword arguments of the archive's constructor (e.g. ``k_max``,
            ``bins``, ``top_k``).

    Raises:
        ValueError: unknown ``kind`` (the message lists the valid ones), or an invalid
            argument of the archive.
    """
    if kind not in ARCHIVES:
        raise ValueError(f"unknown archive kind {kind!r}; valid kinds: {', '.join(ARCHIVES)}")
    computed = make_descriptor(descriptor)
    if computed is not None:
        dims, bounds = None, None
        kw["descriptor"] = computed
    if kind == "cluster":
        return ClusterElites(dims=dims, seed=seed, **kw)
    if kind == "grid":
        return GridElites(dims=dims, bounds=bounds, **kw)
    return Greedy(dims=dims, **kw)
