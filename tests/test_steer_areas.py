"""Steering by explicit surface areas: what a goal's areas are, where they come from, and
that they (not the goal's words) decide which areas the next attempts edit."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from aster_nb.agents.goals import AreaError, Goals, parse_plan
from aster_nb.blocks import OUTSIDE, touched_areas
from aster_nb.events import Event, GoalChanged
from aster_nb.run import Run

CP = ("layout", "radii", "refine")  # circle_packing's areas, in source order


def test_goal_words_select_no_area_and_omitted_areas_are_kept() -> None:
    g = Goals(areas=CP)
    g.set("w", "Improve everything.")
    assert g.info("w").areas == CP and g.info("w").areas_by == "default"
    g.set("w", "Tune the step size.", areas=["refine", "layout"])
    assert g.info("w").areas == ("layout", "refine"), "the task's order"
    assert g.info("w").areas_by == "planner"
    # The goal: it names `layout` to keep it, and selects nothing by naming it.
    g["w"] = "Make `radii` grow more; keep the `layout` code as is."
    info = g.info("w")
    assert info.areas == ("layout", "refine") and info.areas_by == "planner", "kept as they were"
    assert info.set_by == "researcher" and info.pinned
    g.set("w", "Only radii.", by="researcher", areas=["radii"])
    assert g.info("w").areas == ("radii",) and g.info("w").areas_by == "researcher"
    g.pin("w", False)
    assert g.info("w").areas == ("radii",) and not g.info("w").pinned


def test_bad_area_names_error_naming_the_valid_ones() -> None:
    g = Goals(areas=CP)
    g.set("w", "x")
    with pytest.raises(
        AreaError, match=r"no surface area 'layuot'.*\['layout', 'radii', 'refine'\]"
    ):
        g.set("w", "y", areas=["layuot"])
    with pytest.raises(AreaError, match="at least one surface area"):
        g.set("w", "y", areas=[])
    with pytest.raises(AreaError, match="list of area names"):
        g.set("w", "y", areas="radii")  # type: ignore[arg-type]
    assert g["w"] == "x", "a refused steer changes nothing"


def test_plan_lines_choose_areas_explicitly() -> None:
    reply = (
        "GOAL p0.w0 (areas: radii, `refine`): Grow radii; keep `layout`.\n"
        "GOAL p0.w1: Keep going on `layout`.\n"
        "GOAL p0.w2 (areas: nowhere): Something.\n"
    )
    plan = parse_plan(reply, CP)
    assert plan["p0.w0"] == ("Grow radii; keep `layout`.", ("radii", "refine"))
    assert plan["p0.w1"] == ("Keep going on `layout`.", None), "no areas part: keep them"
    assert plan["p0.w2"][1] is None, "unknown names are dropped, not guessed"


def test_touched_areas_names_the_blocks_an_edit_changed() -> None:
    code = "a = 1\n# EVOLVE-BLOCK-START x\nX = 1\n# EVOLVE-BLOCK-END\n# EVOLVE-BLOCK-START y\nY = 1\n# EVOLVE-BLOCK-END\n"
    assert touched_areas(code, code) == ()
    assert touched_areas(code, code.replace("Y = 1", "Y = 2")) == ("y",)
    assert touched_areas(code, code.replace("a = 1", "a = 2").replace("X = 1", "X = 3")) == (
        "x",
        OUTSIDE,
    )


async def test_steer_with_areas_changes_which_areas_the_next_attempts_edit(
    tmp_path: Path,
) -> None:
    run = await Run.create(
        "circle_packing",
        path=tmp_path / "r.sqlite",
        workers=1,
        agents=2,
        evaluations_per_round=36,
        latency=0.02,
    )
    assert run.goals.info("p0.w0").areas == CP, "one worker: every area"
    changes: list[Event] = []
    run.bus.subscribe(lambda e: changes.append(e) if isinstance(e, GoalChanged) else None)
    with pytest.raises(AreaError, match="its areas are"):
        run.steer("p0.w0", "x", areas=["nope"])
    task = run.start(rounds=1)
    while run.store.count("attempts") < 8:
        await asyncio.sleep(0.02)
    t_steer = time.time()
    run.steer("p0.w0", "Refine harder; keep the `layout` code as is.", areas=["refine"])
    await task
    att = run.store.attempts()
    areas = att["areas"].map(json.loads)
    made = att["program_id"].notna()
    before = areas[made & (att["started"] < t_steer)]
    after = areas[made & (att["started"] > t_steer)]
    assert len(after) >= 5
    assert any(set(a) - {"refine"} for a in before), "before: other areas were edited too"
    assert all(set(a) <= {"refine"} for a in after), "after: only `refine`, never `layout`"
    assert any(a == ["refine"] for a in after)
    focus = att.loc[att["started"] > t_steer, "focus"].map(json.loads)
    assert all(f == ["refine"] for f in focus), "the prompt's focus is the resolved area"
    g = run.goals.info("p0.w0")
    assert g.areas == ("refine",) and g.areas_by == "researcher"
    last = run.store.goals().iloc[-1]
    assert json.loads(last["areas"]) == ["refine"] and last["areas_by"] == "researcher"
    assert changes[-1].areas == ("refine",) and changes[-1].areas_by == "researcher"
    await run.close()
    async with await Run.open(tmp_path / "r.sqlite") as again:
        g = again.goals.info("p0.w0")
        assert g.areas == ("refine",) and g.areas_by == "researcher", "kept by the store"


async def test_planner_splits_areas_explicitly_and_an_old_store_opens(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    async with await Run.create(
        "toy", path=path, workers=2, agents=1, evaluations_per_round=2
    ) as run:
        assert run.goals.info("p0.w0").areas == ("alpha",)
        assert run.goals.info("p0.w1").areas == ("beta",)
        assert run.goals.info("p0.w0").areas_by == "planner"
    # A store written before areas were kept: drop the columns, as an old file lacks them.
    db = sqlite3.connect(path)
    for table, col in [("goals", "areas"), ("goals", "areas_by"), ("attempts", "focus")]:
        db.execute(f"ALTER TABLE {table} DROP COLUMN {col}")
    db.execute("ALTER TABLE attempts DROP COLUMN areas")
    db.commit()
    db.close()
    async with await Run.open(path) as run:
        g = run.goals.info("p0.w0")
        assert g.areas == ("alpha", "beta") and g.areas_by == "default"
        await run.step()
        assert "areas" in run.store.attempts().columns


def test_the_offline_planner_moves_a_stalled_worker_by_its_listed_areas() -> None:
    from aster_nb.llm.synthesis import write_plan
    from aster_nb.prompts import render

    prompt = render(
        "plan",
        areas="- layout: where.\n- radii: how big.\n- refine: local search.",
        program="(none)",
        goals=(
            "- p0.w0 (open, areas: refine): Keep the `layout` code as is; tune steps.\n"
            "- p0.w1 (open, areas: radii): Grow radii."
        ),
        handoffs="### p0.w0\nbest: 1 (base 1, gain +0)\n### p0.w1\nbest: 2 (base 1, gain +1)\n",
    )
    plan = parse_plan(write_plan(prompt), CP)
    # p0.w0 stalled on `refine` (its listed area, not the `layout` its words mention): it
    # moves to the untouched `layout`, explicitly; p0.w1 gained and keeps its areas.
    assert plan["p0.w0"][1] == ("layout",) and "moved from `refine`" in plan["p0.w0"][0]
    assert plan["p0.w1"] == ("Grow radii.", None)


async def test_a_planner_steered_with_areas_splits_them_over_its_workers(tmp_path: Path) -> None:
    async with await Run.create(
        "toy", path=tmp_path / "r.sqlite", planners=2, workers=2, agents=1, evaluations_per_round=2
    ) as run:
        assert run.goals.info("p1").areas == ("beta",)
        run.steer("p1", "Work on the constants; leave `beta` alone.", areas=["alpha"])
        await run.step()
        for w in ("p1.w0", "p1.w1"):
            g = run.goals.info(w)
            assert g.areas == ("alpha",) and g.areas_by == "planner", (w, g)
        att = run.store.attempts()
        focus = att.loc[att["worker"].str.startswith("p1."), "focus"].map(json.loads)
        assert len(focus) and all(f == ["alpha"] for f in focus)
