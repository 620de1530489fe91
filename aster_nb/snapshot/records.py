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
    bounds: Bounds
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
