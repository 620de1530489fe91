"""The look the figures share: template, axes, colors, number and id formats, step lines.

Public within :mod:`aster_nb.figures` so every figure module (and a new one) draws alike:
change the template or the axis style here and every figure follows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.colors

__all__ = [
    "AXIS",
    "CELL_EDGE",
    "EMPTY_CENTRE",
    "EMPTY_FILL",
    "FILLED_CENTRE",
    "MODEBAR",
    "MODEBAR_ROOM",
    "PLANNER_COLOR",
    "SHORT",
    "TEMPLATE",
    "TIMELINE_X",
    "bin_colors",
    "fmt",
    "layout_size",
    "step_corners",
    "stepped",
    "tick_labels",
    "title",
    "title_margin",
    "worker_colors",
]

EMPTY_FILL = "#f4f4f4"
"""Fill of an archive cell without an elite: barely off the white background, so the eye
goes to the cells that hold programs (a large empty Voronoi cell at the map's edge would
otherwise outweigh them)."""
FILLED_CENTRE = "rgba(30,30,30,0.45)"
"""A filled cell's centre marker (the click target that shows its elite)."""
EMPTY_CENTRE = "rgba(0,0,0,0)"
"""An empty cell's centre: invisible, still hovered ("empty")."""
PLANNER_COLOR = "#d62728"
"""The planner's line and the merges it made; no worker gets this color."""
MODEBAR_ROOM = 30
"""Pixels above a figure's title: plotly's toolbar (modebar) sits in the top right corner
of the figure, over the title when the title is long; a title starting this far down
stays clear of it."""
MODEBAR = {"remove": ["lasso2d", "select2d"], "orientation": "h"}
"""The toolbar: zoom, pan, reset and download; no lasso or box select, which select
nothing here and only widen the toolbar."""
CELL_EDGE = "white"
"""Outline of the archive cells."""
TEMPLATE = "plotly_white"
"""The plotly template of every figure."""
SHORT = 12
"""Id characters shown in hovers: 16 hex digits are unique, 12 read better."""
TIMELINE_X = {"seq": "evaluations", "elapsed": "wall time (s)"}
"""A timeline's x axes: column -> axis title."""
AXIS = {
    "showgrid": False,
    "zeroline": False,
    "showline": True,
    "mirror": True,
    "linecolor": "#444",
    "ticks": "outside",
}
"""Axis style of every figure: a framed plot without grid lines."""


def title(text: str | None, subtitle: str = "") -> dict[str, Any] | None:
    """A figure's title, left-aligned and :data:`MODEBAR_ROOM` below the top, so the
    toolbar never covers it; ``None`` for none. Further lines go in ``subtitle``: plotly
    places a title of several lines by its first, so a ``<br>`` in ``text`` would lift it
    back under the toolbar. The top margin must hold both (:func:`title_margin`)."""
    if not text:
        return None
    out: dict[str, Any] = {
        "text": text,
        "x": 0.02,
        "xanchor": "left",
        "yref": "container",
        "y": 1.0,
        "yanchor": "top",
        "pad": {"t": MODEBAR_ROOM},
    }
    if subtitle:
        out["subtitle"] = {"text": subtitle}
    return out


def title_margin(subtitle: str = "") -> int:
    """The top margin, in pixels, that holds the toolbar's row, a title and ``subtitle``
    (its ``<br>``-separated lines) above the plot."""
    lines = subtitle.count("<br>") + 1 if subtitle else 0
    return MODEBAR_ROOM + 34 + 16 * lines


def layout_size(width: int | None, height: int | None) -> dict[str, Any]:
    """``width``/``height`` for ``fig.update_layout``: a fixed size for export, or, where
    ``None``, the width of the notebook's output area (plotly's autosize) and plotly's
    default height.

    Raises:
        ValueError: a size that is not a positive number of pixels.
    """
    out: dict[str, Any] = {"autosize": width is None}
    for name, v in (("width", width), ("height", height)):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
            raise ValueError(f"{name} must be a positive number of pixels or None, got {v!r}")
        out[name] = int(v)
    return out


def worker_colors(names: list[str]) -> dict[str, str]:
    """One color per worker, in the order given (the figures pass them sorted), so a
    worker has the same color in every figure of a run: D3's palette without its red,
    which is the planner's (:data:`PLANNER_COLOR`)."""
    palette = [c for c in plotly.colors.qualitative.D3 if c.lower() != PLANNER_COLOR]
    return {w: palette[i % len(palette)] for i, w in enumerate(names)}


def fmt(v: float | None) -> str:
    """A score as hovers and labels show it: 6 significant digits, ``–`` for none."""
    return "–" if v is None else f"{v:.6g}"


def bin_colors(colorscale: str, bins: int) -> list[str]:
    """One color per score bin, sampled at the bins' middles from a plotly named scale.

    Raises:
        TypeError: ``colorscale`` is not a string.
        ValueError: no plotly colorscale has this name.
    """
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


def stepped(colors: list[str]) -> list[list[Any]]:
    """A colorscale of flat bands, one per bin, so the colorbar reads as the cells do."""
    n = len(colors)
    out: list[list[Any]] = []
    for k, c in enumerate(colors):
        out += [[k / n, c], [(k + 1) / n, c]]
    return out


def tick_labels(edges: np.ndarray) -> list[str]:
    """The shortest labels (3 to 8 significant digits) that tell every edge apart."""
    for digits in range(3, 9):
        labels = [f"{e:.{digits}g}" for e in edges]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def step_corners(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
