"""What a run looked like: archive maps, score timelines and lineages, now or after
evaluation ``t``.

The dashboard, the replay slider and :mod:`aster_nb.figures` all draw from these records,
so a live run, a finished one and one reopened from its store look the same. Nothing here
imports a plotting library.

Replaying to evaluation ``t`` rebuilds the worker's archive from its first valid programs
in store order, exactly as :meth:`~aster_nb.agents.worker.Worker.restore` does, so the map
after ``t`` is the archive the worker had then (same seed, same order, same cells).

The map's axes are the archive's descriptor (the store's meta ``"descriptor"`` says which,
see :mod:`aster_nb.features`): the evaluator's features as they are in 1-2 dimensions,
their first two principal components beyond; a code embedding's first two components,
which already are principal components of the history; and a note says which, with the
share of variance the plane shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .archive import Archive, ClusterElites, GridElites, make_archive
from .features import CODE_FEATURE_NAMES, DESCRIPTORS
from .program import Program
from .store import Store
from .task import Task

if TYPE_CHECKING:
    import pandas as pd

    from .run import Run

__all__ = ["Cell", "MapSnapshot", "Timeline", "lineage", "map_snapshot", "timeline", "workers"]

_PAD = 0.05  # of the span, around the points, so edge cells are visible


@dataclass(frozen=True, slots=True)
class Cell:
    """One archive cell as drawn.

    Attributes:
        index: the archive's cell number.
        center: its centre on the map (the projected centroid, or the grid bin's centre).
        polygon: ``(m, 2)`` float32 vertices of its region clipped to the map bounds, not
            closed (the first vertex is not repeated).
        elite_id: id of the cell's best program; ``None`` if it holds none.
        score: that program's score.
    """

    index: int
    center: tuple[float, float]
    polygon: np.ndarray
    elite_id: str | None
    score: float | None


@dataclass(frozen=True, slots=True)
class MapSnapshot:
    """One worker's archive on a 2-D map.

    Attributes:
        worker: the worker's name.
        archive: ``"cluster"``, ``"grid"`` or ``"greedy"``.
        evaluations: programs in the store (all workers) up to this snapshot.
        axes: axis titles: the feature names, or principal components of the
            standardized descriptors when there are more than two.
        descriptor: what the archive's cells separate (``features``, ``metrics``,
            ``embedding`` or ``code``; see :mod:`aster_nb.features`).
        note: one line saying what the axes are (the descriptor, its dimensions, the share
            of variance the plane shows).
        points: ``(n, 2)`` float32, every valid program of the worker, projected.
        point_scores: ``(n,)`` float32 scores of those programs.
        point_ids: their ids.
        cells: one per cell; empty for the greedy archive, which has none.
        bounds: ``((x_low, x_high), (y_low, y_high))`` of the plotted box.
    """

    worker: str
    archive: str
    evaluations: int
    axes: tuple[str, str]
    points: np.ndarray
    point_scores: np.ndarray
    point_ids: tuple[str, ...]
    cells: tuple[Cell, ...]
    bounds: tuple[tuple[float, float], tuple[float, float]]
    descriptor: str = "features"
    note: str = ""


@dataclass(frozen=True, slots=True)
class Timeline:
    """Scores over a run.

    Attributes:
        frame: one row per program in evaluation order: ``seq`` (1-based), ``id``,
            ``worker``, ``status``, ``score`` (NaN unless ``ok``), ``elapsed`` (seconds
            since the run's first program), ``worker_best`` (that worker's best so far) and
            ``best`` (the best over all workers so far).
        planner: one row per finished round of the top planner: ``round``, ``seq``
            (evaluations stored by its end), ``elapsed``, ``score`` (the planner's current
            best after synthesis) and ``best_id``.
    """

    frame: pd.DataFrame
    planner: pd.DataFrame


# -- sources ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Source:
    store: Store
    run: Run | None
    archive_kind: str
    seed: int
    task: Task | None
    descriptor: str  # the archive's descriptor kind, as the store recorded it


_TASKS: dict[str, Task | None] = {}


def _source(source: Run | Store) -> _Source:
    if isinstance(source, Store):
        cfg: dict[str, Any] = source.meta("run") or {}
        return _Source(
            store=source,
            run=None,
            archive_kind=str(cfg.get("archive", "cluster")),
            seed=int(cfg.get("seed", 0)),
            task=_load_task(cfg.get("task")),
            descriptor=_descriptor_of(source),
        )
    store = getattr(source, "store", None)
    if not isinstance(store, Store):
        raise TypeError(f"source must be an aster_nb Run or Store, got {type(source).__name__}")
    return _Source(
        store=store,
        run=source,
        archive_kind=source.cfg.archive,
        seed=source.cfg.seed,
        task=source.task,
        descriptor=_descriptor_of(store),
    )


def _descriptor_of(store: Store) -> str:
    # stores from before the choice was recorded used the evaluator's or code features,
    # stored with each program: the "features" path
    meta = store.meta("descriptor")
    kind = meta.get("kind") if isinstance(meta, dict) else None
    return kind if kind in DESCRIPTORS[1:] else "features"


def _load_task(path: object) -> Task | None:
    # only for feature names and bounds: a store whose task folder moved still replays
    if not isinstance(path, str):
        return None
    if path not in _TASKS:
        try:
            _TASKS[path] = Task.load(path)
        except Exception:
            _TASKS[path] = None
    return _TASKS[path]


def _check_upto(upto: object) -> None:
    if upto is not None and (isinstance(upto, bool) or not isinstance(upto, int) or upto < 0):
        raise ValueError(
            f"upto must be an int >= 0 (a number of evaluations) or None, got {upto!r}"
        )


def workers(source: Run | Store) -> list[str]:
    """Names of the run's workers, sorted."""
    src = _source(source)
    if src.run is not None:
        return sorted(src.run.workers)
    return src.store.workers()


# -- archive maps -----------------------------------------------------------------------------


def map_snapshot(source: Run | Store, worker: str, *, upto: int | None = None) -> MapSnapshot:
    """``worker``'s archive as a map, now or after evaluation ``upto``.

    Args:
        source: a live or reopened :class:`~aster_nb.run.Run`, or a run's
            :class:`~aster_nb.store.Store`.
        worker: a worker name, e.g. ``"p0.w0"``.
        upto: replay to this many stored evaluations (all workers count); ``None``: now
            (a run's live archive).

    Raises:
        KeyError: no such worker (the message lists them).
        ValueError: ``upto`` is negative.
    """
    src = _source(source)
    names = workers(source)
    if worker not in names:
        raise KeyError(f"no worker {worker!r}; workers are {names}")
    _check_upto(upto)
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
        archive = _replay(src, worker, ids)

    computed = src.descriptor != "features" and archive is not None
    if computed:  # the archive describes its programs itself: map what it sees
        assert archive is not None
        programs, descs = archive.history()
        ids = [p.id for p in programs]
        scores = np.array([p.score for p in programs], dtype=float)
    else:
        descs = np.array([table.descriptor[i] for i in rows], dtype=float) if rows else None
        scores = table.score[rows].astype(float)
    if descs is None or len(descs) == 0:
        descs = np.empty((0, 0))
    names_ = _axis_names(src, archive, descs.shape[1])
    proj = _Projection.fit(descs, names_, archive, src.descriptor)
    note = proj.note
    if archive is not None and archive.name == "greedy":  # one cell: the plane only places
        note = note.replace("cells over", "programs placed by", 1)
    points = proj(descs)
    cells = _cells(archive, proj) if archive is not None and len(ids) else ()
    every = np.vstack([points, *(np.array([c.center]) for c in cells), *(c.polygon for c in cells)])
    bounds = _bounds(every)
    return MapSnapshot(
        worker=worker,
        archive=archive.name if archive is not None else src.archive_kind,
        evaluations=total,
        axes=proj.axes,
        points=points.astype(np.float32),
        point_scores=scores.astype(np.float32),
        point_ids=tuple(ids),
        cells=_clip_all(cells, bounds),
        bounds=bounds,
        descriptor=src.descriptor,
        note=note,
    )


_REPLAYS: dict[tuple[str, str], tuple[list[str], Archive]] = {}


def _replay(src: _Source, worker: str, ids: list[str]) -> Archive | None:
    """The worker's archive after adding the programs ``ids``, in that order.

    Scrubbing forward extends the cached archive; scrubbing back rebuilds it.
    """
    key = (str(src.store.path), worker)
    cached = _REPLAYS.get(key)
    if cached is not None and cached[0] == ids[: len(cached[0])]:
        done, archive = cached
    else:
        done, archive = [], None
    for i in ids[len(done) :]:
        p = src.store.get(i)
        if p is None or not p.ok or not p.features:
            continue
        if archive is None:
            features = src.descriptor == "features"
            bounds = src.task.feature_bounds if src.task is not None and features else None
            archive = make_archive(
                src.archive_kind,
                dims=len(p.features),
                seed=src.seed,
                bounds=bounds,
                descriptor=src.descriptor,
            )
        archive.add(p)
    if archive is not None:
        _REPLAYS[key] = (list(ids), archive)
    return archive


def _axis_names(src: _Source, archive: Archive | None, dims: int) -> tuple[str, ...]:
    descriptor = getattr(archive, "descriptor", None)
    if descriptor is not None:
        names = tuple(descriptor.axis_names())
        if len(names) == dims:
            return names
    names = src.task.feature_names if src.task is not None else ()
    if len(names) == dims:
        return tuple(names)
    if dims == len(CODE_FEATURE_NAMES):
        return CODE_FEATURE_NAMES  # no evaluator features: the code's own
    return tuple(f"feature {i}" for i in range(dims))


@dataclass(frozen=True, slots=True)
class _Projection:
    """Descriptors to the plane: as they are for 1-2 dimensions; a code embedding's first
    two components (already principal components of the history); else the first two
    principal components of the standardized descriptors."""

    mean: np.ndarray
    scale: np.ndarray
    basis: np.ndarray | None  # (dims, 2), None: no projection
    axes: tuple[str, str]
    note: str = ""

    @classmethod
    def fit(
        cls, x: np.ndarray, names: tuple[str, ...], archive: Archive | None, kind: str
    ) -> _Projection:
        dims = x.shape[1] if x.ndim == 2 else 0
        descriptor = getattr(archive, "descriptor", None)
        what = {
            "features": "the evaluator's features",
            "metrics": "the evaluator's metrics",
            "code": "code size and numeric share",
            "embedding": "a code embedding (PCA of literal values and token pairs)",
        }[kind]
        if dims <= 2:
            axes = (names[0] if dims else "", names[1] if dims == 2 else "")
            return cls(np.zeros(dims), np.ones(dims), None, axes, f"cells over {what}")
        if descriptor is not None and descriptor.scaled:
            # components sorted by variance: the plane is the first two, as they are
            keep = float(descriptor.explained()) if hasattr(descriptor, "explained") else 1.0
            shares = np.var(x, axis=0)
            plane = float(shares[:2].sum() / shares.sum()) if shares.sum() > 0 else 0.0
            note = (
                f"cells over {what} in {dims} dimensions ({keep:.0%} of the history's "
                f"variance); the plane shows its first two ({plane:.0%} of theirs)"
            )
            return cls(
                np.zeros(dims), np.ones(dims), np.eye(dims)[:, :2], (names[0], names[1]), note
            )
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        z = (x - mean) / scale
        _, s, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
        var = s**2 / max(float(np.sum(s**2)), 1e-300)
        basis = vt[:2].T if vt.shape[0] >= 2 else np.eye(dims)[:, :2]
        # a sign convention, so the map does not flip between redraws
        basis = basis * np.sign(basis[np.argmax(np.abs(basis), axis=0), [0, 1]])
        axes = (f"PC1 ({var[0]:.0%} of variance)", f"PC2 ({var[1]:.0%} of variance)")
        note = (
            f"cells over {what} in {dims} dimensions ({', '.join(names)}); the plane shows "
            f"their first two principal components ({var[0] + var[1]:.0%} of the variance)"
        )
        return cls(mean, scale, basis, axes, note)

    def __call__(self, x: np.ndarray) -> np.ndarray:
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


def _cells(archive: Archive, proj: _Projection) -> tuple[Cell, ...]:
    elites = archive.elites()
    descs = archive.descriptors()  # the archive's own, in the order of elites()
    by_cell: dict[int, tuple[Program, np.ndarray]] = {}
    for p, d in zip(elites, descs, strict=True):
        c = archive.cell_of(p.id)
        if c is not None:
            by_cell.setdefault(c, (p, d))
    if isinstance(archive, ClusterElites):
        centers = proj(archive.centroids)
        return tuple(
            _cell(i, centers[i], by_cell[i][0] if i in by_cell else None, None)
            for i in range(archive.cells)
        )
    if isinstance(archive, GridElites) and proj.basis is None and archive.bounds is not None:
        rects = _grid_rects(archive, [d for _, d in by_cell.values()])
        return tuple(
            _cell(i, rect.mean(axis=0), p, rect)
            for (i, (p, _)), rect in zip(by_cell.items(), rects, strict=True)
        )
    if archive.name == "greedy":
        return ()
    # any other archive, or a grid seen through a projection: regions around the elites
    return tuple(_cell(c, proj(d[None, :])[0], p, None) for c, (p, d) in sorted(by_cell.items()))


def _cell(index: int, center: np.ndarray, p: Program | None, polygon: np.ndarray | None) -> Cell:
    return Cell(
        index=int(index),
        center=(float(center[0]), float(center[1])),
        polygon=np.empty((0, 2), np.float32) if polygon is None else polygon.astype(np.float32),
        elite_id=None if p is None else p.id,
        score=None if p is None or p.score is None else float(p.score),
    )


def _grid_rects(archive: GridElites, descs: list[np.ndarray]) -> list[np.ndarray]:
    bounds = archive.bounds
    assert bounds is not None
    bins = archive.bins
    width = (bounds[:, 1] - bounds[:, 0]) / bins
    rects = []
    for d in descs:
        cell = int(archive.cell_index(d)[0])
        idx = np.asarray(np.unravel_index(cell, tuple(int(b) for b in bins)), dtype=float)
        lo = bounds[:, 0] + idx * width
        hi = lo + width
        if len(lo) == 1:  # one feature: bands across the plot
            lo, hi = np.array([lo[0], -1.0]), np.array([hi[0], 1.0])
        rects.append(np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]]))
    return rects


# -- geometry ---------------------------------------------------------------------------------


def _bounds(xy: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    out = []
    for d in range(2):
        if len(xy) == 0:
            out.append((-1.0, 1.0))
            continue
        lo, hi = float(np.min(xy[:, d])), float(np.max(xy[:, d]))
        pad = (hi - lo) * _PAD if hi > lo else max(abs(lo) * _PAD, 0.5)
        out.append((lo - pad, hi + pad))
    return (out[0], out[1])


_REGIONS: dict[tuple[bytes, tuple[tuple[float, float], tuple[float, float]]], list[np.ndarray]] = {}
_REGION_CACHE = 64  # maps (workers x replay positions) whose regions are kept


def _clip_all(
    cells: tuple[Cell, ...], bounds: tuple[tuple[float, float], tuple[float, float]]
) -> tuple[Cell, ...]:
    """Give every cell without a polygon its Voronoi region among all centres, inside
    ``bounds``, computed in coordinates scaled to the box so both axes weigh alike."""
    if not cells:
        return cells
    (x0, x1), (y0, y1) = bounds
    origin, span = np.array([x0, y0]), np.array([x1 - x0, y1 - y0])
    centers = (np.array([c.center for c in cells]) - origin) / span
    # centroids move only when the archive re-clusters: between re-clusters a live map
    # redraws with the regions it already has
    key = (centers.tobytes(), bounds)
    regions = _REGIONS.get(key)
    if regions is None:
        box = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
        regions = [voronoi_region(centers, i, box) * span + origin for i in range(len(cells))]
        _REGIONS[key] = regions
        while len(_REGIONS) > _REGION_CACHE:
            del _REGIONS[next(iter(_REGIONS))]
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
            )
        )
    return tuple(out)


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
        poly = _clip(poly, normal, float(normal @ (ci + centers[j]) / 2))
        if len(poly):
            reach = float(np.sqrt(((poly - ci) ** 2).sum(axis=1)).max())
    return poly


def _clip(poly: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """Keep the part of the convex ``poly`` where ``normal @ x <= offset``."""
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


# -- timelines and lineages -------------------------------------------------------------------


def timeline(source: Run | Store, *, upto: int | None = None) -> Timeline:
    """Scores over the run, now or up to evaluation ``upto``.

    Args:
        source: a run or its store.
        upto: keep the first ``upto`` evaluations; ``None``: all.
    """
    import pandas as pd

    src = _source(source)
    _check_upto(upto)
    table = src.store.scores()
    t0 = float(table.created.min()) if len(table) else 0.0
    created = np.sort(table.created)
    n = len(table) if upto is None else min(upto, len(table))
    frame = pd.DataFrame(
        {
            "seq": np.arange(1, n + 1),
            "id": table.id[:n],
            "worker": table.worker[:n],
            "status": table.status[:n],
            "score": np.where(table.status[:n] == "ok", table.score[:n], np.nan),
            "elapsed": table.created[:n] - t0,
        }
    )
    frame["worker_best"] = frame.groupby("worker")["score"].cummax()
    frame["best"] = frame["score"].cummax()

    rounds = src.store.rounds()
    top = src.run.planner.name if src.run is not None else _top_planner(rounds)
    rounds = rounds[rounds["planner"] == top]
    seq = np.searchsorted(created, rounds["finished"].to_numpy(dtype=float), side="right")
    planner = pd.DataFrame(
        {
            "round": rounds["round"].to_numpy(),
            "seq": seq,
            "elapsed": (rounds["finished"] - t0).to_numpy(dtype=float),
            "score": rounds["best_score"].to_numpy(dtype=float),
            "best_id": rounds["best_id"].to_numpy(),
        }
    )
    if upto is not None:  # a round counts once every program it made is within the first upto
        planner = planner[planner["seq"] <= upto]
    return Timeline(frame=frame, planner=planner.reset_index(drop=True))


def _top_planner(rounds: pd.DataFrame) -> str:
    names = set(rounds["planner"])
    return "root" if "root" in names else (min(names) if names else "p0")


def lineage(source: Run | Store, program_id: str) -> list[Program]:
    """The ancestry of a program through its first parents, oldest first, itself last.

    Raises:
        KeyError: no program with this id in the store.
    """
    store = _source(source).store
    p = store.get(program_id)
    if p is None:
        raise KeyError(f"no program {program_id!r} in {Path(store.path).name}")
    chain, seen = [p], {p.id}
    while p.parents and (parent := store.get(p.parents[0])) is not None:
        if parent.id in seen:
            break  # an identical program re-derived: the id repeats, stop
        chain.append(parent)
        seen.add(parent.id)
        p = parent
    return chain[::-1]
