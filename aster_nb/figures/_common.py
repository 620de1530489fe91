"""Constants, validation and small helpers the figure modules share."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.colors
import plotly.offline
from plotly.basedatatypes import BaseFigure

from ..snapshot import MapSnapshot, Timeline

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
