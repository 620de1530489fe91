"""Archive maps (a Voronoi map drawn as one filled trace per score bin) and their comparison."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.basedatatypes import BaseFigure
from plotly.subplots import make_subplots

from ..snapshot import Cell, MapSnapshot
from ._common import (
    _AXIS,
    _CELL_EDGE,
    _EMPTY_FILL,
    _SHORT,
    _TEMPLATE,
    _bin_colors,
    _check_bins,
    _check_figure,
    _check_range,
    _check_snap,
    _fmt,
    _meta,
    _stepped,
    _tick_labels,
    _tname,
)
from .timelines import _steps

# -- archive maps -----------------------------------------------------------------------------


def archive_map_figure(
    snap: MapSnapshot,
    *,
    bins: int = 8,
    colorscale: str = "Viridis",
    title: str | None = None,
    score_range: tuple[float, float] | None = None,
) -> go.Figure:
    """A worker's archive: cells colored by their elite's score, its programs on top.

    Args:
        snap: from :func:`aster_nb.snapshot.map_snapshot`.
        bins: number of score bins (colors) the cells are grouped into, ``>= 1``.
        colorscale: a plotly named colorscale, e.g. ``"Viridis"``, ``"Cividis"``.
        title: the figure title; ``None`` names worker, archive and evaluations, and is
            kept current by :func:`archive_map_update`.
        score_range: ``(low, high)`` of the color scale; ``None``: the range of the cells'
            scores (of the programs' when there are no cells). Fix it to compare maps or to
            keep colors still while replaying.

    Returns:
        A ``go.Figure`` with ``bins + 3`` traces (see the module docs); wrap it in
        ``go.FigureWidget`` to update it in place.
    """
    _check_snap(snap)
    _check_bins(bins)
    colors = _bin_colors(colorscale, bins)
    fig = go.Figure(data=_map_skeleton(colors, showscale=True))
    fig.update_layout(
        template=_TEMPLATE,
        margin={"l": 70, "r": 30, "t": 80, "b": 60},  # room for the note under the title
        hovermode="closest",
        showlegend=False,
        meta={
            "aster_nb": "archive_map",
            "bins": bins,
            "colorscale": colorscale,
            "title": title,
        },
    )
    fig.update_xaxes(**_AXIS, constrain="domain")
    fig.update_yaxes(**_AXIS, constrain="domain", scaleanchor="x")
    archive_map_update(fig, snap, bins=bins, score_range=score_range)
    return fig


def archive_map_update(
    fig: BaseFigure,
    snap: MapSnapshot,
    *,
    bins: int | None = None,
    score_range: tuple[float, float] | None = None,
) -> None:
    """Redraw ``fig`` (made by :func:`archive_map_figure`) for ``snap``, in place.

    Works on a ``go.Figure`` and on a ``go.FigureWidget``; a widget gets one batched message.
    The number and order of traces never change.

    Args:
        fig: the figure or widget to redraw.
        snap: the map to show now.
        bins: must be the figure's; ``None`` (default) takes it from the figure.
        score_range: as in :func:`archive_map_figure`; ``None``: the snapshot's range.

    Raises:
        TypeError: ``fig`` is not a plotly figure or ``snap`` not a ``MapSnapshot``.
        ValueError: ``fig`` was not made by :func:`archive_map_figure` with these ``bins``.
    """
    _check_figure(fig)
    _check_snap(snap)
    meta = _meta(fig, "archive_map", "archive_map_figure")
    if bins is None:
        bins = int(meta.get("bins", 0))
    _check_bins(bins)
    if meta.get("bins") != bins or len(fig.data) != bins + 3:
        raise ValueError(
            f"this archive map was made with bins={meta.get('bins')} ({len(fig.data)} traces);"
            f" it cannot be updated with bins={bins}: pass the same bins"
        )
    edges = _edges([_map_scores(snap)], bins, score_range)
    data = _map_data(snap, edges)
    title = meta.get("title") or _map_title(snap)
    with fig.batch_update():
        _fill_map(fig, 0, data, edges)
        (x0, x1), (y0, y1) = snap.bounds
        fig.layout.xaxis.update(range=[x0, x1], title_text=snap.axes[0])
        fig.layout.yaxis.update(
            range=[y0, y1], title_text=snap.axes[1], scaleratio=_box_ratio(snap)
        )
        fig.layout.title = {"text": title, "x": 0.02, "xanchor": "left"}
        # a user's zoom survives redraws of one worker and resets on a switch to another
        fig.layout.uirevision = snap.worker


def _map_title(snap: MapSnapshot) -> str:
    title = f"{snap.worker} · {snap.archive} archive · {snap.evaluations} evaluations"
    # what the axes are: the descriptor, its dimensions and the variance the plane shows
    return f"{title}<br><sup>{html.escape(snap.note)}</sup>" if snap.note else title


def _box_ratio(snap: MapSnapshot) -> float:
    # The snapshot computes Voronoi regions in coordinates scaled to its box, so the box
    # is drawn square: the cells then look as they were computed, whatever the axes' units
    # (raw features often differ by 10x; an equal data aspect would draw a sliver).
    (x0, x1), (y0, y1) = snap.bounds
    dx, dy = x1 - x0, y1 - y0
    return dx / dy if dx > 0 and dy > 0 else 1.0


def _map_skeleton(
    colors: list[str], *, showscale: bool, xaxis: str = "x", yaxis: str = "y"
) -> list[Any]:
    """The ``len(colors) + 3`` traces of a map panel, styled, without data."""
    ax = {"xaxis": xaxis, "yaxis": yaxis, "showlegend": False}
    fills = [*((c, f"bin {i}") for i, c in enumerate(colors)), (_EMPTY_FILL, "empty cells")]
    filled = [  # one per score bin, then the empty cells
        go.Scatter(
            x=[],
            y=[],
            mode="lines",
            fill="toself",
            fillcolor=color,
            line={"color": _CELL_EDGE, "width": 0.6},
            hoverinfo="skip",
            name=name,
            **ax,
        )
        for color, name in fills
    ]
    programs = go.Scattergl(
        x=np.empty(0, np.float32),
        y=np.empty(0, np.float32),
        mode="markers",
        name="programs",
        marker={
            "size": 5,
            "color": np.empty(0, np.float32),
            "colorscale": _stepped(colors),
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
        marker={"size": 5, "color": "rgba(30,30,30,0.45)"},
        hovertemplate="%{hovertext}<extra></extra>",
        **ax,
    )
    return [*filled, programs, centres]


def _map_scores(snap: MapSnapshot) -> np.ndarray:
    """The scores the color range spans: the elites', else (no cells) the programs'."""
    cells = [c.score for c in snap.cells if c.score is not None]
    if cells:
        return np.asarray(cells, dtype=float)
    return np.asarray(snap.point_scores, dtype=float)


def _edges(
    scores: Sequence[np.ndarray], bins: int, score_range: tuple[float, float] | None
) -> np.ndarray:
    if score_range is not None:
        lo, hi = _check_range(score_range)
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


def _map_data(snap: MapSnapshot, edges: np.ndarray) -> dict[str, Any]:
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
        else f"cell {c.index}<br>program {c.elite_id[:_SHORT]}<br>score {_fmt(c.score)}"
        for c in centres
    ]
    return {
        "polys": polys,
        "empty": _polygons([c.polygon for c in empty]),
        "px": np.ascontiguousarray(snap.points[:, 0], dtype=np.float32),
        "py": np.ascontiguousarray(snap.points[:, 1], dtype=np.float32),
        "pc": np.asarray(snap.point_scores, dtype=np.float32),
        # numpy string arrays pass plotly's validators in one step; lists go item by item
        "pid": np.array([i[:_SHORT] for i in snap.point_ids], dtype=str),
        "pfull": np.array(snap.point_ids, dtype=str),
        "cx": np.array([c.center[0] for c in centres], dtype=float),
        "cy": np.array([c.center[1] for c in centres], dtype=float),
        "cid": [c.elite_id for c in centres],
        "chover": hover,
    }


def _has_score(c: Cell) -> bool:
    return c.score is not None and not math.isnan(c.score)


def _fill_map(fig: BaseFigure, start: int, data: dict[str, Any], edges: np.ndarray) -> None:
    """Write one map panel's data into traces ``start .. start + bins + 2`` of ``fig``."""
    bins = len(edges) - 1
    for k in range(bins):
        t = fig.data[start + k]
        t.x, t.y = data["polys"][k]
        t.name = f"score {_fmt(edges[k])} – {_fmt(edges[k + 1])}"
    t = fig.data[start + bins]
    t.x, t.y = data["empty"]
    pts = fig.data[start + bins + 1]
    pts.x, pts.y = data["px"], data["py"]
    pts.hovertext, pts.customdata = data["pid"], data["pfull"]
    pts.marker.update(
        color=data["pc"],
        cmin=float(edges[0]),
        cmax=float(edges[-1]),
        colorbar={"tickvals": edges.tolist(), "ticktext": _tick_labels(edges)},
    )
    cen = fig.data[start + bins + 2]
    cen.x, cen.y = data["cx"], data["cy"]
    cen.customdata, cen.hovertext = data["cid"], data["chover"]


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


# -- comparison of archives -------------------------------------------------------------------


def comparison_figure(
    snaps: Mapping[str, MapSnapshot],
    curves: Mapping[str, pd.DataFrame] | None = None,
    *,
    bins: int = 8,
    colorscale: str = "Viridis",
    title: str | None = None,
) -> go.Figure:
    """Archive maps side by side on one color scale, and optionally best-score curves.

    Args:
        snaps: panel title -> map, one column each, in this order (e.g. ``{"Cluster-Elites":
            ..., "grid": ..., "greedy": ...}``).
        curves: name -> DataFrame with columns ``seq`` and ``best`` (e.g.
            ``timeline(run).frame``); drawn as step lines in a last panel.
        bins: score bins, as in :func:`archive_map_figure`.
        colorscale: a plotly named colorscale.
        title: figure title (none by default).
    """
    if not isinstance(snaps, Mapping) or not snaps:
        raise TypeError(
            f"snaps must be a non-empty Mapping of name -> MapSnapshot, got {_tname(snaps)}"
        )
    for name, s in snaps.items():
        _check_snap(s, f"snaps[{name!r}]")
    _check_bins(bins)
    if curves is not None:
        _check_curves(curves)
    colors = _bin_colors(colorscale, bins)
    n = len(snaps)
    cols = n + (curves is not None)
    subtitles = [_panel_title(name, s) for name, s in snaps.items()]
    if curves is not None:
        subtitles.append("<b>best score</b><br><sup>against evaluations</sup>")
    fig = make_subplots(rows=1, cols=cols, subplot_titles=subtitles, horizontal_spacing=0.07)
    edges = _edges([_map_scores(s) for s in snaps.values()], bins, None)
    for k, snap in enumerate(snaps.values(), start=1):
        ax = "" if k == 1 else str(k)
        start = len(fig.data)
        fig.add_traces(_map_skeleton(colors, showscale=k == 1, xaxis=f"x{ax}", yaxis=f"y{ax}"))
        _fill_map(fig, start, _map_data(snap, edges), edges)
        (x0, x1), (y0, y1) = snap.bounds
        fig.update_xaxes(
            _AXIS, row=1, col=k, range=[x0, x1], title_text=snap.axes[0], constrain="domain"
        )
        fig.update_yaxes(
            _AXIS,
            row=1,
            col=k,
            range=[y0, y1],
            title_text=snap.axes[1],
            constrain="domain",
            scaleanchor=f"x{ax}",
            scaleratio=_box_ratio(snap),
        )
    # one horizontal colorbar under the maps: it belongs to them, not to the curves panel
    first, last = fig.layout.xaxis.domain, fig.layout[f"xaxis{n if n > 1 else ''}"].domain
    fig.data[bins + 1].marker.colorbar.update(
        orientation="h",
        x=(first[0] + last[1]) / 2,
        xanchor="center",
        len=min(0.9, (last[1] - first[0]) * 0.8),
        y=-0.3,
        yanchor="top",
        thickness=12,
        title={"text": "score", "side": "right"},
    )
    if curves is not None:
        for name, df in curves.items():
            x, y = _steps(df["seq"].to_numpy(dtype=float), df["best"].to_numpy(dtype=float))
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="lines",
                    line={"shape": "hv", "width": 2},
                    name=str(name),
                    hovertemplate=f"{name}<br>evaluation %{{x}}<br>best %{{y:.6g}}<extra></extra>",
                ),
                row=1,
                col=cols,
            )
        fig.update_xaxes(_AXIS, row=1, col=cols, title_text="evaluations")
        fig.update_yaxes(_AXIS, row=1, col=cols, title_text="best score")
        dom = fig.layout[f"xaxis{cols}"].domain
        # inside the curves panel, bottom right: best-so-far curves rise, so it stays clear
        fig.update_layout(
            legend={
                "x": dom[1] - 0.01,
                "xanchor": "right",
                "y": 0.02,
                "yanchor": "bottom",
                "bgcolor": "rgba(255,255,255,0.8)",
            }
        )
    fig.update_layout(
        template=_TEMPLATE,
        width=360 * cols + 100,
        height=520,
        margin={"l": 60, "r": 30, "t": 110 if title else 80, "b": 130},
        hovermode="closest",
        showlegend=curves is not None,
        title={"text": title, "x": 0.02, "xanchor": "left"} if title else None,
        meta={"aster_nb": "comparison"},
    )
    return fig


def _panel_title(name: str, snap: MapSnapshot) -> str:
    n = len(snap.points)
    if snap.cells:
        filled = sum(c.elite_id is not None for c in snap.cells)
        sub = f"{filled}/{len(snap.cells)} cells filled · {n} programs · {snap.descriptor}"
    else:
        sub = f"{snap.archive}: no cells · {n} programs · {snap.descriptor}"
    return f"<b>{html.escape(str(name))}</b><br><sup>{sub}</sup>"


def _check_curves(curves: object) -> None:
    if not isinstance(curves, Mapping):
        raise TypeError(
            f"curves must be a Mapping of name -> DataFrame with columns seq and best, "
            f"got {_tname(curves)}"
        )
    for name, df in curves.items():
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"curves[{name!r}] must be a pandas DataFrame, got {_tname(df)}")
        missing = {"seq", "best"} - set(df.columns)
        if missing:
            raise ValueError(
                f"curves[{name!r}] needs columns seq and best; missing {sorted(missing)}"
                f" (has {list(df.columns)})"
            )
