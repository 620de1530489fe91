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
    "EMPTY_FILL",
    "SHORT",
    "TEMPLATE",
    "TIMELINE_X",
    "bin_colors",
    "fmt",
    "step_corners",
    "stepped",
    "tick_labels",
]

EMPTY_FILL = "#e3e3e3"
"""Fill of an archive cell without an elite."""
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
