"""Figures: fixed trace layouts, in-place updates, validation, and export to HTML/PNG/SVG."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
import plotly.offline
import pytest

from aster_nb import figures
from aster_nb.figures import (
    ExportError,
    archive_map_figure,
    archive_map_update,
    comparison_figure,
    export,
    lineage_figure,
    timeline_figure,
    timeline_update,
)
from aster_nb.figures.style import EMPTY_FILL, MODEBAR_ROOM
from aster_nb.program import EvalResult, Program, Status
from aster_nb.run import Run
from aster_nb.snapshot import Cell, MapSnapshot, Timeline, lineage, map_snapshot, timeline

# PNG/SVG export renders with a headless Chromium: skipped without one, failed under
# `make test` (see conftest.py)
needs_chromium = pytest.mark.browser

# -- fixtures built by hand -------------------------------------------------------------------


def grid_snapshot(
    *, side: int = 8, empty_every: int = 5, seed: int = 0, worker: str = "p0.w0"
) -> MapSnapshot:
    """A ``side`` x ``side`` map of unit squares (the Voronoi diagram of a square lattice);
    every ``empty_every``-th cell holds no elite."""
    rng = np.random.default_rng(seed)
    cells = []
    for i in range(side * side):
        cx, cy = i % side + 0.5, i // side + 0.5
        poly = np.array(
            [
                [cx - 0.5, cy - 0.5],
                [cx + 0.5, cy - 0.5],
                [cx + 0.5, cy + 0.5],
                [cx - 0.5, cy + 0.5],
            ],
            dtype=np.float32,
        )
        empty = i % empty_every == 0
        cells.append(
            Cell(
                index=i,
                center=(cx, cy),
                polygon=poly,
                elite_id=None if empty else f"{i:04x}{'ab' * 6}",
                score=None if empty else float(rng.normal()),
            )
        )
    n = 200
    return MapSnapshot(
        worker=worker,
        archive="cluster",
        evaluations=n + 1,
        axes=("radius_cv", "near_wall"),
        points=rng.uniform(0, side, (n, 2)).astype(np.float32),
        point_scores=rng.normal(size=n).astype(np.float32),
        point_ids=tuple(f"{k:016x}" for k in range(n)),
        cells=tuple(cells),
        bounds=((0.0, float(side)), (0.0, float(side))),
    )


def polygons(xs: np.ndarray, ys: np.ndarray) -> list[list[tuple[float, float]]]:
    """Split NaN-separated float32 coordinates into rings."""
    xs, ys = np.asarray(xs), np.asarray(ys)
    if len(xs) == len(ys) == 0:
        return []
    assert xs.dtype == ys.dtype == np.float32, "polygons travel as float32 arrays"
    np.testing.assert_array_equal(np.isnan(xs), np.isnan(ys))  # gaps line up
    rings: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        if np.isnan(x):
            rings.append([])
        else:
            rings[-1].append((x, y))
    return [r for r in rings if r]


def hand_timeline() -> Timeline:
    workers = ["", "p0.w1", "p0.w0", "p0.w1", "p0.w0", "p0.w0", "p0.w1", "p0.w0"]
    status = ["ok", "ok", "error", "ok", "ok", "ok", "timeout", "error"]
    score = [1.0, 0.5, np.nan, 2.0, 3.0, 2.5, np.nan, np.nan]
    frame = pd.DataFrame(
        {
            "seq": np.arange(1, 9),
            "id": [f"{k:02d}" + "e" * 14 for k in range(8)],
            "worker": workers,
            "status": status,
            "score": score,
            "elapsed": np.arange(8) * 1.5,
        }
    )
    frame["worker_best"] = frame.groupby("worker")["score"].cummax()
    frame["best"] = frame["score"].cummax()
    planner = pd.DataFrame(
        {
            "round": [0, 1],
            "seq": [4, 8],
            "elapsed": [4.5, 10.5],
            "score": [2.0, 3.0],
            "best_id": ["03" + "e" * 14, "04" + "e" * 14],
        }
    )
    return Timeline(frame=frame, planner=planner)


# -- archive map ------------------------------------------------------------------------------


def test_archive_map_trace_layout() -> None:
    snap = grid_snapshot()
    fig = archive_map_figure(snap, bins=8)
    kinds = [t.type for t in fig.data]
    assert kinds == ["scatter"] * 9 + ["scattergl", "scatter"]
    assert all(t.fill == "toself" for t in fig.data[:9])

    filled = [c for c in snap.cells if c.score is not None]
    empty = [c for c in snap.cells if c.score is None]
    rings = [polygons(t.x, t.y) for t in fig.data[:8]]
    assert sum(len(r) for r in rings) == len(filled)
    assert len(polygons(fig.data[8].x, fig.data[8].y)) == len(empty)
    for ring in (r for bin_rings in rings for r in bin_rings):
        assert len(ring) == 5 and ring[0] == ring[-1]  # a square, closed

    # each bin holds exactly the cells whose scores fall in it, the colorbar spans the bins
    pts = fig.data[9]
    lo, hi = min(c.score for c in filled), max(c.score for c in filled)
    assert pts.marker.cmin == pytest.approx(lo) and pts.marker.cmax == pytest.approx(hi)
    edges = np.linspace(lo, hi, 9)
    by_centre = {(c.center[0], c.center[1]): c for c in filled}
    for k, bin_rings in enumerate(rings):
        for ring in bin_rings:
            xs, ys = zip(*ring[:-1], strict=True)
            cell = by_centre[(float(np.mean(xs)), float(np.mean(ys)))]
            assert edges[k] - 1e-9 <= cell.score <= edges[k + 1] + 1e-9
    assert list(pts.marker.colorbar.tickvals) == pytest.approx(edges.tolist())
    assert len({t.fillcolor for t in fig.data[:8]}) == 8
    # the colorbar's bands are the cells' colors
    band_colors = [c for _, c in pts.marker.colorscale][::2]
    assert band_colors == [t.fillcolor for t in fig.data[:8]]

    # programs: WebGL, float32, the snapshot's points
    assert pts.x.dtype == np.float32 and pts.y.dtype == np.float32
    assert pts.marker.color.dtype == np.float32
    np.testing.assert_array_equal(pts.x, snap.points[:, 0])
    np.testing.assert_array_equal(pts.y, snap.points[:, 1])
    assert pts.marker.showscale is True

    # cell centres: click target (full id), hover with the short id and the score
    centres = fig.data[10]
    assert list(centres.customdata) == [c.elite_id for c in snap.cells]
    for c, text in zip(snap.cells, centres.hovertext, strict=True):
        if c.elite_id is None:
            assert "empty" in text
        else:
            assert f"program {c.elite_id[:12]}<" in text and c.elite_id not in text
            assert f"{c.score:.6g}" in text

    assert fig.layout.xaxis.title.text == "radius_cv"
    assert fig.layout.yaxis.title.text == "near_wall"
    assert fig.layout.yaxis.scaleanchor == "x"
    assert list(fig.layout.xaxis.range) == [0.0, 8.0]
    assert "p0.w0" in fig.layout.title.text and "201 evaluations" in fig.layout.title.text
    assert fig.layout.template.layout.plot_bgcolor == "white"  # plotly_white


def test_archive_map_one_bin_and_equal_scores() -> None:
    snap = grid_snapshot(side=3, empty_every=100)
    same = MapSnapshot(
        **{
            **{f: getattr(snap, f) for f in MapSnapshot.__slots__},
            "cells": tuple(
                Cell(index=c.index, center=c.center, polygon=c.polygon, elite_id="x", score=1.0)
                for c in snap.cells
            ),
        }
    )
    fig = archive_map_figure(same, bins=1)
    assert len(fig.data) == 4
    assert len(polygons(fig.data[0].x, fig.data[0].y)) == 9
    assert fig.data[2].marker.cmin < 1.0 < fig.data[2].marker.cmax


def test_archive_map_score_range_and_greedy() -> None:
    snap = grid_snapshot()
    fig = archive_map_figure(snap, bins=4, score_range=(-10.0, 10.0))
    assert (fig.data[5].marker.cmin, fig.data[5].marker.cmax) == (-10.0, 10.0)
    # scores are within +-3 sigma: all cells land in the two middle bins
    counts = [len(polygons(t.x, t.y)) for t in fig.data[:4]]
    assert counts[0] == counts[3] == 0 and sum(counts) == 51

    # close scores still get tick labels that tell the bins apart
    narrow = archive_map_figure(snap, score_range=(2.6350, 2.6358)).data[9].marker.colorbar
    assert len(set(narrow.ticktext)) == 9 and narrow.ticktext[0] == "2.635"

    greedy = MapSnapshot(
        **{
            **{f: getattr(snap, f) for f in MapSnapshot.__slots__},
            "archive": "greedy",
            "cells": (),
        }
    )
    fig = archive_map_figure(greedy)
    assert all(len(t.x) == 0 for t in fig.data[:9]) and len(fig.data[10].x) == 0
    assert len(fig.data[9].x) == 200
    assert fig.data[9].marker.cmin == pytest.approx(float(greedy.point_scores.min()))


def test_archive_map_validation() -> None:
    snap = grid_snapshot()
    with pytest.raises(ValueError, match="bins must be >= 1"):
        archive_map_figure(snap, bins=0)
    with pytest.raises(TypeError, match="bins must be an int"):
        archive_map_figure(snap, bins=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="MapSnapshot"):
        archive_map_figure({"cells": []})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown colorscale 'Nope'"):
        archive_map_figure(snap, colorscale="Nope")
    with pytest.raises(ValueError, match="score_range"):
        archive_map_figure(snap, score_range=(1.0, 1.0))
    fig = archive_map_figure(snap, bins=8)
    with pytest.raises(ValueError, match="bins=8"):
        archive_map_update(fig, snap, bins=4)
    with pytest.raises(ValueError, match="archive_map_figure"):
        archive_map_update(go.Figure(), snap)
    with pytest.raises(TypeError, match=r"go\.Figure"):
        archive_map_update("fig", snap)  # type: ignore[arg-type]


def test_archive_map_update_in_place_on_a_widget() -> None:
    widget = go.FigureWidget(archive_map_figure(grid_snapshot(seed=0)))
    traces = list(widget.data)
    later = grid_snapshot(side=6, empty_every=2, seed=1, worker="p0.w0")
    later = MapSnapshot(
        **{**{f: getattr(later, f) for f in MapSnapshot.__slots__}, "evaluations": 999}
    )
    archive_map_update(widget, later)  # bins: the figure's

    assert len(widget.data) == 11
    assert all(a is b for a, b in zip(widget.data, traces, strict=True))  # same trace objects
    filled = sum(c.score is not None for c in later.cells)
    assert filled == 18
    assert sum(len(polygons(t.x, t.y)) for t in widget.data[:8]) == filled
    assert len(polygons(widget.data[8].x, widget.data[8].y)) == 18
    np.testing.assert_array_equal(widget.data[9].x, later.points[:, 0])
    assert widget.data[9].x.dtype == np.float32
    assert len(widget.data[10].x) == 36
    assert list(widget.layout.xaxis.range) == [0.0, 6.0]
    assert "999 evaluations" in widget.layout.title.text


# -- timeline ---------------------------------------------------------------------------------


EXTRA_TRACES = ["best", "planner", "new best (color: who set it)", "merges", "target", "record"]


def test_timeline_traces_and_steps() -> None:
    tl = hand_timeline()
    fig = timeline_figure(tl)
    assert [t.name for t in fig.data] == ["p0.w0", "p0.w1", *EXTRA_TRACES]
    assert [t.type for t in fig.data] == ["scattergl"] * 3 + ["scatter"] * 5
    assert all(t.line.shape == "hv" for t in fig.data[:4])

    w0, w1, best, planner, credit, merges, target, record = fig.data
    # p0.w0: error at 3, then 3.0 at 5, 2.5 at 6 (best stays 3.0), error at 8: the step
    # line starts at its first score and runs to its last evaluation
    assert list(w0.x) == [5, 8] and list(w0.y) == [3.0, 3.0]
    assert list(w1.x) == [2, 4, 7] and list(w1.y) == [0.5, 2.0, 2.0]
    # 0.5 at 2 does not beat 1.0: no corner there
    assert list(best.x) == [1, 4, 5, 8] and list(best.y) == [1.0, 2.0, 3.0, 3.0]
    assert best.x.dtype == np.float32
    assert list(planner.x) == [4, 8] and list(planner.y) == [2.0, 3.0]
    assert planner.mode == "lines+markers"
    assert "round 1" in planner.hovertext[1] and planner.hovertext[1].endswith(
        "program 04eeeeeeeeee"
    )
    assert fig.layout.xaxis.title.text == "evaluations"
    assert fig.layout.yaxis.title.text == "best score"

    # who set each new best: the initial program (1.0), p0.w1 (2.0 at 4), p0.w0 (3.0 at 5),
    # each marker in the color of its worker's line
    assert list(credit.x) == [1, 4, 5] and list(credit.y) == [1.0, 2.0, 3.0]
    assert list(credit.marker.color) == ["#999", w1.line.color, w0.line.color]
    assert w0.line.color != w1.line.color
    assert "set by the initial program" in credit.hovertext[0]
    assert "set by p0.w1" in credit.hovertext[1] and "evaluation 4" in credit.hovertext[1]
    # rounds: a dotted line at each round's end, labelled; no merges, target or record
    assert [sh.x0 for sh in fig.layout.shapes] == [4.0, 8.0]
    assert [a.text for a in fig.layout.annotations] == ["end of round 0", "1"]
    assert len(merges.x) == len(target.x) == len(record.x) == 0
    assert target.showlegend is False and record.showlegend is False

    fig = timeline_figure(tl, x="elapsed")
    assert list(fig.data[2].x) == [0.0, 4.5, 6.0, 10.5]
    assert list(fig.data[3].x) == [4.5, 10.5]
    assert list(fig.data[4].x) == [0.0, 4.5, 6.0]
    assert [sh.x0 for sh in fig.layout.shapes] == [4.5, 10.5]
    assert fig.layout.xaxis.title.text == "wall time (s)"


def test_timeline_marks_merges_target_and_record() -> None:
    tl = hand_timeline()
    frame = tl.frame.copy()
    frame.loc[5, ["worker", "score"]] = ["", 4.0]  # evaluation 6: a merge beats p0.w0's 3.0
    frame["worker_best"] = frame.groupby("worker")["score"].cummax()
    frame["best"] = frame["score"].cummax()
    merges = pd.DataFrame(
        {
            "seq": [6],
            "elapsed": [7.5],
            "id": [frame.loc[5, "id"]],
            "round": [1],
            "status": ["ok"],
            "score": [4.0],
        }
    )
    marked = Timeline(
        frame=frame,
        planner=tl.planner,
        merges=merges,
        target=3.5,
        record=5.25,
        record_source="Someone (2025)",
        score_label="sum of radii",
    )
    fig = timeline_figure(marked, width=700, height=400)
    names = [t.name for t in fig.data]
    assert names[-2:] == ["target 3.5", "record 5.25"]
    merge, target, record = fig.data[-3:]
    assert list(merge.x) == [6] and list(merge.y) == [4.0] and "round 1" in merge.hovertext[0]
    credit = fig.data[-4]
    assert list(credit.x)[-1] == 6 and credit.marker.color[-1] == "#d62728"  # the planner's
    assert "set by a planner's merge" in credit.hovertext[-1]
    # the lines span the drawn evaluations, the record's hover names its source
    assert list(target.x) == list(record.x) == [1.0, 8.0]
    assert list(target.y) == [3.5, 3.5] and list(record.y) == [5.25, 5.25]
    assert "Someone (2025)" in record.hovertext[0] and record.showlegend is True
    assert fig.layout.yaxis.title.text == "best sum of radii"
    assert (fig.layout.width, fig.layout.height, fig.layout.autosize) == (700, 400, False)


def test_timeline_update_in_place_and_errors() -> None:
    tl = hand_timeline()
    early = Timeline(frame=tl.frame.iloc[:2], planner=tl.planner.iloc[:0])
    widget = go.FigureWidget(timeline_figure(early, workers=["p0.w1", "p0.w0"]))
    assert [t.name for t in widget.data] == ["p0.w0", "p0.w1", *EXTRA_TRACES]
    assert len(widget.data[0].x) == 0  # no p0.w0 program yet: an empty line, still there
    traces = list(widget.data)
    timeline_update(widget, tl, x="elapsed")
    assert all(a is b for a, b in zip(widget.data, traces, strict=True))
    assert list(widget.data[0].x) == [6.0, 10.5]
    assert widget.layout.xaxis.title.text == "wall time (s)"

    narrow = timeline_figure(early)  # drawn before p0.w0 existed
    with pytest.raises(ValueError, match=r"workers \['p0.w0'\]"):
        timeline_update(narrow, tl)
    with pytest.raises(ValueError, match="x must be one of"):
        timeline_figure(tl, x="time")
    with pytest.raises(TypeError, match="Timeline"):
        timeline_figure(tl.frame)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeline_figure"):
        timeline_update(archive_map_figure(grid_snapshot()), tl)


# -- comparison and lineage -------------------------------------------------------------------


def test_comparison_shares_one_color_scale() -> None:
    a, b = grid_snapshot(seed=0), grid_snapshot(side=5, seed=1)
    b = MapSnapshot(
        **{
            **{f: getattr(b, f) for f in MapSnapshot.__slots__},
            "cells": tuple(
                Cell(
                    index=c.index,
                    center=c.center,
                    polygon=c.polygon,
                    elite_id=c.elite_id,
                    score=None if c.score is None else c.score + 10,
                )
                for c in b.cells
            ),
        }
    )
    curves = {"cluster": hand_timeline().frame, "grid": hand_timeline().frame.iloc[:5]}
    fig = comparison_figure({"Cluster-Elites": a, "grid": b}, curves, bins=6)
    assert len(fig.data) == 2 * 9 + 2
    pa, pb = fig.data[7], fig.data[16]
    assert pa.type == pb.type == "scattergl"
    lo = min(c.score for c in a.cells if c.score is not None)
    hi = max(c.score for c in b.cells if c.score is not None)
    assert (pa.marker.cmin, pa.marker.cmax) == (pb.marker.cmin, pb.marker.cmax)
    assert pa.marker.cmin == pytest.approx(lo) and pa.marker.cmax == pytest.approx(hi)
    assert pa.marker.showscale is True and pb.marker.showscale is False
    # b's scores sit 10 above a's: its cells use only the top bins, a's only the bottom ones
    used_a = [k for k in range(6) if len(fig.data[k].x)]
    used_b = [k for k in range(6) if len(fig.data[9 + k].x)]
    assert max(used_a) < min(used_b)
    assert {fig.data[8].xaxis, fig.data[9].xaxis} == {"x", "x2"}
    assert fig.layout.yaxis2.scaleanchor == "x2"
    assert [t.name for t in fig.data[-2:]] == ["cluster", "grid"]
    assert fig.data[-1].xaxis == "x3" and list(fig.data[-1].x) == [1, 4, 5]
    assert (fig.layout.xaxis2.title.text, fig.layout.yaxis2.title.text) == b.axes
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0].startswith("<b>Cluster-Elites</b>") and "51/64 cells filled" in titles[0]

    no_curves = comparison_figure({"a": a})
    assert len(no_curves.data) == 11 and no_curves.layout.showlegend is False
    with pytest.raises(TypeError, match="non-empty Mapping"):
        comparison_figure([a, b])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"missing \['best'\]"):
        comparison_figure({"a": a}, {"a": pd.DataFrame({"seq": [1]})})
    with pytest.raises(TypeError, match=r"snaps\['b'\]"):
        comparison_figure({"a": a, "b": 3})  # type: ignore[dict-item]


def test_lineage_figure_by_hand() -> None:
    root = Program(code="x = 1\n").evaluated(EvalResult(status=Status.OK, score=1.0))
    mid = Program(code="x = 2\n", parents=(root.id,), origin="edit", worker="p0.w0", round=1)
    mid = mid.evaluated(EvalResult(status=Status.ERROR, error="boom"))
    top = Program(code="x = 3\n", parents=(mid.id,), origin="merge", planner="p0", round=2)
    top = top.evaluated(EvalResult(status=Status.OK, score=4.5))
    fig = lineage_figure([root, mid, top])
    (t,) = fig.data
    assert list(t.x) == [0, 1, 2] and list(t.y) == [1.0, None, 4.5]
    assert list(t.customdata) == [root.id, mid.id, top.id]
    assert list(t.marker.symbol) == ["star", "circle", "triangle-up"]
    assert "origin edit" in t.hovertext[1] and "worker p0.w0" in t.hovertext[1]
    assert "round 1" in t.hovertext[1] and "status error" in t.hovertext[1]
    assert top.id[:12] in fig.layout.title.text
    assert fig.layout.xaxis.title.text == "generation"
    assert fig.layout.yaxis.title.text == "score"
    assert (
        lineage_figure([root], score_label="sum of radii").layout.yaxis.title.text == "sum of radii"
    )
    with pytest.raises(ValueError, match="empty"):
        lineage_figure([])
    with pytest.raises(TypeError, match=r"programs\[1\] must be a Program"):
        lineage_figure([root, "abc"])  # type: ignore[list-item]


# -- from real runs ---------------------------------------------------------------------------


async def test_figures_of_a_real_toy_run(tmp_path: Path) -> None:
    async with await Run.create(
        "toy", path=tmp_path / "r.sqlite", workers=2, agents=3, evaluations=20, seed=1
    ) as run:
        await run.step()
        snap = map_snapshot(run, "p0.w0")
        tl = timeline(run)
        chain = lineage(run, run.best.id)
        best = run.best.score
        assert tl.merges is not None
        merged = {i: run.store.get(i) for i in tl.merges["id"]}
        unmerged = [i for i, w in zip(tl.frame["id"], tl.frame["worker"], strict=True) if w == ""]

    fig = archive_map_figure(snap)
    assert len(fig.data) == 11
    filled = [c for c in snap.cells if c.score is not None and len(c.polygon)]
    assert filled, "a toy round fills cells"
    assert sum(len(polygons(t.x, t.y)) for t in fig.data[:8]) == len(filled)
    np.testing.assert_array_equal(fig.data[9].x, snap.points[:, 0])
    assert set(fig.data[10].customdata) - {None} == {c.elite_id for c in filled}
    assert fig.layout.xaxis.title.text == snap.axes[0]

    tfig = timeline_figure(tl)
    assert [t.name for t in tfig.data][:4] == ["p0.w0", "p0.w1", "best", "planner"]
    assert tfig.data[2].y[-1] == pytest.approx(tl.frame["best"].max())
    assert tfig.data[2].x[-1] == len(tl.frame)
    assert list(tfig.data[3].y) == pytest.approx(tl.planner["score"].tolist())
    # the toy task's target and record (its optimum, 0) and what its score is
    assert (tl.target, tl.record) == (-0.01, 0.0)
    assert [t.name for t in tfig.data][-2:] == ["target -0.01", "record 0"]
    assert list(tfig.data[-1].y) == [0.0, 0.0]
    assert tfig.layout.yaxis.title.text == "best minus the squared distance to the optimum"
    # merges are the planner's programs made by merging, found by their origin
    assert merged and all(p is not None and p.origin == "merge" for p in merged.values())
    assert set(merged) <= set(unmerged)  # programs without a worker, the initial one not
    assert list(tfig.data[-3].x) == tl.merges["seq"][tl.merges["status"] == "ok"].tolist()

    lfig = lineage_figure(chain)
    assert lfig.data[0].y[-1] == pytest.approx(best)
    assert lfig.data[0].customdata[-1] == chain[-1].id


async def test_circle_packing_map_and_replay(tmp_path: Path) -> None:
    async with await Run.create(
        "circle_packing", path=tmp_path / "c.sqlite", workers=1, agents=3, evaluations=12, seed=2
    ) as run:
        await run.step()
        now = map_snapshot(run, "p0.w0")
        early = map_snapshot(run, "p0.w0", upto=4)
    widget = go.FigureWidget(archive_map_figure(early))
    early_scale = (widget.data[9].marker.cmin, widget.data[9].marker.cmax)
    archive_map_update(widget, now)
    assert len(widget.data) == 11
    # the axes say what the features are (task.toml's descriptions), the color bar the score
    assert (
        widget.layout.xaxis.title.text
        == "spread of the radii: std / mean (0: all equal) (radius_cv)"
    )
    assert widget.layout.yaxis.title.text.endswith("of the wall (near_wall)")
    assert widget.data[9].marker.colorbar.title.text == "sum of the 26 radii"
    # one color scale for the whole run: the replayed frame after 4 evaluations and now
    assert early_scale == (widget.data[9].marker.cmin, widget.data[9].marker.cmax)
    assert early.score_range == now.score_range
    assert early_scale == pytest.approx(now.score_range)
    filled = sum(c.score is not None and len(c.polygon) > 0 for c in now.cells)
    assert sum(len(polygons(t.x, t.y)) for t in widget.data[:8]) == filled
    assert len(widget.data[9].x) == len(now.points)


# -- export -----------------------------------------------------------------------------------


def test_export_html_is_self_contained(tmp_path: Path) -> None:
    snap = grid_snapshot()
    out = export(archive_map_figure(snap), tmp_path / "sub" / "map.html")
    assert out == tmp_path / "sub" / "map.html"
    text = out.read_text(encoding="utf-8")
    bundle = plotly.offline.get_plotlyjs()
    assert bundle[:2000] in text and bundle[-2000:] in text  # plotly.js inlined
    assert not re.search(r"<script[^>]+src=", text)  # nothing to fetch
    cell = next(c for c in snap.cells if c.elite_id is not None)
    assert f"program {cell.elite_id[:12]}" in text  # the figure's data: cell hovers,
    assert f'"{snap.point_ids[7]}"' in text  # the programs' ids,
    assert '"dtype":"f4"' in text  # and float32 arrays, base64-encoded
    assert '"scattergl"' in text


def test_export_argument_errors(tmp_path: Path) -> None:
    fig = go.Figure()
    with pytest.raises(ValueError, match=r"\.html, \.png or \.svg"):
        export(fig, tmp_path / "map.pdf")
    with pytest.raises(TypeError, match=r"go\.Figure"):
        export({"data": []}, tmp_path / "map.html")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="width"):
        export(fig, tmp_path / "map.png", width=0)


def test_export_without_chromium_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fig = archive_map_figure(grid_snapshot(side=3))
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no browser on PATH
    monkeypatch.setenv("ASTER_NB_CHROMIUM", str(tmp_path / "no-such-chromium"))
    with pytest.raises(ExportError, match="no-such-chromium") as err:
        export(fig, tmp_path / "map.png")
    for hint in ("PNG and SVG export need a Chromium", "apt-get install chromium", ".html"):
        assert hint in str(err.value)
    assert isinstance(err.value, RuntimeError)

    monkeypatch.delenv("ASTER_NB_CHROMIUM")
    with pytest.raises(ExportError, match="no Chromium found on PATH") as err:
        export(fig, tmp_path / "map.svg")
    assert "ASTER_NB_CHROMIUM" in str(err.value) and "apt-get install chromium" in str(err.value)
    assert not (tmp_path / "map.svg").exists()
    assert export(fig, tmp_path / "map.html").stat().st_size > 1_000_000  # html still works


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@needs_chromium
async def test_export_png_and_svg_of_a_map(tmp_path: Path) -> None:
    # async: export must work from inside a running event loop, as in a notebook cell
    fig = archive_map_figure(grid_snapshot())
    png = export(fig, tmp_path / "map.png", width=500, height=400, scale=2)
    assert png_size(png.read_bytes()) == (1000, 800)
    svg = export(fig, tmp_path / "map.svg")
    text = svg.read_text(encoding="utf-8")
    assert text.startswith("<svg") and 'width="900"' in text and 'height="600"' in text
    assert "near_wall" in text  # axis title rendered as text
    # the polygons are real paths filled with the bin colors
    for color in {t.fillcolor for t in fig.data[:8] if len(t.x)}:
        rgb = re.sub(r"\s", "", color)
        assert rgb in re.sub(r"\s", "", text)


@needs_chromium
def test_export_png_renders_webgl_points(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    fig = go.Figure(
        go.Scattergl(x=np.float32([0.5]), y=np.float32([0.5]), mode="markers", marker={"size": 60})
    )
    fig.update_traces(marker_color="rgb(255,0,0)")
    fig.update_layout(
        xaxis_range=[0, 1], yaxis_range=[0, 1], margin={"l": 0, "r": 0, "t": 0, "b": 0}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    out = export(fig, tmp_path / "dot.png", width=200, height=200, scale=1)
    im = image.open(io.BytesIO(out.read_bytes())).convert("RGB")
    assert im.size == (200, 200)
    assert im.getpixel((100, 100)) == (255, 0, 0)  # WebGL drew the marker
    assert im.getpixel((5, 5)) != (255, 0, 0)


@needs_chromium
def test_export_uses_the_layout_size_and_reports_plotly_errors(tmp_path: Path) -> None:
    tl = hand_timeline()
    cmp = comparison_figure({"a": grid_snapshot(), "b": grid_snapshot(seed=3)}, {"x": tl.frame})
    out = export(cmp, tmp_path / "cmp.png", scale=1)
    # it fills a notebook's width; exported without a size, 360 pixels per panel
    assert cmp.layout.width is None and cmp.layout.autosize is True
    assert png_size(out.read_bytes()) == (3 * 360 + 100, 520)

    broken = go.Figure()
    # what plotly.js rejects (no figure at all), smuggled past the Python validators
    broken.to_json = lambda: "null"  # type: ignore[method-assign]
    with pytest.raises(ExportError, match=r"plotly\.js could not render the figure"):
        export(broken, tmp_path / "broken.png")
    assert not (tmp_path / "broken.png").exists()


def test_find_chromium_prefers_the_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "my-chromium"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("ASTER_NB_CHROMIUM", str(fake))
    assert figures.find_chromium() == fake
    # a browser that prints no image: a clear error, not a hang or a corrupt file
    with pytest.raises(ExportError, match="without an image"):
        export(go.Figure(), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# -- for a paper: sizes, the toolbar, muted empty cells ---------------------------------------


def test_figures_fit_the_notebook_and_keep_the_toolbar_off_the_title() -> None:
    tl = hand_timeline()
    root = Program(code="x = 1\n").evaluated(EvalResult(status=Status.OK, score=1.0))
    made = {
        "map": lambda **kw: archive_map_figure(grid_snapshot(), **kw),
        "timeline": lambda **kw: timeline_figure(tl, **kw),
        "comparison": lambda **kw: comparison_figure(
            {"a": grid_snapshot()}, {"x": tl.frame}, title="Archives", **kw
        ),
        "lineage": lambda **kw: lineage_figure([root], **kw),
    }
    for name, make in made.items():
        fig = make()
        # no fixed width: the figure takes the output area's (a 1540-pixel one was cut off)
        assert fig.layout.width is None and fig.layout.autosize is not False, name
        # the title starts below the toolbar's row, and the top margin holds both
        assert fig.layout.title.yref == "container" and fig.layout.title.yanchor == "top", name
        assert fig.layout.title.pad.t == MODEBAR_ROOM, name
        assert fig.layout.margin.t >= MODEBAR_ROOM + 30, name
        # one line: plotly places a title by its first line, so more would rise into the
        # toolbar's row; further lines are the subtitle
        assert "<br>" not in fig.layout.title.text, name
        assert "lasso2d" in fig.layout.modebar.remove, name
        sized = make(width=640, height=480)
        assert (sized.layout.width, sized.layout.height) == (640, 480), name
        with pytest.raises(ValueError, match="width must be a positive number of pixels"):
            make(width=0)


def test_empty_cells_are_muted_and_their_centres_invisible() -> None:
    snap = grid_snapshot()
    fig = archive_map_figure(snap)
    empty = fig.data[8]
    assert empty.fillcolor == EMPTY_FILL and empty.line.width < fig.data[0].line.width

    # nearly white: lighter than any score color
    def lightness(color: str) -> float:
        r, g, b = plotly.colors.unlabel_rgb(plotly.colors.convert_colors_to_same_type(color)[0][0])
        return (r + g + b) / 3

    assert lightness(EMPTY_FILL) > max(lightness(t.fillcolor) for t in fig.data[:8])
    assert lightness(EMPTY_FILL) > 240
    colors = list(fig.data[10].marker.color)
    for c, color in zip(snap.cells, colors, strict=True):
        assert color.endswith(",0)") if c.elite_id is None else not color.endswith(",0)")


def test_a_grid_box_over_more_dimensions_says_what_it_covers() -> None:
    snap = grid_snapshot(side=3)
    cells = tuple(
        Cell(
            index=c.index,
            center=c.center,
            polygon=c.polygon,
            elite_id=c.elite_id,
            score=c.score,
            covers=25,
        )
        for c in snap.cells
    )
    deep = MapSnapshot(
        **{
            **{f: getattr(snap, f) for f in MapSnapshot.__slots__},
            "archive": "grid",
            "cells": cells,
            "cells_total": 225,
            "cells_filled": 40,
        }
    )
    fig = archive_map_figure(deep)
    hover = list(fig.data[10].hovertext)
    assert "best of the 25 cells behind this box" in hover[1]
    assert "all 25 cells behind this box" in hover[0]  # cell 0 is empty
    # the title counts the archive's cells, not the 9 boxes drawn
    assert "40/225 cells filled" in fig.layout.title.text


# -- the gallery: every figure exported from real runs -----------------------------------------


def artifacts_dir() -> Path:
    """Where tests leave what a person should look at (``$ASTER_NB_ARTIFACTS``, default
    ``tests/artifacts``, git-ignored), as the browser test does."""
    d = Path(os.environ.get("ASTER_NB_ARTIFACTS") or Path(__file__).parent / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


@needs_chromium
async def test_gallery_script_exports_every_figure_of_real_runs() -> None:
    spec = importlib.util.spec_from_file_location(
        "gallery", Path(__file__).resolve().parents[1] / "scripts" / "gallery.py"
    )
    assert spec is not None and spec.loader is not None
    gallery = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gallery)
    out = artifacts_dir() / "figures"
    summary = await gallery.make_gallery(
        out, workers=2, rounds=2, budget=10, agents=3, width=600, height=400, scale=1
    )
    assert set(summary["files"]) == {"map_cluster", "map_grid", "timeline", "comparison", "lineage"}
    sizes = {name: png_size((out / f).read_bytes()) for name, f in summary["files"].items()}
    assert sizes["timeline"] == sizes["lineage"] == (600, 400)
    assert sizes["map_grid"] == (480, 460)  # a map's box is square: about as tall as wide
    assert sizes["comparison"] == (3 * 360 + 100, 520)  # its suggested export size
    grid = summary["runs"]["grid"]
    assert grid["cells"] == 100 and 0 < grid["cells_filled"] < 100
    assert summary["runs"]["cluster"]["evaluations"] > 40
    assert json.loads((out / "gallery.json").read_text()) == summary
