"""Archive maps side by side on one color scale, and optionally best-score curves: how
archives (or runs) compare."""

from __future__ import annotations

import html
from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..snapshot import MapSnapshot
from .checks import check_bins, check_snap, tname
from .panel import box_ratio, cells_text, draw_map, map_edges, map_skeleton
from .style import (
    AXIS,
    MODEBAR,
    MODEBAR_ROOM,
    TEMPLATE,
    bin_colors,
    layout_size,
    step_corners,
)
from .style import (
    title as title_of,
)

PANEL_WIDTH = 360
"""Pixels per panel of an exported comparison (its suggested size, see
:func:`~aster_nb.figures.export`)."""


def comparison_figure(
    snaps: Mapping[str, MapSnapshot],
    curves: Mapping[str, pd.DataFrame] | None = None,
    *,
    bins: int = 8,
    colorscale: str = "Viridis",
    title: str | None = None,
    score_range: tuple[float, float] | None = None,
    width: int | None = None,
    height: int | None = 520,
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
        score_range: ``(low, high)`` of the one color scale; ``None``: the union of the
            maps' runs' score ranges (of their cells' scores for maps made by hand).
        width: pixels, for export; ``None`` (default) fills the notebook's output area.
            Exported without one, the figure is ``360`` pixels per panel wide.
        height: pixels (default 520).

    Raises:
        TypeError: ``snaps`` or ``curves`` of the wrong type.
        ValueError: a bad ``bins``, ``colorscale``, ``score_range``, ``width`` or
            ``height``, or curves without ``seq`` and ``best``.
    """
    if not isinstance(snaps, Mapping) or not snaps:
        raise TypeError(
            f"snaps must be a non-empty Mapping of name -> MapSnapshot, got {tname(snaps)}"
        )
    for name, s in snaps.items():
        check_snap(s, f"snaps[{name!r}]")
    check_bins(bins)
    if curves is not None:
        _check_curves(curves)
    colors = bin_colors(colorscale, bins)
    n = len(snaps)
    cols = n + (curves is not None)
    subtitles = [_panel_title(name, s) for name, s in snaps.items()]
    if curves is not None:
        subtitles.append("<b>best score</b><br><sup>against evaluations</sup>")
    fig = make_subplots(rows=1, cols=cols, subplot_titles=subtitles, horizontal_spacing=0.07)
    edges = map_edges(list(snaps.values()), bins, score_range)
    for k, snap in enumerate(snaps.values(), start=1):
        ax = "" if k == 1 else str(k)
        start = len(fig.data)
        fig.add_traces(map_skeleton(colors, showscale=k == 1, xaxis=f"x{ax}", yaxis=f"y{ax}"))
        draw_map(fig, start, snap, edges)
        (x0, x1), (y0, y1) = snap.bounds
        fig.update_xaxes(
            AXIS, row=1, col=k, range=[x0, x1], title_text=snap.axes[0], constrain="domain"
        )
        fig.update_yaxes(
            AXIS,
            row=1,
            col=k,
            range=[y0, y1],
            title_text=snap.axes[1],
            constrain="domain",
            scaleanchor=f"x{ax}",
            scaleratio=box_ratio(snap),
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
            x, y = step_corners(df["seq"].to_numpy(dtype=float), df["best"].to_numpy(dtype=float))
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
        fig.update_xaxes(AXIS, row=1, col=cols, title_text="evaluations")
        labels = {s.score_label for s in snaps.values()}
        label = labels.pop() if len(labels) == 1 else "score"
        fig.update_yaxes(AXIS, row=1, col=cols, title_text=f"best {label}")
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
        template=TEMPLATE,
        # the toolbar's room, the title, then the panels' two-line titles
        margin={"l": 60, "r": 30, "t": MODEBAR_ROOM + (90 if title else 60), "b": 130},
        hovermode="closest",
        showlegend=curves is not None,
        title=title_of(title),
        modebar=MODEBAR,
        # the size it exports at when none is given: a readable width per panel
        meta={"aster_nb": "comparison", "size": [PANEL_WIDTH * cols + 100, height or 520]},
    )
    fig.update_layout(**layout_size(width, height))
    return fig


def _panel_title(name: str, snap: MapSnapshot) -> str:
    n = len(snap.points)
    what = cells_text(snap)
    if not snap.cells:
        what = f"{snap.archive}: {what}"
    sub = f"{what} · {n} programs · {snap.descriptor}"
    return f"<b>{html.escape(str(name))}</b><br><sup>{sub}</sup>"


def _check_curves(curves: object) -> None:
    if not isinstance(curves, Mapping):
        raise TypeError(
            f"curves must be a Mapping of name -> DataFrame with columns seq and best, "
            f"got {tname(curves)}"
        )
    for name, df in curves.items():
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"curves[{name!r}] must be a pandas DataFrame, got {tname(df)}")
        missing = {"seq", "best"} - set(df.columns)
        if missing:
            raise ValueError(
                f"curves[{name!r}] needs columns seq and best; missing {sorted(missing)}"
                f" (has {list(df.columns)})"
            )
