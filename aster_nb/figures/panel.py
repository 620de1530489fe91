"""One archive map panel: its fixed traces, and the data a snapshot fills them with.

A map panel is ``bins + 3`` traces (see :mod:`aster_nb.figures`): built once, without data,
by :func:`map_skeleton`, then filled in place from a :class:`~aster_nb.snapshot.MapSnapshot`
by :func:`map_data` and :func:`fill_map`. :mod:`~aster_nb.figures.maps` draws one panel,
:mod:`~aster_nb.figures.comparison` several on one color scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.basedatatypes import BaseFigure

from ..snapshot import Cell, MapSnapshot
from .checks import check_range
from .style import (
    CELL_EDGE,
    EMPTY_CENTRE,
    EMPTY_FILL,
    FILLED_CENTRE,
    SHORT,
    fmt,
    stepped,
    tick_labels,
)

__all__ = [
    "box_ratio",
    "cells_text",
    "fill_map",
    "map_data",
    "map_scores",
    "map_skeleton",
    "run_range",
    "score_edges",
]


def box_ratio(snap: MapSnapshot) -> float:
    """The y axis' scale ratio that draws the snapshot's box square."""
    # The snapshot computes Voronoi regions in coordinates scaled to its box, so the box
    # is drawn square: the cells then look as they were computed, whatever the axes' units
    # (raw features often differ by 10x; an equal data aspect would draw a sliver).
    (x0, x1), (y0, y1) = snap.bounds
    dx, dy = x1 - x0, y1 - y0
    return dx / dy if dx > 0 and dy > 0 else 1.0


def map_skeleton(
    colors: list[str], *, showscale: bool, xaxis: str = "x", yaxis: str = "y"
) -> list[Any]:
    """The ``len(colors) + 3`` traces of a map panel, styled, without data."""
    ax = {"xaxis": xaxis, "yaxis": yaxis, "showlegend": False}
    fills = [
        *((c, f"bin {i}", 0.6) for i, c in enumerate(colors)),
        (EMPTY_FILL, "empty cells", 0.4),
    ]
    filled = [  # one per score bin, then the empty cells (muted: thinner edges)
        go.Scatter(
            x=[],
            y=[],
            mode="lines",
            fill="toself",
            fillcolor=color,
            line={"color": CELL_EDGE, "width": width},
            hoverinfo="skip",
            name=name,
            **ax,
        )
        for color, name, width in fills
    ]
    programs = go.Scattergl(
        x=np.empty(0, np.float32),
        y=np.empty(0, np.float32),
        mode="markers",
        name="programs",
        marker={
            "size": 5,
            "color": np.empty(0, np.float32),
            "colorscale": stepped(colors),
            "showscale": showscale,
            "colorbar": {"title": {"text": "score", "side": "right"}, "thickness": 14},
            "line": {"width": 0.5, "color": "rgba(20,20,20,0.7)"},
        },
        hovertemplate="program %{hovertext}<br>score %{marker.color:.6g}<extra></extra>",
        **ax,
    )
    centres = go.Scatter(
        x=[],
        y=[],
        mode="markers",
        name="cells",
        marker={"size": 5, "color": FILLED_CENTRE},
        hovertemplate="%{hovertext}<extra></extra>",
        **ax,
    )
    return [*filled, programs, centres]


def cells_text(snap: MapSnapshot) -> str:
    """How many cells the archive has and holds, as titles say it: a grid's filled share
    (of all its bins, drawn or not), Cluster-Elites' count (all filled by construction),
    greedy's lack of niches."""
    total = snap.cells_total or len(snap.cells)
    filled = (
        snap.cells_filled if snap.cells_total else sum(c.elite_id is not None for c in snap.cells)
    )
    if snap.archive == "greedy" or (not snap.cells and total <= 1):
        return "one cell: no niches"
    if snap.archive == "cluster" and filled == total:
        return f"{total} cells"
    return f"{filled}/{total} cells filled"


def run_range(snaps: Sequence[MapSnapshot]) -> tuple[float, float] | None:
    """The score range the colors span when none is given: the union of the snapshots'
    runs' ranges (:attr:`~aster_nb.snapshot.MapSnapshot.score_range`), so colors hold
    still as a run is replayed; ``None`` if a snapshot has none (made by hand)."""
    ranges = [s.score_range for s in snaps]
    if not ranges or any(r is None for r in ranges):
        return None
    lo = min(r[0] for r in ranges if r is not None)
    hi = max(r[1] for r in ranges if r is not None)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    if hi <= lo:  # one score in the whole run: a band around it, as score_edges makes
        pad = max(abs(lo) * 0.05, 0.5)
        return lo - pad, hi + pad
    return lo, hi


def map_scores(snap: MapSnapshot) -> np.ndarray:
    """The scores the color range spans: the elites', else (no cells) the programs'."""
    cells = [c.score for c in snap.cells if c.score is not None]
    if cells:
        return np.asarray(cells, dtype=float)
    return np.asarray(snap.point_scores, dtype=float)


def score_edges(
    scores: Sequence[np.ndarray], bins: int, score_range: tuple[float, float] | None
) -> np.ndarray:
    """The ``bins + 1`` edges of the score bins: over ``score_range``, else over the finite
    scores of all panels (a band around a single score)."""
    if score_range is not None:
        lo, hi = check_range(score_range)
    else:
        finite = np.concatenate([np.asarray(s, dtype=float).ravel() for s in scores])
        finite = finite[np.isfinite(finite)]
        if len(finite) == 0:
            lo, hi = 0.0, 1.0
        else:
            lo, hi = float(finite.min()), float(finite.max())
        if hi <= lo:  # one score (or all equal): a band around it so it gets a color
            pad = max(abs(lo) * 0.05, 0.5)
            lo, hi = lo - pad, hi + pad
    return np.linspace(lo, hi, bins + 1)


def _bin_of(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    bins = len(edges) - 1
    t = (scores - edges[0]) / (edges[-1] - edges[0])
    return np.clip(np.floor(t * bins), 0, bins - 1).astype(int)


def map_data(snap: MapSnapshot, edges: np.ndarray) -> dict[str, Any]:
    """What :func:`fill_map` writes for ``snap``: polygons per score bin, the empty cells,
    the programs and the cell centres with their hovers."""
    bins = len(edges) - 1
    # a NaN score has no color: such a cell is drawn as empty (its hover still names it)
    filled = [c for c in snap.cells if _has_score(c) and len(c.polygon)]
    empty = [c for c in snap.cells if not _has_score(c) and len(c.polygon)]
    which = _bin_of(np.array([c.score for c in filled], dtype=float), edges)
    groups = [[c for c, b in zip(filled, which, strict=True) if b == k] for k in range(bins)]
    polys = [_polygons([c.polygon for c in g]) for g in groups]
    centres = snap.cells
    hover = [
        f"cell {c.index}<br>empty"
        if c.elite_id is None
        else f"cell {c.index}<br>program {c.elite_id[:SHORT]}<br>score {fmt(c.score)}"
        for c in centres
    ]
    if any(c.covers > 1 for c in centres):  # a grid in the plane of two of its dimensions
        hover = [
            f"{h}<br>{'best of the' if c.elite_id else 'all'} {c.covers} cells behind this box"
            for h, c in zip(hover, centres, strict=True)
        ]
    return {
        "polys": polys,
        "empty": _polygons([c.polygon for c in empty]),
        "px": np.ascontiguousarray(snap.points[:, 0], dtype=np.float32),
        "py": np.ascontiguousarray(snap.points[:, 1], dtype=np.float32),
        "pc": np.asarray(snap.point_scores, dtype=np.float32),
        # numpy string arrays pass plotly's validators in one step; lists go item by item
        "pid": np.array([i[:SHORT] for i in snap.point_ids], dtype=str),
        "pfull": np.array(snap.point_ids, dtype=str),
        "cx": np.array([c.center[0] for c in centres], dtype=float),
        "cy": np.array([c.center[1] for c in centres], dtype=float),
        "cid": [c.elite_id for c in centres],
        "ccolor": [FILLED_CENTRE if c.elite_id else EMPTY_CENTRE for c in centres],
        "chover": hover,
    }


def _has_score(c: Cell) -> bool:
    return c.score is not None and not math.isnan(c.score)


def map_edges(
    snaps: Sequence[MapSnapshot], bins: int, score_range: tuple[float, float] | None
) -> np.ndarray:
    """The score bins' edges shared by ``snaps``' panels: over ``score_range``, else over
    their runs' range (:func:`run_range`), else over their scores."""
    return score_edges([map_scores(s) for s in snaps], bins, score_range or run_range(snaps))


def draw_map(fig: BaseFigure, start: int, snap: MapSnapshot, edges: np.ndarray) -> None:
    """Draw ``snap`` into the panel whose traces start at ``start`` (see :func:`fill_map`)."""
    fill_map(fig, start, map_data(snap, edges), edges)


def fill_map(fig: BaseFigure, start: int, data: dict[str, Any], edges: np.ndarray) -> None:
    """Write one map panel's data into traces ``start .. start + bins + 2`` of ``fig``."""
    bins = len(edges) - 1
    for k in range(bins):
        t = fig.data[start + k]
        t.x, t.y = data["polys"][k]
        t.name = f"score {fmt(edges[k])} – {fmt(edges[k + 1])}"
    t = fig.data[start + bins]
    t.x, t.y = data["empty"]
    pts = fig.data[start + bins + 1]
    pts.x, pts.y = data["px"], data["py"]
    pts.hovertext, pts.customdata = data["pid"], data["pfull"]
    pts.marker.update(
        color=data["pc"],
        cmin=float(edges[0]),
        cmax=float(edges[-1]),
        colorbar={"tickvals": edges.tolist(), "ticktext": tick_labels(edges)},
    )
    cen = fig.data[start + bins + 2]
    cen.x, cen.y = data["cx"], data["cy"]
    cen.customdata, cen.hovertext = data["cid"], data["chover"]
    cen.marker.color = data["ccolor"]


def _polygons(polys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Closed rings (first vertex repeated, so the outline closes) joined by NaN gaps.

    float32 with NaN, not lists with ``None``: plotly.js draws both alike (a gap ends a
    ring of ``fill="toself"``), but arrays skip plotly's per-element validation and travel
    base64-encoded, so redrawing a 1,000-cell map in a widget costs ~20 ms, not ~45 ms.
    """
    if not polys:
        return np.empty(0, np.float32), np.empty(0, np.float32)
    gap = np.full((1, 2), np.nan, np.float32)
    parts: list[np.ndarray] = []
    for p in polys:
        if parts:
            parts.append(gap)
        parts += [p, p[:1]]
    xy = np.concatenate(parts).astype(np.float32)
    return np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
