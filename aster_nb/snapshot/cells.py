"""The cells of an archive as a map draws them: boxes, Voronoi regions, or none.

What :mod:`~aster_nb.snapshot.maps` draws for each archive layout (see its docs for why):
a grid's boxes in the plane of its first two dimensions, Cluster-Elites' centroids with
the metric their Voronoi regions are computed in, or a cell per elite placed at its
projected descriptor. Polygons left empty get their Voronoi regions from
:class:`~aster_nb.snapshot.ArchiveMaps`, which knows the map's box.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..archive import Archive
from ..geometry import Projection, grid_box
from ..program import Program
from .records import Cell

__all__ = ["GRID_DRAWN", "Metric", "archive_cells", "is_grid", "layout_of"]

GRID_DRAWN = 10_000
"""The most boxes a grid map draws one by one, empty ones included; beyond (a fine grid,
e.g. 200 x 200 bins), only the boxes holding an elite are drawn."""

Elites = dict[int, tuple[Program, np.ndarray]]  # cell -> its elite and the elite's descriptor
Metric = tuple[float, float] | None
"""The divisors of the plane's axes the Voronoi regions are computed in (``None``: the
map's box, see :func:`~aster_nb.geometry.voronoi_regions`)."""


def layout_of(archive: Archive) -> str:
    """The archive's ``layout`` (:attr:`~aster_nb.archive.ArchiveBase.layout`); an archive
    that only implements the protocol gets regions around its elites."""
    return str(getattr(archive, "layout", "elites"))


def is_grid(archive: Archive | None) -> bool:
    """Whether ``archive`` is a grid with bounds, whose boxes can be drawn."""
    return (
        archive is not None
        and layout_of(archive) == "grid"
        and getattr(archive, "bounds", None) is not None
    )


def archive_cells(archive: Archive, proj: Projection) -> tuple[tuple[Cell, ...], Metric, str]:
    """The archive's cells on the map, as its layout says, the metric their Voronoi
    regions are computed in, and what the note should add about them. Polygons are left
    empty where :class:`~aster_nb.snapshot.ArchiveMaps` gives them Voronoi regions."""
    elites = archive.elites()
    descs = archive.descriptors()  # the archive's own, in the order of elites()
    by_cell: Elites = {}
    for p, d in zip(elites, descs, strict=True):
        c = archive.cell_of(p.id)
        if c is not None:
            by_cell.setdefault(c, (p, d))
    layout = layout_of(archive)
    if layout == "single":
        return (), None, ""
    if is_grid(archive):
        return _grid_cells(archive, by_cell)
    dims = descs.shape[1] if descs.ndim == 2 else 0
    if layout == "centroids" and proj.basis is None:
        return _centroid_cells(archive, proj, by_cell, dims)
    # any other archive, or cells seen through a projection (whose shadows overlap):
    # each elite gets the part of the plane nearest to it
    cells = tuple(_cell(c, proj(d[None, :])[0], p, None) for c, (p, d) in sorted(by_cell.items()))
    extra = (
        f"a patch is the part of the plane nearest its elite, not the cell's shape in "
        f"{dims} dimensions"
        if layout == "centroids"
        else ""
    )
    return cells, None, extra


def _centroid_cells(
    archive: Any, proj: Projection, by_cell: Elites, dims: int
) -> tuple[tuple[Cell, ...], Metric, str]:
    """Every cell, empty or not, around its centroid (``archive.centroids``), with the
    metric the archive assigns programs in (``archive.scale``)."""
    centers = proj(archive.centroids)
    cells = tuple(
        _cell(i, centers[i], by_cell[i][0] if i in by_cell else None, None)
        for i in range(archive.cells)
    )
    scale = np.asarray(getattr(archive, "scale", np.ones(dims)), dtype=float)
    if dims == 2:
        metric: Metric = (float(scale[0]), float(scale[1]))
    elif dims == 1:  # points lie on y = 0: any y scale gives the same bands
        metric = (float(scale[0]), 1.0)
    else:
        metric = None
    return cells, metric, ""


def _grid_cells(archive: Any, by_cell: Elites) -> tuple[tuple[Cell, ...], Metric, str]:
    """The grid's boxes in the plane of its first two dimensions (``archive.bounds``,
    ``bins``): one per cell in 1-2 dimensions, one per column of cells beyond, each with
    the best elite it covers; empty boxes too, up to :data:`GRID_DRAWN`."""
    bounds, bins = archive.bounds, np.asarray(archive.bins, dtype=np.int64)
    shape = tuple(int(b) for b in bins)
    shown = shape[:2]
    behind = math.prod(shape[2:])
    best: dict[tuple[int, ...], tuple[int, Program]] = {}
    for cell, (p, _) in by_cell.items():
        # the flat index holds one bin index per dimension: unravel it, never read it as one
        key = tuple(int(i) for i in np.unravel_index(cell, shape)[:2])
        kept = best.get(key)
        if kept is None or (p.score or -math.inf) > (kept[1].score or -math.inf):
            best[key] = (cell, p)
    every = math.prod(shown) <= GRID_DRAWN
    keys = list(np.ndindex(*shown)) if every else sorted(best)
    out = []
    for key in keys:
        # the box's first cell; with an elite, the elite's own cell
        first = int(np.ravel_multi_index((*key, *(0,) * (len(shape) - len(key))), shape))
        cell, p = best.get(key, (first, None))
        rect = grid_box(bounds, bins, first)
        out.append(_cell(cell, rect.mean(axis=0), p, rect, covers=behind))
    extra = "" if every else f"{len(keys)} of {math.prod(shown):,} boxes drawn: those with elites"
    return tuple(out), None, extra


def _cell(
    index: int,
    center: np.ndarray,
    p: Program | None,
    polygon: np.ndarray | None,
    *,
    covers: int = 1,
) -> Cell:
    return Cell(
        index=int(index),
        center=(float(center[0]), float(center[1])),
        polygon=np.empty((0, 2), np.float32) if polygon is None else polygon.astype(np.float32),
        elite_id=None if p is None else p.id,
        score=None if p is None or p.score is None else float(p.score),
        covers=covers,
    )
