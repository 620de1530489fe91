"""Best score against evaluations or wall time: per worker, overall with who set each new
best, the planner's, its rounds and merges, and the task's target and record."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.basedatatypes import BaseFigure

from ..snapshot import Timeline
from .checks import check_figure, check_timeline, check_x, figure_meta
from .style import (
    AXIS,
    MODEBAR,
    MODEBAR_ROOM,
    PLANNER_COLOR,
    SHORT,
    TEMPLATE,
    TIMELINE_X,
    fmt,
    layout_size,
    step_corners,
    worker_colors,
)
from .style import (
    title as title_of,
)

EXTRA = ("best", "planner", "new best", "merges", "target", "record")
"""The traces after the workers' lines, in order."""
ROUND_LABELS = 20
"""Rounds labelled at the top of the plot; with more, every k-th, so labels never collide."""
_BY_MERGE = "a planner's merge"  # who set a best that no worker made
_BY_START = "the initial program"
_CREDIT_COLORS = {_BY_MERGE: PLANNER_COLOR, _BY_START: "#999"}


# -- timelines --------------------------------------------------------------------------------


def timeline_figure(
    tl: Timeline,
    *,
    x: str = "seq",
    workers: Sequence[str] | None = None,
    title: str | None = "Best score",
    width: int | None = None,
    height: int | None = None,
) -> go.Figure:
    """Best score so far against evaluations or wall time, for a write-up or a dashboard.

    Drawn: one step line per worker (its own best so far, in its color); the best of all
    (black), with a marker at each new best in the color of the worker that set it (red:
    the planner, by a merge); the top planner's current best at each round's end; the
    merges planners made (triangles, at their scores); a dotted vertical line at each
    round's end; the task's ``target`` and ``record`` as horizontal lines, named in the
    legend (``record_source`` in its hover). The y axis is titled by the task's
    ``score_description``.

    Args:
        tl: from :func:`aster_nb.snapshot.timeline`.
        x: ``"seq"`` (evaluations) or ``"elapsed"`` (seconds since the first program).
        workers: the workers to draw a line for, one trace each in sorted order; ``None``:
            those in ``tl``. Pass every worker of the run (``snapshot.workers(run)``) when
            the figure will be updated as the run goes, since the traces are fixed here.
            Programs without a worker (the initial program, syntheses) count only toward
            ``"best"``.
        title: figure title, ``None`` for none.
        width: pixels, for export; ``None`` fills the notebook's output area.
        height: pixels; ``None``: plotly's default.

    Returns:
        A figure whose traces are the workers (sorted), then :data:`EXTRA`.

    Raises:
        TypeError: ``tl`` is not a Timeline, or ``workers`` not a sequence of str.
        ValueError: unknown ``x``, or a bad ``width`` or ``height``.
    """
    check_timeline(tl)
    check_x(x)
    if workers is None:
        names = sorted({str(w) for w in tl.frame["worker"]} - {""})
    else:
        if isinstance(workers, str) or not all(isinstance(w, str) for w in workers):
            raise TypeError(f"workers must be a sequence of str, got {workers!r}")
        names = sorted(set(workers) - {""})
    colors = worker_colors(names)
    traces: list[Any] = [
        go.Scattergl(
            x=np.empty(0, np.float32),
            y=np.empty(0),
            mode="lines",
            name=w,
            line={"shape": "hv", "width": 1.5, "color": colors[w]},
        )
        for w in names
    ]
    traces += [
        go.Scattergl(
            x=np.empty(0, np.float32),
            y=np.empty(0),
            mode="lines",
            name="best",
            line={"shape": "hv", "width": 3, "color": "#222"},
        ),
        go.Scatter(
            x=[],
            y=[],
            mode="lines+markers",
            name="planner",
            line={"shape": "hv", "width": 2, "dash": "dot", "color": PLANNER_COLOR},
            marker={"size": 8, "symbol": "diamond", "color": PLANNER_COLOR},
            hovertemplate="%{hovertext}<extra></extra>",
        ),
        go.Scatter(  # who set each new best: the marker has that worker's color
            x=[],
            y=[],
            mode="markers",
            name="new best (color: who set it)",
            marker={"size": 9, "line": {"width": 1.5, "color": "white"}},
            hovertemplate="%{hovertext}<extra></extra>",
        ),
        go.Scatter(
            x=[],
            y=[],
            mode="markers",
            name="merges",
            marker={
                "size": 8,
                "symbol": "triangle-up",
                "color": "rgba(214,39,40,0.25)",
                "line": {"width": 1, "color": PLANNER_COLOR},
            },
            hovertemplate="%{hovertext}<extra></extra>",
        ),
        go.Scatter(
            x=[],
            y=[],
            mode="lines",
            name="target",
            line={"width": 1.2, "dash": "dash", "color": "#2ca02c"},
            hovertemplate="%{hovertext}<extra></extra>",
        ),
        go.Scatter(
            x=[],
            y=[],
            mode="lines",
            name="record",
            line={"width": 1.2, "dash": "dashdot", "color": "#555"},
            hovertemplate="%{hovertext}<extra></extra>",
        ),
    ]
    fig = go.Figure(data=traces)
    fig.update_layout(
        template=TEMPLATE,
        # the legend goes under the plot: beside it, it takes half of a dashboard's column
        margin={"l": 70, "r": 30, "t": MODEBAR_ROOM + (40 if title else 10), "b": 110},
        hovermode="closest",
        title=title_of(title),
        modebar=MODEBAR,
        legend={
            "title": {"text": ""},
            "orientation": "h",
            "x": 0,
            "xanchor": "left",
            "y": -0.2,
            "yanchor": "top",
        },
        uirevision="timeline",
        meta={"aster_nb": "timeline", "workers": names},
    )
    fig.update_layout(**layout_size(width, height))
    fig.update_xaxes(AXIS)
    fig.update_yaxes(AXIS)
    timeline_update(fig, tl, x=x)
    return fig


def timeline_update(fig: BaseFigure, tl: Timeline, *, x: str = "seq") -> None:
    """Redraw ``fig`` (made by :func:`timeline_figure`) for ``tl``, in place.

    Raises:
        TypeError: wrong argument types.
        ValueError: ``x`` unknown, ``fig`` not a timeline figure, or ``tl`` has a worker the
            figure has no trace for (build it with ``workers=`` listing every worker).
    """
    check_figure(fig)
    check_timeline(tl)
    check_x(x)
    meta = figure_meta(fig, "timeline", "timeline_figure")
    names: list[str] = list(meta.get("workers", []))
    frame = tl.frame
    extra = sorted({str(w) for w in frame["worker"]} - {""} - set(names))
    if extra:
        raise ValueError(
            f"the timeline has workers {extra} this figure has no line for (it has {names});"
            " make it with timeline_figure(..., workers=snapshot.workers(run))"
        )
    if len(fig.data) != len(names) + len(EXTRA):
        raise ValueError(
            f"this timeline figure has {len(fig.data)} traces, expected "
            f"{len(names) + len(EXTRA)}: its traces were changed after timeline_figure made it"
        )
    xs = frame[x].to_numpy(dtype=float)
    x_hover = "evaluation %{x}" if x == "seq" else "%{x:.1f} s"
    at = "evaluation {:.0f}" if x == "seq" else "{:.1f} s"
    colors = worker_colors(names)
    trace = dict(zip([*names, *EXTRA], fig.data, strict=True))
    with fig.batch_update():
        workers_col = frame["worker"].to_numpy()
        wbest = frame["worker_best"].to_numpy(dtype=float)
        for w in names:
            mask = workers_col == w
            sx, sy = step_corners(xs[mask], wbest[mask])
            t = trace[w]
            t.x, t.y = sx.astype(np.float32), sy
            t.hovertemplate = f"{w}<br>{x_hover}<br>best %{{y:.6g}}<extra></extra>"
        best = frame["best"].to_numpy(dtype=float)
        sx, sy = step_corners(xs, best)
        t = trace["best"]
        t.x, t.y = sx.astype(np.float32), sy
        t.hovertemplate = f"best of all<br>{x_hover}<br>%{{y:.6g}}<extra></extra>"

        # the rows that raised the best of all, credited to whoever made them
        rise = _new_bests(best)
        ids = frame["id"].to_numpy()[rise]
        merged = set() if tl.merges is None else set(tl.merges["id"])
        by = [
            str(w) or (_BY_MERGE if i in merged else _BY_START)
            for w, i in zip(workers_col[rise], ids, strict=True)
        ]
        t = trace["new best"]
        t.x, t.y = xs[rise].tolist(), best[rise].tolist()
        t.marker.color = [colors.get(w) or _CREDIT_COLORS.get(w, PLANNER_COLOR) for w in by]
        t.hovertext = [
            f"new best {fmt(v)}<br>set by {w}<br>{at.format(px)}<br>program {str(i)[:SHORT]}"
            for v, w, px, i in zip(best[rise], by, xs[rise], ids, strict=True)
        ]

        plan = tl.planner
        t = trace["planner"]
        t.x = plan[x].to_numpy(dtype=float).tolist()
        t.y = [None if not math.isfinite(v) else v for v in plan["score"].to_numpy(dtype=float)]
        t.hovertext = [
            f"planner, round {r}<br>best {fmt(s)}<br>program {str(b)[:SHORT]}"
            for r, s, b in zip(plan["round"], plan["score"], plan["best_id"], strict=True)
        ]

        merges = tl.merges
        ok = (
            merges[np.isfinite(merges["score"].to_numpy(dtype=float))]
            if merges is not None
            else None
        )
        t = trace["merges"]
        t.x = [] if ok is None else ok[x].to_numpy(dtype=float).tolist()
        t.y = [] if ok is None else ok["score"].to_numpy(dtype=float).tolist()
        t.hovertext = (
            []
            if ok is None
            else [
                f"merge, round {r}<br>score {fmt(s)}<br>program {str(i)[:SHORT]}"
                for r, s, i in zip(ok["round"], ok["score"], ok["id"], strict=True)
            ]
        )

        span = [float(np.nanmin(xs)), float(np.nanmax(xs))] if len(xs) else []
        for name, value, about in (
            ("target", tl.target, "the task's target"),
            ("record", tl.record, tl.record_source or "the best known score"),
        ):
            t = trace[name]
            show = value is not None and bool(span)
            t.x = span if show else []
            t.y = [value, value] if show else []
            t.name = f"{name} {fmt(value)}" if value is not None else name
            # within batch_update a trace reads back its old values: count from `show`
            t.hovertext = [f"{name} {fmt(value)}<br>{about}"] * (2 if show else 0)
            t.showlegend = value is not None

        fig.layout.shapes, fig.layout.annotations = _round_marks(
            plan[x].to_numpy(dtype=float), plan["round"].to_numpy()
        )
        fig.layout.xaxis.title.text = TIMELINE_X[x]
        fig.layout.yaxis.title.text = f"best {tl.score_label}"


def _new_bests(best: np.ndarray) -> np.ndarray:
    """Indices where the best so far rose (its first finite value included)."""
    finite = np.isfinite(best)
    prev = np.concatenate([[-np.inf], np.where(finite, best, -np.inf)[:-1]])
    prev = np.maximum.accumulate(prev)
    return np.flatnonzero(finite & (best > prev))


def _round_marks(
    ends: np.ndarray, rounds: np.ndarray
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A dotted vertical line at each round's end, and the round's number at the top of
    the plot (every k-th number beyond :data:`ROUND_LABELS` rounds)."""
    step = max(1, math.ceil(len(ends) / ROUND_LABELS))
    shapes = [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": float(e),
            "x1": float(e),
            "y0": 0,
            "y1": 1,
            "line": {"color": "rgba(0,0,0,0.25)", "width": 1, "dash": "dot"},
            "layer": "below",
        }
        for e in ends
    ]
    labels = [
        {
            "x": float(e),
            "xref": "x",
            "y": 1,
            "yref": "paper",
            "yanchor": "bottom",
            "text": f"end of round {r}" if k == 0 else str(r),
            "showarrow": False,
            "font": {"size": 10, "color": "#777"},
        }
        for k, (e, r) in enumerate(zip(ends, rounds, strict=True))
        if k % step == 0
    ]
    return shapes, labels
