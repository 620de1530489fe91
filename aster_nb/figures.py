"""Plotly figures of a run, for write-ups and for the dashboard, which updates them in place.

Every function takes the records of :mod:`aster_nb.snapshot`, so a live run, a finished
one and a replayed one draw alike. Two figures have a fixed trace layout, so a
``go.FigureWidget`` made from them can be redrawn by rewriting trace data instead of being
rebuilt (:func:`archive_map_update`, :func:`timeline_update`):

* archive map, ``bins`` + 3 traces: ``[0, bins)`` one filled ``Scatter`` per score bin
  holding its cells' polygons as float32 arrays, rings separated by NaN (a Voronoi map of
  1,000 cells is then a handful of SVG paths, not 1,000 traces or shapes); ``bins`` the empty cells (grey);
  ``bins + 1`` every program of the worker as ``Scattergl`` markers with float32
  coordinates, carrying the colorbar; ``bins + 2`` the cell centres, whose ``customdata``
  is the elite id (``None`` for an empty cell) and whose hover shows id and score.
* timeline: one ``Scattergl`` best-so-far line per worker (sorted), then ``"best"`` (all
  workers), then ``"planner"`` (the top planner's best at each round end, a step line).

:func:`export` writes ``.html`` (self-contained) anywhere and ``.png`` / ``.svg`` through
a headless Chromium, offline: the page renders with the plotly.js bundled in the plotly
package and ``Plotly.toImage``; no kaleido, no network.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
import plotly.offline
from plotly.basedatatypes import BaseFigure
from plotly.subplots import make_subplots

from .program import Program
from .snapshot import Cell, MapSnapshot, Timeline

__all__ = [
    "ExportError",
    "archive_map_figure",
    "archive_map_update",
    "comparison_figure",
    "export",
    "find_chromium",
    "lineage_figure",
    "timeline_figure",
    "timeline_update",
]

_EMPTY_FILL = "#e3e3e3"
_CELL_EDGE = "white"
_TEMPLATE = "plotly_white"
_SHORT = 12  # id characters shown in hovers: 16 hex digits are unique, 12 read better
_TIMELINE_X = {"seq": "evaluations", "elapsed": "wall time (s)"}
_AXIS = {
    "showgrid": False,
    "zeroline": False,
    "showline": True,
    "mirror": True,
    "linecolor": "#444",
    "ticks": "outside",
}


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
        margin={"l": 70, "r": 30, "t": 60, "b": 60},
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
    return f"{snap.worker} · {snap.archive} archive · {snap.evaluations} evaluations"


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
    cells = [
        go.Scatter(
            x=[],
            y=[],
            mode="lines",
            fill="toself",
            fillcolor=c,
            line={"color": _CELL_EDGE, "width": 0.6},
            hoverinfo="skip",
            name=f"bin {i}",
            **ax,
        )
        for i, c in enumerate(colors)
    ]
    empty = go.Scatter(
        x=[],
        y=[],
        mode="lines",
        fill="toself",
        fillcolor=_EMPTY_FILL,
        line={"color": _CELL_EDGE, "width": 0.6},
        hoverinfo="skip",
        name="empty cells",
        **ax,
    )
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
    return [*cells, empty, programs, centres]


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
        sub = f"{filled}/{len(snap.cells)} cells filled · {n} programs"
    else:
        sub = f"{snap.archive}: no cells · {n} programs"
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


# -- timelines --------------------------------------------------------------------------------


def timeline_figure(
    tl: Timeline,
    *,
    x: str = "seq",
    workers: Sequence[str] | None = None,
    title: str | None = "Best score",
) -> go.Figure:
    """Best score so far against evaluations or wall time: per worker, overall, planner.

    Args:
        tl: from :func:`aster_nb.snapshot.timeline`.
        x: ``"seq"`` (evaluations) or ``"elapsed"`` (seconds since the first program).
        workers: the workers to draw a line for, one trace each in sorted order; ``None``:
            those in ``tl``. Pass every worker of the run (``snapshot.workers(run)``) when
            the figure will be updated as the run goes, since the traces are fixed here.
            Programs without a worker (the initial program, syntheses) count only toward
            ``"best"``.
        title: figure title, ``None`` for none.

    Returns:
        A figure whose traces are the workers (sorted), ``"best"``, ``"planner"``.
    """
    _check_timeline(tl)
    _check_x(x)
    if workers is None:
        names = sorted({str(w) for w in tl.frame["worker"]} - {""})
    else:
        if isinstance(workers, str) or not all(isinstance(w, str) for w in workers):
            raise TypeError(f"workers must be a sequence of str, got {workers!r}")
        names = sorted(set(workers) - {""})
    traces: list[Any] = [
        go.Scattergl(
            x=np.empty(0, np.float32),
            y=np.empty(0),
            mode="lines",
            name=w,
            line={"shape": "hv", "width": 1.5},
            hovertemplate=f"{w}<br>%{{x}}<br>best %{{y:.6g}}<extra></extra>",
        )
        for w in names
    ]
    traces.append(
        go.Scattergl(
            x=np.empty(0, np.float32),
            y=np.empty(0),
            mode="lines",
            name="best",
            line={"shape": "hv", "width": 3, "color": "#222"},
            hovertemplate="best of all<br>%{x}<br>%{y:.6g}<extra></extra>",
        )
    )
    traces.append(
        go.Scatter(
            x=[],
            y=[],
            mode="lines+markers",
            name="planner",
            line={"shape": "hv", "width": 2, "dash": "dot", "color": "#d62728"},
            marker={"size": 8, "symbol": "diamond", "color": "#d62728"},
            hovertemplate="%{hovertext}<extra></extra>",
        )
    )
    fig = go.Figure(data=traces)
    fig.update_layout(
        template=_TEMPLATE,
        margin={"l": 70, "r": 30, "t": 60 if title else 30, "b": 60},
        hovermode="closest",
        title={"text": title, "x": 0.02, "xanchor": "left"} if title else None,
        legend={"title": {"text": ""}},
        uirevision="timeline",
        meta={"aster_nb": "timeline", "workers": names},
    )
    fig.update_xaxes(_AXIS)
    fig.update_yaxes(_AXIS, title_text="best score")
    timeline_update(fig, tl, x=x)
    return fig


def timeline_update(fig: BaseFigure, tl: Timeline, *, x: str = "seq") -> None:
    """Redraw ``fig`` (made by :func:`timeline_figure`) for ``tl``, in place.

    Raises:
        TypeError: wrong argument types.
        ValueError: ``x`` unknown, ``fig`` not a timeline figure, or ``tl`` has a worker the
            figure has no trace for (build it with ``workers=`` listing every worker).
    """
    _check_figure(fig)
    _check_timeline(tl)
    _check_x(x)
    meta = _meta(fig, "timeline", "timeline_figure")
    names: list[str] = list(meta.get("workers", []))
    frame = tl.frame
    extra = sorted({str(w) for w in frame["worker"]} - {""} - set(names))
    if extra:
        raise ValueError(
            f"the timeline has workers {extra} this figure has no line for (it has {names});"
            " make it with timeline_figure(..., workers=snapshot.workers(run))"
        )
    if len(fig.data) != len(names) + 2:
        raise ValueError(
            f"this timeline figure has {len(fig.data)} traces, expected {len(names) + 2}:"
            " its traces were changed after timeline_figure made it"
        )
    xs = frame[x].to_numpy(dtype=float)
    fmt = "evaluation %{x}" if x == "seq" else "%{x:.1f} s"
    with fig.batch_update():
        workers_col = frame["worker"].to_numpy()
        wbest = frame["worker_best"].to_numpy(dtype=float)
        for k, w in enumerate(names):
            mask = workers_col == w
            sx, sy = _steps(xs[mask], wbest[mask])
            t = fig.data[k]
            t.x, t.y = sx.astype(np.float32), sy
            t.hovertemplate = f"{w}<br>{fmt}<br>best %{{y:.6g}}<extra></extra>"
        sx, sy = _steps(xs, frame["best"].to_numpy(dtype=float))
        best = fig.data[len(names)]
        best.x, best.y = sx.astype(np.float32), sy
        best.hovertemplate = f"best of all<br>{fmt}<br>%{{y:.6g}}<extra></extra>"
        plan = tl.planner
        pl = fig.data[len(names) + 1]
        pl.x = plan[x].to_numpy(dtype=float).tolist()
        pl.y = [None if not math.isfinite(v) else v for v in plan["score"].to_numpy(dtype=float)]
        pl.hovertext = [
            f"planner, round {r}<br>best {_fmt(s)}<br>program {str(b)[:_SHORT]}"
            for r, s, b in zip(plan["round"], plan["score"], plan["best_id"], strict=True)
        ]
        fig.layout.xaxis.title.text = _TIMELINE_X[x]


def _steps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The corners of a best-so-far step line: where it changes, plus its last point.

    A run of 10,000 evaluations improves a few dozen times; drawing only those keeps the
    widget's state (and its redraw messages) small.
    """
    y = np.asarray(y, dtype=float)
    finite = np.isfinite(y)
    if not finite.any():
        return x[:0], y[:0]
    # a failed evaluation leaves NaN in a best-so-far column; the best still stands there
    last = np.maximum.accumulate(np.where(finite, np.arange(len(y)), 0))
    start = int(np.argmax(finite))
    x, y = x[start:], y[last][start:]
    change = np.ones(len(y), dtype=bool)
    change[1:] = y[1:] != y[:-1]
    change[-1] = True
    return x[change], y[change]


# -- lineage ----------------------------------------------------------------------------------

_ORIGIN_SYMBOL = {
    "initial": "star",
    "edit": "circle",
    "rewrite": "square",
    "crossover": "diamond",
    "merge": "triangle-up",
}


def lineage_figure(programs: Sequence[Program], *, title: str | None = None) -> go.Figure:
    """Score along a program's ancestry, oldest first (from :func:`aster_nb.snapshot.lineage`).

    One point per generation, shaped by how it was made (star: initial, circle: edit,
    square: rewrite, diamond: crossover, triangle: merge); hover shows id, origin, worker,
    round and score. Programs without a score (not ``ok``) leave a gap.
    """
    if isinstance(programs, str | bytes) or not isinstance(programs, Sequence):
        raise TypeError(f"programs must be a list of Program, got {_tname(programs)}")
    if not programs:
        raise ValueError("programs is empty: pass snapshot.lineage(run, id), root first")
    for i, p in enumerate(programs):
        if not isinstance(p, Program):
            raise TypeError(f"programs[{i}] must be a Program, got {_tname(p)}")
    y = [p.score if p.score is not None and math.isfinite(p.score) else None for p in programs]
    hover = [
        f"generation {i}<br>program {p.id[:_SHORT]}<br>origin {p.origin}"
        f"<br>worker {p.worker or '–'}<br>round {p.round}<br>"
        + (f"score {_fmt(p.score)}" if p.score is not None else f"status {p.status}")
        for i, p in enumerate(programs)
    ]
    fig = go.Figure(
        go.Scatter(
            x=list(range(len(programs))),
            y=y,
            mode="lines+markers",
            name="lineage",
            customdata=[p.id for p in programs],
            hovertext=hover,
            hovertemplate="%{hovertext}<extra></extra>",
            line={"width": 2, "color": "#4c72b0"},
            marker={
                "size": 10,
                "symbol": [_ORIGIN_SYMBOL.get(p.origin, "circle") for p in programs],
                "color": "#4c72b0",
                "line": {"width": 1, "color": "white"},
            },
        )
    )
    last = programs[-1]
    fig.update_layout(
        template=_TEMPLATE,
        margin={"l": 70, "r": 30, "t": 60, "b": 60},
        title={
            "text": title or f"Lineage of {last.id[:_SHORT]} · {len(programs)} generations",
            "x": 0.02,
            "xanchor": "left",
        },
        showlegend=False,
        meta={"aster_nb": "lineage"},
    )
    fig.update_xaxes(_AXIS, title_text="generation", dtick=1 if len(programs) <= 20 else None)
    fig.update_yaxes(_AXIS, title_text="score")
    return fig


# -- export -----------------------------------------------------------------------------------


class ExportError(RuntimeError):
    """A figure could not be exported (no Chromium, or the browser failed)."""


_NO_CHROMIUM = (
    "PNG and SVG export need a Chromium: install it (Debian/Ubuntu: `apt-get install "
    "chromium`) or set ASTER_NB_CHROMIUM to its executable. Export to .html works without it."
)
_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# A headless browser that touches nothing outside the page. SwiftShader is software WebGL:
# Scattergl traces render with it without a GPU ("unsafe" is about untrusted web content;
# this page is ours and loads nothing from the network).
_CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
)
_RESULT = re.compile(r"ASTER_EXPORT_(OK|ERR):([^<]*)")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def find_chromium() -> Path:
    """The Chromium used for PNG/SVG: ``$ASTER_NB_CHROMIUM``, else the first of chromium,
    chromium-browser, google-chrome on ``PATH``.

    Raises:
        ExportError: none found, or ``ASTER_NB_CHROMIUM`` is not an executable.
    """
    env = os.environ.get("ASTER_NB_CHROMIUM")
    if env:
        p = Path(env).expanduser()
        if p.is_file() and os.access(p, os.X_OK):
            return p
        raise ExportError(f"ASTER_NB_CHROMIUM={env!r} is not an executable file. {_NO_CHROMIUM}")
    for name in _CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ExportError(
        f"no Chromium found on PATH (looked for {', '.join(_CHROMIUM_NAMES)}). " + _NO_CHROMIUM
    )


def export(
    fig: BaseFigure,
    path: str | os.PathLike[str],
    *,
    width: int | None = None,
    height: int | None = None,
    scale: float = 2,
    timeout: float = 120.0,
) -> Path:
    """Write ``fig`` to ``path``, the format chosen by its suffix.

    Args:
        fig: a ``go.Figure`` or ``go.FigureWidget``.
        path: ``.html`` (self-contained: plotly.js is inlined, it opens offline), ``.png``
            or ``.svg`` (rendered by a headless Chromium, see :func:`find_chromium`).
            Missing parent folders are created.
        width: image width in CSS pixels (PNG/SVG); default: the figure's layout width,
            else 900. HTML stays responsive.
        height: image height; default: the figure's layout height, else 600.
        scale: PNG pixels per CSS pixel (2 is print-sharp); the PNG is ``width * scale``
            pixels wide.
        timeout: seconds to wait for the browser.

    Returns:
        The path written.

    Raises:
        TypeError: ``fig`` is not a plotly figure.
        ValueError: unknown suffix, or a non-positive size.
        ExportError: PNG/SVG without a Chromium, or the browser failed to render.

    Runs the browser as a blocking subprocess (about 1-2 s), so it works the same from a
    script and from a notebook cell inside a running event loop.
    """
    _check_figure(fig)
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in (".html", ".png", ".svg"):
        raise ValueError(f"cannot export to {out.name!r}: the suffix must be .html, .png or .svg")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".html":
        fig.write_html(out, include_plotlyjs=True, full_html=True)
        return out
    w = _size(width, fig.layout.width, 900, "width")
    h = _size(height, fig.layout.height, 600, "height")
    if not (isinstance(scale, int | float) and not isinstance(scale, bool) and scale > 0):
        raise ValueError(f"scale must be a number > 0, got {scale!r}")
    data = _render(fig, suffix[1:], w, h, float(scale), timeout)
    if suffix == ".png":
        _check_png(data, round(w * scale), round(h * scale))
    elif not data.lstrip().startswith(b"<svg"):
        raise ExportError(f"Chromium returned no SVG (starts with {data[:40]!r})")
    out.write_bytes(data)
    return out


def _size(given: int | None, layout: Any, default: int, name: str) -> int:
    v = given if given is not None else (layout if layout is not None else default)
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise ValueError(f"{name} must be a positive number of pixels, got {v!r}")
    return int(v)


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><script src="plotly.min.js"></script>
<script src="figure.js"></script></head>
<body><pre id="out"></pre><div id="plot"></div><script>
function done(s) {{ document.getElementById("out").textContent = s; }}
try {{
  Plotly.toImage(ASTER_FIGURE, {opts})
    .then(function (url) {{ done("ASTER_EXPORT_OK:" + url); }},
          function (e) {{ done("ASTER_EXPORT_ERR:" + (e && e.message || e)); }});
}} catch (e) {{ done("ASTER_EXPORT_ERR:" + e.message); }}
</script></body></html>
"""


def _render(
    fig: BaseFigure, fmt: str, width: int, height: int, scale: float, timeout: float
) -> bytes:
    browser = find_chromium()
    with tempfile.TemporaryDirectory(prefix="aster-export-") as tmp:
        root = Path(tmp)
        # plotly.js and the figure go in files, not inline, so the dumped DOM stays small
        (root / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
        (root / "figure.js").write_text(f"var ASTER_FIGURE = {fig.to_json()};", encoding="utf-8")
        opts = json.dumps({"format": fmt, "width": width, "height": height, "scale": scale})
        page = root / "page.html"
        page.write_text(_PAGE.format(opts=opts), encoding="utf-8")
        cmd = [
            str(browser),
            *_CHROMIUM_FLAGS,
            f"--user-data-dir={root / 'profile'}",
            # virtual time runs ahead while the page idles, so a long budget costs nothing
            # once the image is done; it only bounds a page that never finishes
            "--virtual-time-budget=30000",
            "--dump-dom",
            page.as_uri(),
        ]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its renderer and GPU children go with it on a timeout
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ExportError(f"Chromium ({browser}) did not render within {timeout} s") from None
    text = stdout.decode("utf-8", "replace")
    m = _RESULT.search(text)
    if m is None:
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise ExportError(
            f"Chromium ({browser}) exited with code {proc.returncode} without an image; "
            f"its last messages: {' | '.join(tail) or '(none)'}"
        )
    payload = html.unescape(m.group(2))
    if m.group(1) == "ERR":
        raise ExportError(f"plotly.js could not render the figure: {payload}")
    head, _, body = payload.partition(",")
    if head.endswith(";base64"):
        return base64.b64decode(body)
    return urllib.parse.unquote(body).encode("utf-8")


def _check_png(data: bytes, width: int, height: int) -> None:
    if data[:8] != _PNG_MAGIC or data[12:16] != b"IHDR":
        raise ExportError(f"Chromium returned no PNG (starts with {data[:16]!r})")
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if (w, h) != (width, height):
        raise ExportError(f"the PNG is {w} x {h} pixels, expected {width} x {height}")


# -- shared checks and helpers ----------------------------------------------------------------


def _tname(x: object) -> str:
    return type(x).__name__


def _check_snap(snap: object, what: str = "snap") -> None:
    if not isinstance(snap, MapSnapshot):
        raise TypeError(
            f"{what} must be an aster_nb.snapshot.MapSnapshot (from map_snapshot(run, worker)),"
            f" got {_tname(snap)}"
        )


def _check_timeline(tl: object) -> None:
    if not isinstance(tl, Timeline):
        raise TypeError(
            f"tl must be an aster_nb.snapshot.Timeline (from timeline(run)), got {_tname(tl)}"
        )


def _check_figure(fig: object) -> None:
    if not isinstance(fig, BaseFigure):
        raise TypeError(f"fig must be a plotly go.Figure or go.FigureWidget, got {_tname(fig)}")


def _check_bins(bins: object) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int):
        raise TypeError(f"bins must be an int, got {_tname(bins)}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")


def _check_x(x: object) -> None:
    if x not in _TIMELINE_X:
        raise ValueError(f"x must be one of {sorted(_TIMELINE_X)}, got {x!r}")


def _check_range(r: object) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in r)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise TypeError(f"score_range must be a pair of numbers (low, high), got {r!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"score_range must be finite with low < high, got {r!r}")
    return lo, hi


def _meta(fig: BaseFigure, kind: str, maker: str) -> dict[str, Any]:
    meta = fig.layout.meta
    if not isinstance(meta, dict) or meta.get("aster_nb") != kind:
        raise ValueError(f"this figure was not made by {maker}(); make it with {maker} first")
    return meta


def _bin_colors(colorscale: str, bins: int) -> list[str]:
    if not isinstance(colorscale, str):
        raise TypeError(f"colorscale must be the name of a plotly colorscale, got {colorscale!r}")
    try:
        scale = plotly.colors.get_colorscale(colorscale)
    except Exception as e:
        raise ValueError(
            f"unknown colorscale {colorscale!r}; use a plotly named scale such as "
            f"'Viridis', 'Cividis' or 'Plasma' ({e})"
        ) from None
    return plotly.colors.sample_colorscale(scale, [(k + 0.5) / bins for k in range(bins)])


def _stepped(colors: list[str]) -> list[list[Any]]:
    """A colorscale of flat bands, one per bin, so the colorbar reads as the cells do."""
    n = len(colors)
    out: list[list[Any]] = []
    for k, c in enumerate(colors):
        out += [[k / n, c], [(k + 1) / n, c]]
    return out


def _tick_labels(edges: np.ndarray) -> list[str]:
    """The shortest labels (3 to 8 significant digits) that tell every edge apart."""
    for digits in range(3, 9):
        labels = [f"{e:.{digits}g}" for e in edges]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.6g}"
