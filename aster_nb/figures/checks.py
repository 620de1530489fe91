"""Argument checks the figure functions share, with messages that say what to pass.

Public within :mod:`aster_nb.figures`: a figure function checks its records, its plotly
figure and its options through these before drawing, so a wrong argument fails with the
same message wherever it is passed.
"""

from __future__ import annotations

import math
from typing import Any

from plotly.basedatatypes import BaseFigure

from ..snapshot import MapSnapshot, Timeline
from .style import TIMELINE_X

__all__ = [
    "check_bins",
    "check_figure",
    "check_range",
    "check_snap",
    "check_timeline",
    "check_x",
    "figure_meta",
    "tname",
]


def tname(x: object) -> str:
    """The type name of ``x``, as the messages show it."""
    return type(x).__name__


def check_snap(snap: object, what: str = "snap") -> None:
    """Raises ``TypeError`` unless ``snap`` (the argument ``what``) is a ``MapSnapshot``."""
    if not isinstance(snap, MapSnapshot):
        raise TypeError(
            f"{what} must be an aster_nb.snapshot.MapSnapshot (from map_snapshot(run, worker)),"
            f" got {tname(snap)}"
        )


def check_timeline(tl: object) -> None:
    """Raises ``TypeError`` unless ``tl`` is a ``Timeline``."""
    if not isinstance(tl, Timeline):
        raise TypeError(
            f"tl must be an aster_nb.snapshot.Timeline (from timeline(run)), got {tname(tl)}"
        )


def check_figure(fig: object) -> None:
    """Raises ``TypeError`` unless ``fig`` is a plotly figure or figure widget."""
    if not isinstance(fig, BaseFigure):
        raise TypeError(f"fig must be a plotly go.Figure or go.FigureWidget, got {tname(fig)}")


def check_bins(bins: object) -> None:
    """Check a number of score bins: an int ``>= 1`` (``TypeError``, ``ValueError``)."""
    if isinstance(bins, bool) or not isinstance(bins, int):
        raise TypeError(f"bins must be an int, got {tname(bins)}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")


def check_x(x: object) -> None:
    """Raises ``ValueError`` unless ``x`` is a timeline x axis (:data:`~.style.TIMELINE_X`)."""
    if x not in TIMELINE_X:
        raise ValueError(f"x must be one of {sorted(TIMELINE_X)}, got {x!r}")


def check_range(r: object) -> tuple[float, float]:
    """``r`` as a finite ``(low, high)`` with ``low < high`` (``TypeError``, ``ValueError``)."""
    try:
        lo, hi = (float(v) for v in r)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise TypeError(f"score_range must be a pair of numbers (low, high), got {r!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"score_range must be finite with low < high, got {r!r}")
    return lo, hi


def figure_meta(fig: BaseFigure, kind: str, maker: str) -> dict[str, Any]:
    """The ``layout.meta`` that ``maker()`` wrote into ``fig``, marking it a ``kind`` figure.

    Raises:
        ValueError: ``fig`` was not made by ``maker()``.
    """
    meta = fig.layout.meta
    if not isinstance(meta, dict) or meta.get("aster_nb") != kind:
        raise ValueError(f"this figure was not made by {maker}(); make it with {maker} first")
    return meta
