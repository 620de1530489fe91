"""Archive maps: a worker's archive in a plane, now or as it was after evaluation ``t``.

Replaying to evaluation ``t`` rebuilds the worker's archive from its valid programs in the
order of its archive log (:func:`~aster_nb.archive.replay_archive`, the replay a reopened
worker uses too), so the map after ``t`` is the archive the worker had then (same seed,
same order, same cells).

The map's axes are the archive's descriptor (the store's meta ``"descriptor"`` says which,
see :mod:`aster_nb.features`): the evaluator's features as they are in 1-2 dimensions
(titled by the task's ``[features] descriptions``), their first two principal components
beyond; a code embedding's first two components, which already are principal components
of the history; and a note says which, with the share of variance the plane shows.

What is drawn is the archive's own geometry wherever the plane can show it, so every
elite's point lies inside its drawn cell:

* a grid (``layout == "grid"``): its boxes, empty ones too, computed from the cell's flat
  index unravelled into one bin per dimension. Over more than two dimensions the plane
  is the first two, as they are (no PCA: a box is then exact), and a box is the column
  of cells behind it, showing the best of their elites (:attr:`Cell.covers`).
* Cluster-Elites (``"centroids"``) in 1-2 dimensions: the Voronoi regions of its
  centroids in the metric it assigns programs by (its standardization,
  :attr:`~aster_nb.archive.ClusterElites.scale`), so a region holds exactly its cell's
  programs. Beyond two dimensions the projection of a cell is no region of the plane
  (projected cells overlap), so each elite gets the part of the plane nearest to it, and
  the note says so.
* greedy (``"single"``): no cells, the programs only.

The arithmetic is in :mod:`aster_nb.geometry`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..archive import Archive, make_archive, replay_archive
from ..features import CODE_FEATURE_NAMES
from ..geometry import Bounds, Projection, padded_bounds, voronoi_regions
from ..store import Store
from ..task import Task
from .cells import Metric, archive_cells, is_grid, layout_of
from .records import Cell, MapSnapshot
from .source import Source, check_upto, load_task, workers

if TYPE_CHECKING:
    from ..run import Run

__all__ = ["REGION_CACHE", "ArchiveMaps", "map_snapshot"]

REGION_CACHE = 64
"""Maps (workers x replay positions) whose Voronoi regions an :class:`ArchiveMaps` keeps."""

_WHAT = {
    "features": "the evaluator's features",
    "metrics": "the evaluator's metrics",
    "code": "code size and numeric share",
    "embedding": "a code embedding (PCA of literal values and token pairs)",
}


def map_snapshot(source: Run | Store, worker: str, *, upto: int | None = None) -> MapSnapshot:
    """``worker``'s archive as a map, now or after evaluation ``upto``.

    Each call starts afresh; to redraw one run's maps again and again (a replay slider, a
    live view), keep an :class:`ArchiveMaps`, which remembers what redraws reuse.

    Args:
        source: a live or reopened :class:`~aster_nb.run.Run`, or a run's
            :class:`~aster_nb.store.Store`.
        worker: a worker name, e.g. ``"p0.w0"``.
        upto: replay to this many stored evaluations (all workers count); ``None``: now
            (a run's live archive).

    Raises:
        KeyError: no such worker (the message lists them).
        ValueError: ``upto`` is negative.
        TypeError: ``source`` is neither a run nor a store.
    """
    return ArchiveMaps(source).snapshot(worker, upto=upto)


class ArchiveMaps:
    """The archive maps of one run, keeping what redraws reuse.

    A view that redraws a map (the dashboard's, as the run goes or as the replay slider
    moves) keeps one: scrubbing forward extends each worker's replayed archive instead of
    rebuilding it (scrubbing back rebuilds it), a live map between re-clusters reuses the
    Voronoi regions it already has, and a store's task is loaded once.

    Args:
        source: a live or reopened :class:`~aster_nb.run.Run`, or a run's
            :class:`~aster_nb.store.Store`.
        region_cache: the number of maps whose Voronoi regions are kept (oldest dropped first).

    Raises:
        TypeError: ``source`` is neither a run nor a store.
    """

    def __init__(self, source: Run | Store, *, region_cache: int = REGION_CACHE) -> None:
        Source.of(source)  # checks it
        self.source = source
        self.region_cache = region_cache
        self._replays: dict[str, tuple[list[str], Archive]] = {}
        self._regions: dict[tuple[bytes, Bounds], list[np.ndarray]] = {}
        self._tasks: dict[str | None, Task | None] = {}

    def snapshot(self, worker: str, *, upto: int | None = None) -> MapSnapshot:
        """``worker``'s archive as a map, now or after evaluation ``upto`` (as
        :func:`map_snapshot`)."""
        src = Source.of(self.source)
        names = workers(self.source)
        if worker not in names:
            raise KeyError(f"no worker {worker!r}; workers are {names}")
        check_upto(upto)
        table = src.store.scores()
        total = len(table) if upto is None else min(upto, len(table))
        logged = src.store.archive_log(worker, upto=total)
        if logged or (upto is None and src.run is not None):
            row_of = {pid: i for i, pid in enumerate(table.id[:total])}
            rows = [row_of[i] for i in logged if i in row_of]
        else:  # a store from before the archive log: the worker's own programs, in storage order
            rows = [i for i in range(total) if table.worker[i] == worker]
        rows = [
            i
            for i in rows
            if table.status[i] == "ok" and isinstance(d := table.descriptor[i], list) and len(d)
        ]
        ids = [table.id[i] for i in rows]

        archive: Archive | None = None
        if upto is None and src.run is not None:
            archive = src.run.archives.get(worker)
        elif rows:
            archive = self._replay(src, worker, ids)

        if src.descriptor != "features" and archive is not None:
            # the archive describes its programs itself: map what it sees
            programs, descs = archive.history()
            ids = [p.id for p in programs]
            scores = np.array([p.score for p in programs], dtype=float)
        else:
            descs = np.array([table.descriptor[i] for i in rows], dtype=float) if rows else None
            scores = table.score[rows].astype(float)
        if descs is None or len(descs) == 0:
            descs = np.empty((0, 0))
        names, titles = self._axes(src, archive, descs.shape[1])
        proj, note = _plane(descs, names, titles, archive, src.descriptor)
        if archive is not None and layout_of(archive) == "single":  # the plane only places
            note = note.replace("cells over", "programs placed by", 1)
        points = proj(descs)
        cells, metric, extra = (
            archive_cells(archive, proj) if archive is not None and len(ids) else ((), None, "")
        )
        every = np.vstack(
            [points, *(np.array([c.center]) for c in cells), *(c.polygon for c in cells)]
        )
        bounds = padded_bounds(every)
        task = self._task(src)
        ok = table.score[(table.status == "ok") & np.isfinite(table.score)]
        return MapSnapshot(
            worker=worker,
            archive=archive.name if archive is not None else src.archive_kind,
            evaluations=total,
            axes=proj.axes,
            points=points.astype(np.float32),
            point_scores=scores.astype(np.float32),
            point_ids=tuple(ids),
            cells=self._fill_regions(cells, bounds, metric),
            bounds=bounds,
            descriptor=src.descriptor,
            note=f"{note}; {extra}" if extra else note,
            cells_total=int(archive.cells) if archive is not None else 0,
            cells_filled=len(archive) if archive is not None else 0,
            # the whole run's range, whatever `upto` is: colors stay put while replaying
            score_range=(float(ok.min()), float(ok.max())) if len(ok) else None,
            score_label=(task.score_description if task is not None else "") or "score",
        )

    def _task(self, src: Source) -> Task | None:
        if src.run is not None:
            return src.task
        if src.task_path not in self._tasks:
            self._tasks[src.task_path] = load_task(src.task_path)
        return self._tasks[src.task_path]

    def _replay(self, src: Source, worker: str, ids: list[str]) -> Archive | None:
        """The worker's archive after adding the programs ``ids``, in that order.

        Scrubbing forward extends the kept archive; scrubbing back rebuilds it.
        """
        kept = self._replays.get(worker)
        if kept is not None and kept[0] == ids[: len(kept[0])]:
            done, archive = kept
        else:
            done, archive = [], None
        task = self._task(src)
        bounds = task.feature_bounds if task is not None and src.descriptor == "features" else None
        archive = replay_archive(
            (src.store.get(i) for i in ids[len(done) :]),
            archive=archive,
            make=lambda dims: make_archive(
                src.archive_kind,
                dims=dims,
                seed=src.seed,
                bounds=bounds,
                descriptor=src.descriptor,
            ),
        )
        if archive is not None:
            self._replays[worker] = (list(ids), archive)
        return archive

    def _axes(
        self, src: Source, archive: Archive | None, dims: int
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The descriptor's dimension names, and each one's axis title: the task's
        description with the name, where ``[features] descriptions`` gives one."""
        descriptor = getattr(archive, "descriptor", None)
        if descriptor is not None:
            names = tuple(descriptor.axis_names())
            if len(names) == dims:
                return names, names
        task = self._task(src)
        names = task.feature_names if task is not None else ()
        if len(names) == dims:
            about = task.feature_descriptions if task is not None else ()
            if len(about) == dims:
                return tuple(names), tuple(f"{a} ({n})" for a, n in zip(about, names, strict=True))
            return tuple(names), tuple(names)
        if dims == len(CODE_FEATURE_NAMES):
            return CODE_FEATURE_NAMES, CODE_FEATURE_NAMES  # no evaluator features: the code's
        names = tuple(f"feature {i}" for i in range(dims))
        return names, names

    def _fill_regions(
        self, cells: tuple[Cell, ...], bounds: Bounds, metric: Metric
    ) -> tuple[Cell, ...]:
        """Give every cell without a polygon its Voronoi region among all centres, inside
        ``bounds``, in ``metric`` (see :func:`~aster_nb.geometry.voronoi_regions`); clip
        the others' polygons to ``bounds``."""
        if not cells:
            return cells
        centers = np.array([c.center for c in cells])
        # centroids move only when the archive re-clusters: between re-clusters a live map
        # redraws with the regions it already has
        key = (centers.tobytes(), bounds, metric)
        regions = self._regions.get(key)
        if regions is None:
            scale = None if metric is None else np.array(metric)
            regions = self._regions[key] = voronoi_regions(centers, bounds, metric=scale)
            while len(self._regions) > self.region_cache:
                del self._regions[next(iter(self._regions))]
        (x0, x1), (y0, y1) = bounds
        out = []
        for i, c in enumerate(cells):
            poly = np.clip(c.polygon, [x0, y0], [x1, y1]) if len(c.polygon) else regions[i]
            out.append(
                Cell(
                    index=c.index,
                    center=c.center,
                    polygon=poly.astype(np.float32),
                    elite_id=c.elite_id,
                    score=c.score,
                    covers=c.covers,
                )
            )
        return tuple(out)


def _plane(
    x: np.ndarray,
    names: tuple[str, ...],
    titles: tuple[str, ...],
    archive: Archive | None,
    kind: str,
) -> tuple[Projection, str]:
    """The projection of the descriptors ``x`` to the map's plane, and the note that says
    what the plane shows."""
    dims = x.shape[1] if x.ndim == 2 else 0
    descriptor = getattr(archive, "descriptor", None)
    what = _WHAT[kind]
    if dims <= 2:
        return Projection.as_is(dims, titles), f"cells over {what}"
    if is_grid(archive):
        # a grid's boxes are exact only in its own coordinates: the first two, as they are
        bins = archive.bins  # type: ignore[union-attr]
        behind = math.prod(int(b) for b in bins[2:])
        shape = (
            f"{int(bins[0])} bins per dimension"
            if (bins == bins[0]).all()
            else " x ".join(str(int(b)) for b in bins) + " bins"
        )
        listed = "" if descriptor is not None and descriptor.scaled else f" ({', '.join(names)})"
        note = (
            f"a grid of {shape} over {what} in {dims} dimensions{listed}; the plane shows "
            f"{names[0]} and {names[1]}, each box the best elite of the {behind} cells "
            "behind it"
        )
        return Projection.leading(dims, titles), note
    if descriptor is not None and descriptor.scaled:
        # components sorted by variance: the plane is the first two, as they are
        keep = float(descriptor.explained()) if hasattr(descriptor, "explained") else 1.0
        shares = np.var(x, axis=0)
        plane = float(shares[:2].sum() / shares.sum()) if shares.sum() > 0 else 0.0
        note = (
            f"cells over {what} in {dims} dimensions ({keep:.0%} of the history's "
            f"variance); the plane shows its first two ({plane:.0%} of theirs)"
        )
        return Projection.leading(dims, names), note
    proj = Projection.pca(x)
    assert proj.explained is not None
    first, second = proj.explained
    note = (
        f"cells over {what} in {dims} dimensions ({', '.join(names)}); the plane shows "
        f"their first two principal components ({first + second:.0%} of the variance)"
    )
    return proj, note
