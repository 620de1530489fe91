"""Snapshots: archive maps, timelines and lineages of live, replayed and reopened runs."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aster_nb.archive import ClusterElites
from aster_nb.figures import archive_map_figure
from aster_nb.geometry import Projection, padded_bounds, voronoi_region, voronoi_regions
from aster_nb.program import EvalResult, Program, Status
from aster_nb.run import Run
from aster_nb.snapshot import MapSnapshot, lineage, map_snapshot, timeline, workers
from aster_nb.snapshot.cells import archive_cells
from aster_nb.store import Store
from aster_nb.task import Task

from .conftest import write_task


def cells_of(snap):  # type: ignore[no-untyped-def]
    return [(c.index, c.elite_id, c.score) for c in snap.cells]


@pytest.mark.parametrize("archive", ["cluster", "grid", "greedy"])
async def test_replay_to_now_is_the_live_archive(tmp_path: Path, archive: str) -> None:
    async with await Run.create(
        "toy", path=tmp_path / "r.sqlite", workers=2, agents=3, evaluations=25, seed=3,
        archive=archive,
    ) as run:  # fmt: skip
        await run.step()
        await run.step()
        assert workers(run) == ["p0.w0", "p0.w1"]
        for w in workers(run):
            live = map_snapshot(run, w)
            replayed = map_snapshot(run.store, w, upto=run.store.count())
            assert live.archive == archive
            assert cells_of(live) == cells_of(replayed)
            assert live.point_ids == replayed.point_ids
            assert len(live.points) == len(live.point_scores) == len(live.point_ids) > 20
            assert live.points.dtype == np.float32 and live.points.shape[1] == 2
            elites = run.archives[w].elites()  # type: ignore[union-attr]
            if archive == "greedy":
                assert live.cells == ()
            else:
                assert {c.elite_id for c in live.cells if c.elite_id} == {p.id for p in elites}
                (x0, x1), (y0, y1) = live.bounds
                for c in live.cells:
                    assert len(c.polygon) >= 3, c
                    assert (c.polygon[:, 0] >= x0 - 1e-6).all() and (
                        c.polygon[:, 0] <= x1 + 1e-6
                    ).all()
                    assert (c.polygon[:, 1] >= y0 - 1e-6).all() and (
                        c.polygon[:, 1] <= y1 + 1e-6
                    ).all()


async def test_replay_goes_back_in_time_and_reopened_runs_match(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    async with await Run.create(
        "toy", path=path, workers=1, agents=4, evaluations=40, seed=5
    ) as run:
        await run.step()
        after_first = run.store.count()
        first = cells_of(map_snapshot(run, "p0.w0"))
        await run.step()
        now = cells_of(map_snapshot(run, "p0.w0"))
    assert first != now
    store = Store(path)
    # back to the end of round 0, then forward again: the cached replay must not leak
    assert cells_of(map_snapshot(store, "p0.w0", upto=after_first)) == first
    assert cells_of(map_snapshot(store, "p0.w0")) == now
    assert cells_of(map_snapshot(store, "p0.w0", upto=after_first)) == first
    early = map_snapshot(store, "p0.w0", upto=5)
    assert early.evaluations == 5 and len(early.points) <= 5
    assert len(map_snapshot(store, "p0.w0", upto=0).points) == 0
    store.close()
    # a reopened run rebuilds the very same archive from the log
    async with await Run.open(path) as reopened:
        assert cells_of(map_snapshot(reopened, "p0.w0")) == now


async def test_timeline_and_lineage(tmp_path: Path) -> None:
    async with await Run.create(
        "circle_packing", path=tmp_path / "r.sqlite", workers=2, agents=3, evaluations=15, seed=1
    ) as run:
        for _ in range(3):
            await run.step()
        tl = timeline(run)
        f = tl.frame
        assert list(f["seq"]) == list(range(1, run.store.count() + 1))
        assert set(f["worker"]) >= {"p0.w0", "p0.w1"}
        best = f["best"].to_numpy()
        assert np.all(np.diff(best[~np.isnan(best)]) >= 0)  # best so far never falls
        assert np.nanmax(f["score"]) == pytest.approx(best[-1])
        for _, g in f.groupby("worker"):
            wb = g["worker_best"].dropna().to_numpy()
            assert np.all(np.diff(wb) >= 0)
        assert list(tl.planner["round"]) == [0, 1, 2]
        assert tl.planner["score"].iloc[-1] == pytest.approx(run.best.score)
        assert (np.diff(tl.planner["seq"]) > 0).all() and tl.planner["seq"].iloc[-1] <= len(f)
        cut = int(tl.planner["seq"].iloc[0])
        early = timeline(run.store, upto=cut)
        assert len(early.frame) == cut and list(early.planner["round"]) == [0]
        chain = lineage(run, run.best.id)
        assert chain[-1].id == run.best.id and chain[0].code == run.task.initial_code
        for parent, child in itertools.pairwise(chain):
            assert child.parents[0] == parent.id
        with pytest.raises(KeyError, match="no program"):
            lineage(run, "0" * 16)
        with pytest.raises(KeyError, match="workers are"):
            map_snapshot(run, "nobody")
        with pytest.raises(ValueError, match="upto"):
            timeline(run, upto=-1)


def test_voronoi_regions_tile_the_box() -> None:
    rng = np.random.default_rng(0)
    centers = rng.random((40, 2))
    box = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    area = 0.0
    for i in range(len(centers)):
        poly = voronoi_region(centers, i, box)
        x, y = poly[:, 0], poly[:, 1]
        area += 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
        # every vertex is at least as close to its own centre as to any other
        d = ((poly[:, None, :] - centers[None]) ** 2).sum(-1)
        assert np.all(d[:, i] <= d.min(axis=1) + 1e-9)
    assert area == pytest.approx(1.0)


@pytest.mark.parametrize("archive", ["cluster", "grid", "greedy"])
async def test_embedding_maps_replay_and_reopen_exactly(tmp_path: Path, archive: str) -> None:
    path = tmp_path / "r.sqlite"
    async with await Run.create(
        "deceptive_trap", path=path, workers=1, agents=4, evaluations=40, seed=2, archive=archive
    ) as run:
        await run.step()
        mid = run.store.count()
        first = map_snapshot(run, "p0.w0")
        await run.step()
        live = map_snapshot(run, "p0.w0")
        assert run.store.meta("descriptor") == {"kind": "embedding", "choice": "auto"}
        replayed = map_snapshot(run.store, "p0.w0", upto=run.store.count())
        assert cells_of(live) == cells_of(replayed) and live.point_ids == replayed.point_ids
        assert np.allclose(live.points, replayed.points)
        # the axes are the embedding's first two components, with their share of variance
        assert live.descriptor == "embedding"
        assert live.axes[0].startswith("code PC1 (") and "of variance" in live.axes[1]
        assert "code embedding" in live.note and "16 dimensions" in live.note
        # the points spread: the constants the search changed moved them
        assert np.ptp(live.points[:, 0]) > 0.1 and len(live.points) > 40
        if archive == "cluster":
            assert len(live.cells) > 1
        fig = archive_map_figure(live)  # the dashboard's map says what its axes are
        assert "code embedding" in fig.layout.title.subtitle.text
        assert fig.layout.xaxis.title.text == live.axes[0]
        elites = run.archives["p0.w0"].elites()  # type: ignore[union-attr]
        drawn = {c.elite_id for c in live.cells if c.elite_id}
        if archive == "cluster":
            assert drawn == {p.id for p in elites}
        if archive == "grid":  # 16 dimensions in the plane of two: a box per column
            assert drawn <= {p.id for p in elites} and len(live.cells) == 4
        if archive != "greedy":
            assert_elites_in_their_cells(live, run.archives["p0.w0"])
    store = Store(path)
    assert cells_of(map_snapshot(store, "p0.w0", upto=mid)) == cells_of(first)
    assert cells_of(map_snapshot(store, "p0.w0")) == cells_of(live)
    store.close()
    async with await Run.open(path) as reopened:  # Worker.restore rebuilds the same archive
        again = map_snapshot(reopened, "p0.w0")
        assert cells_of(again) == cells_of(live) and np.allclose(again.points, live.points)
        a, b = run.archives["p0.w0"], reopened.archives["p0.w0"]
        assert [p.id for p in a.elites()] == [p.id for p in b.elites()]  # type: ignore[union-attr]


# -- geometry: what is drawn is where the archive puts its programs --------------------------


def inside(poly: np.ndarray, p: np.ndarray, tol: float) -> bool:
    """Whether ``p`` lies in the convex polygon ``poly`` (either winding), up to ``tol``
    of the polygon's size (its vertices are float32)."""
    a, b = np.asarray(poly, dtype=float), np.roll(np.asarray(poly, dtype=float), -1, axis=0)
    cross = (b[:, 0] - a[:, 0]) * (p[1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (p[0] - a[:, 0])
    size = float(np.ptp(a, axis=0).prod()) or 1.0
    return bool((cross >= -tol * size).all() or (cross <= tol * size).all())


def toy_task(root: Path, dims: int) -> Task:
    """The toy task with ``dims`` features (a, b, c, d) and learned bounds, so a grid spans
    the programs and many cells fill."""
    toy = Task.load("toy")
    names = "abcd"[:dims]
    evaluator = toy.evaluator_path.read_text().replace(
        '"features": [x["a"], x["b"]]', f'"features": [{", ".join(f"x[{n!r}]" for n in names)}]'
    )
    assert evaluator != toy.evaluator_path.read_text()
    toml = f"""
        name = "toy{dims}"
        [features]
        names = {list(names)!r}
        [surface_areas]
        alpha = "The constants A and C."
        beta = "The constants B and D."
        """
    return write_task(root, program=toy.initial_code, evaluator=evaluator, toml=toml)


def assert_drawn_elites_inside(snap: MapSnapshot) -> int:
    """Every drawn cell with an elite has the elite's point inside it; returns how many."""
    point = dict(zip(snap.point_ids, snap.points, strict=True))
    filled = [c for c in snap.cells if c.elite_id is not None]
    for c in filled:
        assert c.elite_id in point, f"the elite of cell {c.index} is not among the points"
        assert inside(c.polygon, point[c.elite_id], 1e-5), (
            f"elite {c.elite_id} at {point[c.elite_id]} lies outside its drawn cell "
            f"{c.index}: {c.polygon.tolist()}"
        )
    return len(filled)


def assert_elites_in_their_cells(snap: MapSnapshot, archive: Any) -> int:
    """Every elite of ``archive`` is drawn, its point inside the drawn cell that shows it;
    returns the number of elites checked."""
    point = dict(zip(snap.point_ids, snap.points, strict=True))
    drawn = {c.elite_id: c for c in snap.cells if c.elite_id is not None}
    shape = tuple(int(b) for b in getattr(archive, "bins", ()))
    elites = archive.elites()
    for e in elites:
        assert e.id in point, f"elite {e.id} is not among the map's points"
        cell = drawn.get(e.id)
        if cell is None:
            # only a grid over > 2 dimensions draws columns of cells: find its column's box
            assert len(shape) > 2, f"elite {e.id} has no drawn cell"
            column = np.unravel_index(archive.cell_of(e.id), shape)[:2]
            (cell,) = (c for c in snap.cells if np.unravel_index(c.index, shape)[:2] == column)
            assert cell.score is not None and cell.score >= e.score  # the column's best
        assert inside(cell.polygon, point[e.id], 1e-5), (
            f"elite {e.id} at {point[e.id]} lies outside its drawn cell {cell.index}: "
            f"{cell.polygon.tolist()}"
        )
    return len(elites)


@pytest.mark.parametrize("dims", [2, 4])
@pytest.mark.parametrize("kind", ["grid", "cluster", "greedy"])
async def test_every_elite_lies_in_its_drawn_cell(tmp_path: Path, kind: str, dims: int) -> None:
    task = toy_task(tmp_path / "task", dims)
    async with await Run.create(
        task, path=tmp_path / "r.sqlite", workers=1, agents=4, evaluations=60, seed=1,
        archive=kind,
    ) as run:  # fmt: skip
        await run.step()
        archive = run.archives["p0.w0"]
        live = map_snapshot(run, "p0.w0")
        earlier = map_snapshot(run.store, "p0.w0", upto=run.store.count() // 2)
    # the counts are the archive's, whatever is drawn
    assert (live.cells_total, live.cells_filled) == (archive.cells, len(archive))
    if kind == "greedy":
        assert live.cells == () and live.cells_total == 1
        assert "programs placed by" in live.note
        return
    assert assert_elites_in_their_cells(live, archive) > 3, "too few elites to test anything"
    assert assert_drawn_elites_inside(earlier) > 1  # a replayed map too
    if kind == "grid":
        bins = [int(b) for b in archive.bins]
        # every box is drawn, empty ones too; over > 2 dimensions, one per column
        assert len(live.cells) == bins[0] * bins[1]
        assert live.cells_total == int(np.prod(bins)) > live.cells_filled
        if dims == 2:  # one box per cell: the empty ones are drawn (muted), not left out
            assert len(live.cells) == live.cells_total
        assert {c.covers for c in live.cells} == {int(np.prod(bins[2:]))}
        # the boxes tile the grid's bounds in its first two dimensions: none on a diagonal
        # (an unravelled flat index), none stacked
        areas = [float(np.ptp(c.polygon, axis=0).prod()) for c in live.cells]
        span = archive.bounds[:2, 1] - archive.bounds[:2, 0]
        assert sum(areas) == pytest.approx(float(span.prod()), rel=1e-4)
        if dims > 2:
            # the plane is the grid's own first two dimensions, so the boxes are exact
            assert live.axes == ("a", "b") and "3 bins per dimension" in live.note
            assert "the best elite of the 9 cells behind it" in live.note
    else:
        assert live.cells_total == live.cells_filled == len(live.cells)
        if dims > 2:
            assert "nearest its elite" in live.note and live.axes[0].startswith("PC1")
    # the map's title counts the archive's cells, not the drawn ones
    title = archive_map_figure(live).layout.title.text
    counted = (
        f"{live.cells_filled}/{live.cells_total} cells"
        if kind == "grid"
        else (f"{live.cells_total} cells")
    )
    assert counted in title, title


def test_cluster_regions_hold_their_programs_in_the_archive_metric() -> None:
    """Cluster-Elites assigns a program to the nearest centroid after dividing each
    dimension by its spread: the drawn Voronoi regions must use the same metric, not the
    map box's (which differ when a few outliers stretch one axis)."""
    rng = np.random.default_rng(4)
    archive = ClusterElites(dims=2, seed=0)
    x = np.column_stack([rng.lognormal(0, 1.2, 400), rng.uniform(0, 1, 400)])
    for k, (f, s) in enumerate(zip(x.tolist(), rng.random(400).tolist(), strict=True)):
        result = EvalResult(status=Status.OK, score=s)
        archive.add(Program(code=f"x = {k}\n").evaluated(result, tuple(f)))
    proj = Projection.as_is(2, ("x", "y"))
    cells, metric, _ = archive_cells(archive, proj)
    assert metric == pytest.approx(tuple(archive.scale))
    bounds = padded_bounds(np.vstack([x, np.array([c.center for c in cells])]))
    centers = np.array([c.center for c in cells])
    programs, descs = archive.history()
    for regions, expect_all in (
        (voronoi_regions(centers, bounds, metric=np.array(metric)), True),
        (voronoi_regions(centers, bounds), False),  # the box's metric: the old drawing
    ):
        outside = sum(
            not inside(regions[archive.cell_of(p.id)], d, 1e-7)
            for p, d in zip(programs, descs, strict=True)
        )
        assert (outside == 0) if expect_all else (outside > 0), outside
