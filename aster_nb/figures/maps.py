"""Archive maps: a worker's archive as a Voronoi map, drawn as one filled trace per score
bin, and redrawn in place."""

from __future__ import annotations

import html
import textwrap

import plotly.graph_objects as go
from plotly.basedatatypes import BaseFigure

from ..snapshot import MapSnapshot
from .checks import check_bins, check_figure, check_snap, figure_meta
from .panel import box_ratio, cells_text, draw_map, map_edges, map_skeleton
from .style import AXIS, MODEBAR, TEMPLATE, bin_colors, layout_size, title, title_margin

NOTE_WIDTH = 72
"""Characters per line of a map's note (the subtitle): a line fits a 480-pixel figure."""

# -- archive maps -----------------------------------------------------------------------------


def archive_map_figure(
    snap: MapSnapshot,
    *,
    bins: int = 8,
    colorscale: str = "Viridis",
    title: str | None = None,
    score_range: tuple[float, float] | None = None,
    width: int | None = None,
    height: int | None = None,
) -> go.Figure:
    """A worker's archive: cells colored by their elite's score, its programs on top.

    Args:
        snap: from :func:`aster_nb.snapshot.map_snapshot`.
        bins: number of score bins (colors) the cells are grouped into, ``>= 1``.
        colorscale: a plotly named colorscale, e.g. ``"Viridis"``, ``"Cividis"``.
        title: the figure title; ``None`` names worker, archive, evaluations and the
            archive's cells filled, and is kept current by :func:`archive_map_update`.
        score_range: ``(low, high)`` of the color scale; ``None``: the whole run's range
            (:attr:`~aster_nb.snapshot.MapSnapshot.score_range`), so a color means the
            same score for every worker and in every frame of a replay (for a snapshot
            made by hand without one: its cells' scores, else its programs'). Fix it to
            compare runs on one scale.
        width: pixels, for export; ``None`` fills the notebook's output area.
        height: pixels; ``None``: plotly's default.

    Returns:
        A ``go.Figure`` with ``bins + 3`` traces (see the module docs); wrap it in
        ``go.FigureWidget`` to update it in place.

    Raises:
        ValueError: a bad ``bins``, ``colorscale``, ``score_range``, ``width`` or ``height``.
    """
    check_snap(snap)
    check_bins(bins)
    colors = bin_colors(colorscale, bins)
    fig = go.Figure(data=map_skeleton(colors, showscale=True))
    fig.update_layout(
        template=TEMPLATE,
        # room for the toolbar, then the title and the note under it
        margin={"l": 70, "r": 30, "t": title_margin("note"), "b": 60},
        modebar=MODEBAR,
        hovermode="closest",
        showlegend=False,
        meta={
            "aster_nb": "archive_map",
            "bins": bins,
            "colorscale": colorscale,
            "title": title,
        },
    )
    fig.update_layout(**layout_size(width, height))
    fig.update_xaxes(**AXIS, constrain="domain")
    fig.update_yaxes(**AXIS, constrain="domain", scaleanchor="x")
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
        score_range: as in :func:`archive_map_figure`; ``None``: the run's range.

    Raises:
        TypeError: ``fig`` is not a plotly figure or ``snap`` not a ``MapSnapshot``.
        ValueError: ``fig`` was not made by :func:`archive_map_figure` with these ``bins``.
    """
    check_figure(fig)
    check_snap(snap)
    meta = figure_meta(fig, "archive_map", "archive_map_figure")
    if bins is None:
        bins = int(meta.get("bins", 0))
    check_bins(bins)
    if meta.get("bins") != bins or len(fig.data) != bins + 3:
        raise ValueError(
            f"this archive map was made with bins={meta.get('bins')} ({len(fig.data)} traces);"
            f" it cannot be updated with bins={bins}: pass the same bins"
        )
    edges = map_edges([snap], bins, score_range)
    text = meta.get("title") or _map_title(snap)
    with fig.batch_update():
        draw_map(fig, 0, snap, edges)
        (x0, x1), (y0, y1) = snap.bounds
        fig.layout.xaxis.update(range=[x0, x1], title_text=snap.axes[0])
        fig.layout.yaxis.update(range=[y0, y1], title_text=snap.axes[1], scaleratio=box_ratio(snap))
        note = _note(snap)
        fig.layout.title = title(text, note)
        fig.layout.margin.t = title_margin(note)
        fig.data[bins + 1].marker.colorbar.title.text = snap.score_label
        # a user's zoom survives redraws of one worker and resets on a switch to another
        fig.layout.uirevision = snap.worker


def _map_title(snap: MapSnapshot) -> str:
    return (
        f"{snap.worker} · {snap.archive} archive · {snap.evaluations} evaluations · "
        f"{cells_text(snap)}"
    )


def _note(snap: MapSnapshot) -> str:
    """What the axes are: the descriptor, its dimensions and the variance the plane
    shows, in lines that fit a map half a notebook wide (the dashboard's)."""
    return "<br>".join(html.escape(line) for line in textwrap.wrap(snap.note, NOTE_WIDTH))
