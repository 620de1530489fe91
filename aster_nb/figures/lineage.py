"""The ancestry of a program, score per generation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from ..program import Program
from .checks import tname
from .style import AXIS, MODEBAR, MODEBAR_ROOM, SHORT, TEMPLATE, fmt, layout_size
from .style import title as title_of

# -- lineage ----------------------------------------------------------------------------------

_ORIGIN_SYMBOL = {
    "initial": "star",
    "edit": "circle",
    "rewrite": "square",
    "crossover": "diamond",
    "merge": "triangle-up",
}


def lineage_figure(
    programs: Sequence[Program],
    *,
    title: str | None = None,
    score_label: str = "score",
    width: int | None = None,
    height: int | None = None,
) -> go.Figure:
    """Score along a program's ancestry, oldest first (from :func:`aster_nb.snapshot.lineage`).

    One point per generation, shaped by how it was made (star: initial, circle: edit,
    square: rewrite, diamond: crossover, triangle: merge); hover shows id, origin, worker,
    round and score. Programs without a score (not ``ok``) leave a gap. ``score_label``
    titles the score axis (a task's ``score_description``); ``width`` and ``height`` fix the
    size in pixels (for export), ``None`` fills the notebook's width.
    """
    if isinstance(programs, str | bytes) or not isinstance(programs, Sequence):
        raise TypeError(f"programs must be a list of Program, got {tname(programs)}")
    if not programs:
        raise ValueError("programs is empty: pass snapshot.lineage(run, id), root first")
    for i, p in enumerate(programs):
        if not isinstance(p, Program):
            raise TypeError(f"programs[{i}] must be a Program, got {tname(p)}")
    y = [p.score if p.score is not None and math.isfinite(p.score) else None for p in programs]
    hover = [
        f"generation {i}<br>program {p.id[:SHORT]}<br>origin {p.origin}"
        f"<br>worker {p.worker or '–'}<br>round {p.round}<br>"
        + (f"score {fmt(p.score)}" if p.score is not None else f"status {p.status}")
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
        template=TEMPLATE,
        margin={"l": 70, "r": 30, "t": MODEBAR_ROOM + 40, "b": 60},
        title=title_of(title or f"Lineage of {last.id[:SHORT]} · {len(programs)} generations"),
        modebar=MODEBAR,
        showlegend=False,
        meta={"aster_nb": "lineage"},
    )
    fig.update_layout(**layout_size(width, height))
    fig.update_xaxes(AXIS, title_text="generation", dtick=1 if len(programs) <= 20 else None)
    fig.update_yaxes(AXIS, title_text=score_label)
    return fig
