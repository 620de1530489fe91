"""Planners, synthesis and run control with the offline model, the sandbox and SQLite."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

import pytest

from aster_nb.events import Event, GoalChanged, RunStateChanged
from aster_nb.program import Status
from aster_nb.run import Run
from aster_nb.store import StoreError
from aster_nb.sync import SyncRun
from aster_nb.task import TaskError

from .conftest import write_task


async def test_synthesis_beats_every_worker(tmp_path: Path) -> None:
    async with await Run.create(
        "toy", path=tmp_path / "r.sqlite", workers=2, agents=3, evaluations=20
    ) as run:
        goals = dict(run.planner.goals)
        assert "alpha" in goals["p0.w0"] and "beta" in goals["p0.w1"], "one surface area each"
        for _ in range(2):
            r = await run.step()
            worker_bests = [h.best.score for h in r.handoffs]
            assert all(s > r.base.score for s in worker_bests), "both workers improved their area"
            # The merge combined both improvements: strictly better than each worker's best.
            assert r.best.origin == "merge" and all(r.best.score > s for s in worker_bests)
            assert run.best is r.best and r.improved
        rounds = run.store.rounds()
        assert list(rounds["round"]) == [0, 1] and rounds["improved"].all()


async def test_planner_tree_records_who_made_every_program(tmp_path: Path) -> None:
    async with await Run.create(
        "toy", path=tmp_path / "r.sqlite", planners=2, workers=2, agents=2, evaluations=6
    ) as run:
        assert run.planner.name == "root" and set(run.workers) == {
            "p0.w0",
            "p0.w1",
            "p1.w0",
            "p1.w1",
        }
        await run.step()
        df = run.history()
        made = df[df["origin"] != "initial"]
        assert (made["planner"] != "").all()
        by_agents = made[made["origin"] == "edit"]
        assert set(by_agents["worker"]) == set(run.workers)
        assert all(
            w.startswith(p + ".")
            for w, p in zip(by_agents["worker"], by_agents["planner"], strict=True)
        )


async def test_steering_takes_effect_at_the_next_attempt(tmp_path: Path) -> None:
    run = await Run.create(
        "toy", path=tmp_path / "r.sqlite", workers=2, agents=2, evaluations=40, latency=0.05
    )
    changes: list[Event] = []
    run.bus.subscribe(lambda e: changes.append(e) if isinstance(e, GoalChanged) else None)
    task = run.start(rounds=1)
    while (run.store.attempts()["worker"] == "p0.w0").sum() < 4:
        await asyncio.sleep(0.02)
    new = "Improve `beta` instead: make B and D right."
    t_steer = time.time()
    run.steer("p0.w0", new)
    await task
    att = run.store.attempts().query("worker == 'p0.w0'")
    before, after = att[att["started"] < t_steer], att[att["started"] > t_steer]
    assert len(before) >= 4 and len(after) >= 2
    assert (after["goal"] == new).all(), "every attempt started after the steer uses the new goal"
    assert (before["goal"] != new).all()
    goals = run.store.goals()
    last = goals[goals["worker"] == "p0.w0"].iloc[-1]
    assert last["goal"] == new and last["set_by"] == "researcher" and last["pinned"] == 1
    assert any(c.set_by == "researcher" for c in changes)
    # Pinned: the planner's revision after the round left it alone.
    assert run.planner.goals["p0.w0"] == new
    await run.close()


async def test_goals_mapping_is_a_researcher_edit(tmp_path: Path) -> None:
    async with await Run.create(
        "toy", path=tmp_path / "r.sqlite", workers=1, agents=1, evaluations=2
    ) as run:
        run.planner.goals["p0.w0"] = "Improve `alpha` carefully."
        g = run.planner.goals.info("p0.w0")
        assert g.set_by == "researcher" and g.pinned
        with pytest.raises(KeyError, match="no worker or planner 'nope'"):
            run.steer("nope", "x")


async def test_pause_starts_nothing_until_resume(tmp_path: Path) -> None:
    run = await Run.create(
        "toy", path=tmp_path / "r.sqlite", workers=2, agents=3, evaluations=60, latency=0.1
    )
    task = run.start(rounds=1)
    while run.store.count("attempts") < 6:
        await asyncio.sleep(0.02)
    run.pause()
    t_pause = time.time()
    assert run.status.state == "paused"
    await asyncio.sleep(1.0)
    att = run.store.attempts()
    assert (att["started"] > t_pause).sum() == 0, "no attempt started while paused"
    in_flight = att[(att["started"] < t_pause) & (att["finished"] > t_pause)]
    assert len(in_flight) > 0, "attempts under way when pausing finished and were stored"
    n_paused = len(att)
    await asyncio.sleep(0.3)
    assert run.store.count("attempts") == n_paused
    t_resume = time.time()
    run.resume()
    assert run.status.state == "running"
    await task
    att = run.store.attempts()
    assert (att["started"] > t_resume).sum() > 0
    assert run.status.state == "finished"
    await run.close()


async def test_start_twice_is_one_runner_and_stop_ends_it(tmp_path: Path) -> None:
    run = await Run.create(
        "toy", path=tmp_path / "r.sqlite", workers=1, agents=2, evaluations=30, latency=0.05
    )
    t1 = run.start()
    assert run.start() is t1
    while run.store.count("attempts") < 3:
        await asyncio.sleep(0.02)
    await run.stop()
    assert t1.done() and run.status.state == "stopped"
    n = run.store.count("attempts")
    await asyncio.sleep(0.3)
    assert run.store.count("attempts") == n
    await run.close()


async def test_background_failure_is_an_event_and_a_status(tmp_path: Path) -> None:
    # The initial program passes create's check; the first edited one breaks the task's rule.
    task = write_task(
        tmp_path / "bad",
        program="# EVOLVE-BLOCK-START k\nX = 1.0\n# EVOLVE-BLOCK-END\n",
        evaluator=(
            "def evaluate(path):\n"
            "    first = 'X = 1.0\\n' in open(path).read()\n"
            "    return {'score': 1.0, 'features': [1.0, 2.0] if first else [1.0]}\n"
        ),
        toml='name = "bad"\n[features]\nnames = ["a", "b"]\n[surface_areas]\nk = "X."\n',
    )
    run = await Run.create(task, path=tmp_path / "r.sqlite", workers=1, agents=1, evaluations=3)
    states: list[RunStateChanged] = []
    run.bus.subscribe(lambda e: states.append(e) if isinstance(e, RunStateChanged) else None)
    t = run.start(rounds=1)
    await asyncio.wait([t])
    assert run.status.state == "failed"
    assert "declares features ['a', 'b']" in (run.status.error or "")
    assert states[-1].state == "failed" and "declares features" in states[-1].reason
    await run.close()


async def test_reopen_rebuilds_and_continues(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    async with await Run.create("toy", path=path, workers=2, agents=3, evaluations=15) as run:
        await run.step()
        run.steer("p0.w1", "Improve `beta` with small steps.")
        await run.step()
        best = run.best.id
        sizes = {n: len(a) for n, a in run.archives.items()}
        memories = {n: [len(m) for m in w.memories] for n, w in run.workers.items()}
        attempts = {n: w.attempts_total for n, w in run.workers.items()}
    async with await Run.open(path) as run:
        assert run.rounds_done == 2 and run.best.id == best
        assert {n: len(a) for n, a in run.archives.items()} == sizes
        assert {n: [len(m) for m in w.memories] for n, w in run.workers.items()} == memories
        assert {n: w.attempts_total for n, w in run.workers.items()} == attempts
        g = run.planner.goals.info("p0.w1")
        assert (
            g.text == "Improve `beta` with small steps." and g.pinned and g.set_by == "researcher"
        )
        r = await run.step()
        assert r.round == 2 and r.best.score >= r.base.score
        # Attempt numbering continues after reopening: no worker reuses a number.
        assert run.store.attempts().groupby("worker")["n"].apply(lambda s: s.is_unique).all()


async def test_spend_and_evaluations_are_kept_across_sessions(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    async with await Run.create(
        "toy", path=path, workers=2, agents=2, evaluations_per_round=6
    ) as run:
        await run.step()
        first = run.status
        assert first.tokens == run.spend.tokens > 0, "one session: the ledger is the run's spend"
        assert first.evaluations == run.store.count()  # every stored program, the initial one too
    async with await Run.open(path) as run:
        assert (run.status.tokens, run.status.usd) == (first.tokens, first.usd)
        assert run.status.evaluations == first.evaluations
        before = run.spent()
        assert before.by_model["offline"].tokens == before.tokens == first.tokens
        await run.step()
        assert run.status.tokens == first.tokens + run.spend.tokens > first.tokens
        total = run.status.tokens
    async with await Run.open(path) as run:
        assert run.status.tokens == total == run.spent().by_model["offline"].tokens
        assert run.spent().calls > before.calls, "the second session's calls were added"


def test_sync_layer_outside_and_inside_a_loop(tmp_path: Path) -> None:
    with SyncRun.create("toy", path=tmp_path / "a.sqlite", workers=1, agents=2, evaluations=5) as r:
        assert r.step().round == 0 and r.status.round == 1

    async def inside() -> tuple[int, int]:
        # A blocking call while this loop runs: the nest-asyncio2 path (a notebook cell).
        r = SyncRun.create("toy", path=tmp_path / "b.sqlite", workers=1, agents=2, evaluations=5)
        result = r.step()
        r.close()
        return result.round, len(result.handoffs)

    assert asyncio.run(inside()) == (0, 1)


async def test_create_refuses_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "r.sqlite").write_text("")
    with pytest.raises(FileExistsError, match=r"Run\.open"):
        await Run.create("toy", path=tmp_path / "r.sqlite")
    with pytest.raises(ValueError, match="agents must be >= 1"):
        await Run.create("toy", path=tmp_path / "q.sqlite", agents=0)


async def test_goals_from_the_model_when_the_task_marks_no_areas(tmp_path: Path) -> None:
    task = write_task(
        tmp_path / "plain",
        program=(
            "def scale():\n    return 1.0\n\n\ndef offset():\n    return 0.0\n\n\n"
            "def value():\n    return scale() * 2.0 + offset()\n"
        ),
        evaluator=(
            "import importlib.util\n"
            "def evaluate(path):\n"
            "    spec = importlib.util.spec_from_file_location('p', path)\n"
            "    m = importlib.util.module_from_spec(spec)\n"
            "    spec.loader.exec_module(m)\n"
            "    return {'score': -abs(m.value() - 7.0)}\n"
        ),
        toml='name = "plain"\n',
    )
    assert task.surface_areas == ()
    async with await Run.create(
        task, path=tmp_path / "r.sqlite", workers=2, agents=2, evaluations=10
    ) as run:
        assert len(run.planner.goals) == 0
        r = await run.step()
        goals = run.store.goals()
        first = goals.groupby("worker").first()
        assert set(first.index) == {"p0.w0", "p0.w1"} and (first["set_by"] == "planner").all()
        assert first["goal"].str.contains("`scale`|`offset`|`value`").all(), (
            "goals name the program's functions"
        )
        assert r.best.score >= r.base.score


async def test_spending_cap_stops_the_run_cleanly(tmp_path: Path) -> None:
    cap = 60_000
    run = await Run.create(
        "toy", path=tmp_path / "r.sqlite", workers=2, agents=3, evaluations=200, max_tokens=cap
    )
    states: list[RunStateChanged] = []
    run.bus.subscribe(lambda e: states.append(e) if isinstance(e, RunStateChanged) else None)
    task = run.start(rounds=3)
    await task
    s = run.status
    assert s.state == "stopped" and s.reason.startswith("budget: max_tokens=60000")
    assert 0 < s.tokens <= cap, "recorded spend never passes the cap"
    att = run.store.attempts()
    assert (att["outcome"] == "budget").any() and (
        att["input_tokens"] + att["output_tokens"]
    ).sum() <= cap
    assert states[-1].state == "stopped" and "max_tokens" in states[-1].reason
    n = run.store.count("attempts")
    await asyncio.sleep(0.2)
    assert run.store.count("attempts") == n, "no call starts after the cap"
    await run.close()


# -- create and open check their input and leave nothing behind ------------------------------

_LOADS_PROGRAM = (
    "import importlib.util\n"
    "def evaluate(path):\n"
    "    spec = importlib.util.spec_from_file_location('p', path)\n"
    "    m = importlib.util.module_from_spec(spec)\n"
    "    spec.loader.exec_module(m)\n"
    "    if not isinstance(m.X, float):\n"
    "        return {'score': 0.0, 'valid': False, 'reason': 'X must be a float'}\n"
    "    return {'score': m.X}\n"
)


def _children() -> set[int]:
    """Live child processes of this process (zombies excluded)."""
    me, out = os.getpid(), set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]  # "pid (comm) state ppid ..."
        if int(ppid) == me and state != "Z":
            out.add(int(d.name))
    return out


async def test_create_refuses_an_initial_program_that_raises(tmp_path: Path) -> None:
    task = write_task(
        tmp_path / "raises",
        program="X = 1.0\nraise RuntimeError('boom at import')\n",
        evaluator=_LOADS_PROGRAM,
        toml='name = "raises"\n',
    )
    runs = tmp_path / "runs"
    runs.mkdir()
    before = _children()
    with pytest.raises(TaskError, match="fails its first evaluation: RuntimeError: boom at import"):
        await Run.create(task, path=runs / "r.sqlite", workers=1, agents=1, evaluations=2)
    assert list(runs.iterdir()) == [], "the store of the failed create (and its side files)"
    deadline = time.monotonic() + 5
    while (left := _children() - before) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not left, f"sandbox processes left running: {sorted(left)}"


async def test_create_accepts_an_invalid_initial_program(tmp_path: Path) -> None:
    task = write_task(
        tmp_path / "invalid",
        program="X = 1\n",
        evaluator=_LOADS_PROGRAM,
        toml='name = "invalid"\n',
    )
    async with await Run.create(
        task, path=tmp_path / "r.sqlite", workers=1, agents=1, evaluations=2
    ) as run:
        assert run.initial_result is not None and run.initial_result.status is Status.INVALID
        assert run.initial_result.error == "X must be a float"
    async with await Run.create("toy", path=tmp_path / "t.sqlite", evaluations=2) as run:
        assert run.initial_result is not None and run.initial_result.ok
    async with await Run.open(tmp_path / "t.sqlite") as run:
        assert run.initial_result is None, "an opened run does not evaluate it again"


async def test_open_refuses_a_foreign_sqlite_file_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "contacts.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE people (name TEXT, phone TEXT)")
        db.execute("INSERT INTO people VALUES ('Ada', '555-0100')")
    db.close()
    before = path.read_bytes()
    children = _children()
    with pytest.raises(StoreError, match="is an SQLite database but not an aster_nb run"):
        await Run.open(path)
    assert path.read_bytes() == before, "the rejected file was written to"
    assert [p.name for p in tmp_path.iterdir()] == ["contacts.sqlite"], "no -wal/-shm files"
    assert _children() == children, "no sandbox started"
