"""The records a snapshot gives: an archive map and its cells, a score timeline.

Plain frozen dataclasses of arrays and frames, so the dashboard, the replay slider and
:mod:`aster_nb.figures` draw from the same values whether the run is live, finished or
reopened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..geometry import Bounds

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Cell", "MapSnapshot", "Timeline"]


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
        covers: the archive cells drawn as this one: 1, except for a grid over more
            than two dimensions seen in its first two, where a box stands for the column
            of cells behind it (the bins of the other dimensions) and shows the best of
            their elites.
    """

    index: int
    center: tuple[float, float]
    polygon: np.ndarray
    elite_id: str | None
    score: float | None
    covers: int = 1


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
        cells: one per drawn cell, empty ones included; none for the greedy archive.
        bounds: ``((x_low, x_high), (y_low, y_high))`` of the plotted box.
        cells_total: the archive's cells (``archive.cells``): a grid's every bin, whether
            drawn one by one or in columns (see :attr:`Cell.covers`).
        cells_filled: those holding an elite (``len(archive)``).
        score_range: lowest and highest ``ok`` score of the whole run (every worker, every
            evaluation, also when replaying to an earlier one), so a map's colors mean the
            same score in every frame and for every worker; ``None`` without one.
        score_label: what the score is, with its unit (the task's ``score_description``),
            else ``"score"``.
    """

    worker: str
    archive: str
    evaluations: int
    axes: tuple[str, str]
    points: np.ndarray
    point_scores: np.ndarray
    point_ids: tuple[str, ...]
    cells: tuple[Cell, ...]
    bounds: Bounds
    descriptor: str = "features"
    note: str = ""
    cells_total: int = 0
    cells_filled: int = 0
    score_range: tuple[float, float] | None = None
    score_label: str = "score"


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
        merges: one row per program a planner made by merging workers' diffs: ``seq``,
            ``elapsed``, ``id``, ``round``, ``status``, ``score`` (NaN unless ``ok``);
            ``None`` when not read (a timeline made by hand).
        target: the task's target score, if it has one.
        record: the best known score, in the score's units and sign, if the task gives one.
        record_source: who set the record.
        score_label: what the score is, with its unit (the task's ``score_description``),
            else ``"score"``.
    """

    frame: pd.DataFrame
    planner: pd.DataFrame
    merges: pd.DataFrame | None = None
    target: float | None = None
    record: float | None = None
    record_source: str = ""
    score_label: str = "score"
