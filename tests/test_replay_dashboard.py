"""Replay of the whole dashboard: the goal editors and the best diff show the run as it was
after evaluation ``t`` (read-only goals), and return to the present at "live". Real runs
(offline model, sandbox, SQLite), driven in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aster_nb.records import code_hash
from aster_nb.run import Run
from aster_nb.ui import Dashboard
from aster_nb.ui.past import best_at, evaluation_ends, goals_at, placed

WORKER = "p0.w0"


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    r = await Run.create(
        "toy", path=tmp_path / "r.sqlite", workers=2, agents=3, evaluations_per_round=12, seed=1
    )
    yield r
    await r.close()


async def drained(db: Dashboard) -> None:
    for _ in range(500):
        if not any(v.throttle.pending for v in db.views.values()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the views kept scheduling redraws")


async def test_replay_rewinds_goals_and_the_best_diff(run: Run) -> None:
    await run.step()
    t0 = run.store.count()  # after round 0, its merge included
    best0 = run.best
    before = run.goals.info(WORKER)
    steer = "Researcher's goal: grow alpha only."
    run.steer(WORKER, steer)
    await run.step()
    best1 = run.best
    assert best0 is not None and best1 is not None and best1.id != best0.id

    db = Dashboard(run)
    ed = db.goals.editors[WORKER]
    assert ed.text.value == steer and not ed.apply.disabled
    assert best1.id in db.diff.title.value

    # After round 0 and the steer written then: the steer shows, the best is round 0's.
    db.replay.seek(t0)
    await drained(db)
    assert ed.text.value == steer and "set by researcher" in ed.by.value
    assert ed.apply.disabled and ed.text.disabled, "nobody steers the past"
    assert best0.id in db.diff.title.value and f"as after evaluation {t0}" in db.diff.title.value
    assert "goals, best diff" in db.replay.banner.value
    with pytest.raises(RuntimeError, match="replay of the past"):
        db.goals.apply(WORKER)

    # One evaluation earlier: round 0 had not ended: the planner's goal, the initial best.
    db.replay.seek(t0 - 1)
    await drained(db)
    assert ed.text.value == before.text and before.set_by in ed.by.value
    initial = code_hash(run.task.initial_code)
    assert initial in db.diff.title.value and best0.id not in db.diff.title.value

    # A goal changed while replaying waits for live; live shows the present again.
    later = "Researcher's goal, later: grow beta."
    run.steer(WORKER, later)
    await drained(db)
    assert ed.text.value == before.text
    db.replay.follow()
    await drained(db)
    assert ed.text.value == later and not ed.apply.disabled and not ed.text.disabled
    assert best1.id in db.diff.title.value and "as after" not in db.diff.title.value
    assert db.errors == []
    db.close()


async def test_past_reads_place_records_among_the_evaluations(run: Run) -> None:
    await run.step()
    n = run.store.count()
    history = run.history()
    ends = evaluation_ends(history)
    # Two evaluations can end at the same stored time; both are placed by then, so probe
    # at the first k >= 3 that is followed by a later end.
    k = next(i for i in range(3, n) if ends[i - 1] < ends[i])
    times = [ends[0] - 1, ends[k - 1], (ends[k - 1] + ends[k]) / 2, ends[-1] + 1]
    assert list(placed(times, history)) == [0, k, k, n]
    assert goals_at(run, 0) and set(goals_at(run, n)) == set(run.workers)
    first = best_at(run, 0)
    assert first is not None and first.id == code_hash(run.task.initial_code)
    last = best_at(run, n)
    assert last is not None and run.best is not None and last.id == run.best.id
    db = Dashboard(run)
    with pytest.raises(ValueError, match="upto must be >= 0"):
        db.goals.show(upto=-1)
    db.close()


async def test_handoff_feed_carries_the_report_sites_and_flags(run: Run) -> None:
    """Each worker's handoff entry has its report's warning flags and by-site rows, the
    same from events and from the store; a planner's (no report) has none."""
    import json

    from aster_nb.ui import HandoffFeed
    from aster_nb.ui.handoffs import SITES_SHOWN

    live = HandoffFeed(run, interval=0.0)
    await run.step()
    await asyncio.sleep(0.05)
    live.refresh()
    stored = HandoffFeed(run)
    df = run.handoffs().iloc[::-1]
    assert len(live.entries) == len(stored.entries) == len(df) > 0
    with_report = 0
    for e, s, (_, row) in zip(live.entries, stored.entries, df.iterrows(), strict=True):
        assert (e["worker"], e["sites"], e["flags"]) == (s["worker"], s["sites"], s["flags"])
        if not isinstance(row["report"], str):
            assert s["sites"] == [] and s["flags"] == []
            continue
        with_report += 1
        rep = json.loads(row["report"])
        assert [x["site"] for x in s["sites"]] == [x["site"] for x in rep["sites"]][:SITES_SHOWN]
        assert [f["kind"] for f in s["flags"]] == [f["kind"] for f in rep["flags"]]
        assert s["sites_more"] == max(0, len(rep["sites"]) - SITES_SHOWN)
        assert all(x["tried"] >= x["evaluated"] >= x["failed"] for x in s["sites"])
    assert with_report >= 2, "both workers' handoffs carry a report"
    assert any(e["sites"] for e in stored.entries), "a round of edits tried some site"
    live.close()
    stored.close()
