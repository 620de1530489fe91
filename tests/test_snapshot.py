"""Snapshots: archive maps, timelines and lineages of live, replayed and reopened runs."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from aster_nb.figures import archive_map_figure
from aster_nb.geometry import voronoi_region
from aster_nb.run import Run
from aster_nb.snapshot import lineage, map_snapshot, timeline, workers
from aster_nb.store import Store


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
        assert "code embedding" in fig.layout.title.text
        assert fig.layout.xaxis.title.text == live.axes[0]
        elites = run.archives["p0.w0"].elites()  # type: ignore[union-attr]
        if archive != "greedy":
            assert {c.elite_id for c in live.cells if c.elite_id} == {p.id for p in elites}
    store = Store(path)
    assert cells_of(map_snapshot(store, "p0.w0", upto=mid)) == cells_of(first)
    assert cells_of(map_snapshot(store, "p0.w0")) == cells_of(live)
    store.close()
    async with await Run.open(path) as reopened:  # Worker.restore rebuilds the same archive
        again = map_snapshot(reopened, "p0.w0")
        assert cells_of(again) == cells_of(live) and np.allclose(again.points, live.points)
        a, b = run.archives["p0.w0"], reopened.archives["p0.w0"]
        assert [p.id for p in a.elites()] == [p.id for p in b.elites()]  # type: ignore[union-attr]
