"""Best score against evaluations or wall time: per worker, overall, and the planner's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.basedatatypes import BaseFigure

from ..snapshot import Timeline
from .checks import check_figure, check_timeline, check_x, figure_meta
from .style import AXIS, SHORT, TEMPLATE, TIMELINE_X, fmt, step_corners

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
    check_timeline(tl)
    check_x(x)
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
        template=TEMPLATE,
        margin={"l": 70, "r": 30, "t": 60 if title else 30, "b": 60},
        hovermode="closest",
        title={"text": title, "x": 0.02, "xanchor": "left"} if title else None,
        legend={"title": {"text": ""}},
        uirevision="timeline",
        meta={"aster_nb": "timeline", "workers": names},
    )
    fig.update_xaxes(AXIS)
    fig.update_yaxes(AXIS, title_text="best score")
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
    if len(fig.data) != len(names) + 2:
        raise ValueError(
            f"this timeline figure has {len(fig.data)} traces, expected {len(names) + 2}:"
            " its traces were changed after timeline_figure made it"
        )
    xs = frame[x].to_numpy(dtype=float)
    x_hover = "evaluation %{x}" if x == "seq" else "%{x:.1f} s"
    with fig.batch_update():
        workers_col = frame["worker"].to_numpy()
        wbest = frame["worker_best"].to_numpy(dtype=float)
        for k, w in enumerate(names):
            mask = workers_col == w
            sx, sy = step_corners(xs[mask], wbest[mask])
            t = fig.data[k]
            t.x, t.y = sx.astype(np.float32), sy
            t.hovertemplate = f"{w}<br>{x_hover}<br>best %{{y:.6g}}<extra></extra>"
        sx, sy = step_corners(xs, frame["best"].to_numpy(dtype=float))
        best = fig.data[len(names)]
        best.x, best.y = sx.astype(np.float32), sy
        best.hovertemplate = f"best of all<br>{x_hover}<br>%{{y:.6g}}<extra></extra>"
        plan = tl.planner
        pl = fig.data[len(names) + 1]
        pl.x = plan[x].to_numpy(dtype=float).tolist()
        pl.y = [None if not math.isfinite(v) else v for v in plan["score"].to_numpy(dtype=float)]
        pl.hovertext = [
            f"planner, round {r}<br>best {fmt(s)}<br>program {str(b)[:SHORT]}"
            for r, s, b in zip(plan["round"], plan["score"], plan["best_id"], strict=True)
        ]
        fig.layout.xaxis.title.text = TIMELINE_X[x]
