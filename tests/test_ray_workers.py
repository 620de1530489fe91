"""Workers as Ray actors (aster_nb.actors) on a real two-node Ray cluster on this machine.

The driver keeps the planners and the one store; each worker's agents, archive and
memories run in an actor of their own. What must hold is what holds in one process: every
program is in the store before an event shows it, each worker spends exactly its budget,
the driver's copy of an archive is the actor's, steering and pausing reach the agents, and
a worker whose actor dies goes on from the store.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from aster_nb.actors import RemoteWorker
from aster_nb.actors.journal import Journal, JournalSpend, JournalStore, JournalWatch, apply
from aster_nb.actors.service import ServiceExecutor
from aster_nb.events import Event, EventBus, ProgramEvaluated
from aster_nb.llm import FailureWatch, Spend
from aster_nb.llm.base import Usage
from aster_nb.records import EvalResult, Program, Status
from aster_nb.run import Run
from aster_nb.runconfig import RunConfig
from aster_nb.store import Store
from aster_nb.store.curves import Point

from .ray_cluster import RayCluster, connected, with_second_node

BUDGET = 12  # evaluations per worker per round


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    with connected() as c:
        yield c


@pytest.fixture
def two_nodes(cluster: RayCluster) -> RayCluster:
    return with_second_node(cluster)


def _ok(code: str, score: float) -> Program:
    return Program(code=code, worker="w").evaluated(
        EvalResult(status=Status.OK, score=score), (score,)
    )


# -- the journal (no cluster) -------------------------------------------------------------


def test_a_journal_applies_writes_before_their_events_and_keeps_the_first_copy(
    tmp_path: Path,
) -> None:
    run_store = Store(tmp_path / "run.sqlite")
    run_store.set_meta("run", {"task": "t"})
    journal = Journal()
    replica = JournalStore.replica(run_store.snapshot(), journal)
    assert replica.meta("run") == {"task": "t"}, "the copy starts as the run's store"

    # the worker's writes, in its order; one program another worker stores first
    mine, theirs = _ok("a = 1", 1.0), _ok("a = 2", 2.0)
    for p in (mine, theirs):
        replica.add_program(p)
        replica.add_details(p.id, seeds=[], curve=[Point(seed=0, step=10, name="loss", value=3.0)])
        replica.add_archive_entry(worker="w", program_id=p.id)
        journal.append(("event", ProgramEvaluated(program=p, worker="w", n=0, improved=True)))
    spend = JournalSpend(journal)
    r = spend.reserve(1.0, 100, tags=(("worker", "w"),))
    spend.settle(r, Usage(input_tokens=30, output_tokens=20), 0.5)
    watch = JournalWatch(journal=journal)
    watch.failed("timeout")
    watch.failed("timeout")
    assert not watch.tripped, "a worker's watch never trips by itself"
    entries = journal.take()
    assert not journal and len(entries) == 11

    run_store.add_program(theirs.evaluated(EvalResult(status=Status.OK, score=9.0), (9.0,)))
    bus = EventBus()
    seen: list[tuple[str, bool]] = []

    def on(e: Event) -> None:
        assert isinstance(e, ProgramEvaluated)
        seen.append((e.program.id, e.program.id in run_store))

    bus.subscribe(on)
    run_spend, run_watch = Spend(), FailureWatch(limit=2)
    applied = apply(entries, store=run_store, bus=bus, spend=run_spend, watch=run_watch)

    assert seen == [(mine.id, True), (theirs.id, True)], "every event after its write"
    assert run_store.get(theirs.id).score == 9.0, "the first stored copy stays"
    assert run_store.curve(mine.id) and not run_store.curve(theirs.id)
    assert run_store.archive_log("w") == [mine.id, theirs.id]
    assert applied == 9, "the refused program and its details were not applied"
    assert (run_spend.usd, run_spend.tokens, run_spend.calls) == (0.5, 50, 1)
    assert run_spend.by("worker")["w"].calls == 1
    assert run_watch.tripped, "the run's watch sees every worker's failures"

    with pytest.raises(ValueError, match=r"may not call Store\.close"):
        apply([("store", "close", (), {})], store=run_store, bus=bus)


def test_worker_actors_need_the_ray_executor() -> None:
    with pytest.raises(ValueError, match="worker_actors=True needs executor='ray'"):
        RunConfig(task="toy", worker_actors=True)


# -- on the cluster -----------------------------------------------------------------------


async def _create(path: Path, **config: object) -> Run:
    return await Run.create(
        "toy",
        path=path,
        executor="ray",
        worker_actors=True,
        **({"workers": 2, "agents": 4, "evaluations_per_round": BUDGET} | config),
    )


def _remote(run: Run) -> list[RemoteWorker]:
    workers = list(run.workers.values())
    assert all(isinstance(w, RemoteWorker) for w in workers)
    return workers  # type: ignore[return-value]


async def test_workers_run_in_actors_and_the_driver_keeps_the_one_store(
    two_nodes: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no background reads of the service's counters: what stats show after a step is
    # what the round's end read
    monkeypatch.setattr(ServiceExecutor, "refresh_every", 3600.0)
    run = await _create(tmp_path / "run.sqlite")
    late: list[str] = []

    def check(e: Event) -> None:
        p = getattr(e, "program", None)
        if p is not None and p.id not in run.store:
            late.append(p.id)

    run.bus.subscribe(check)
    try:
        await run.step()
        await run.step()
        workers = _remote(run)
        actor_archives = [await w.actor.archive_ids.remote() for w in workers]
        spent = run.spent()
        attempts = run.store.count("attempts")
        stats = run.executor.stats
    finally:
        await run.close()
    assert not late, "an event showed a program the store did not have"
    assert stats["evaluations"] >= 2 * 2 * BUDGET, f"the rounds' evaluations are counted: {stats}"
    assert stats["evaluations"] == sum(n["evaluations"] for n in stats["nodes"].values()), stats
    hosts = [w.host for w in workers]
    assert all(h["pid"] != os.getpid() for h in hosts), "the agents ran outside the driver"
    assert len({h["node_id"] for h in hosts}) == 2, f"spread over both nodes: {hosts}"
    store = Store(tmp_path / "run.sqlite")
    for w in workers:
        for r in (0, 1):
            mine = [p for p in store.programs(worker=w.name) if p.round == r]
            assert len(mine) == BUDGET, f"{w.name} round {r}: exactly its budget is stored"
    for w, ids in zip(workers, actor_archives, strict=True):
        assert w.archive is not None and len(ids) > 1
        assert sorted(p.id for p in w.archive.elites()) == ids, "the map's archive is the actor's"
    assert spent.calls >= attempts > 0, "the actors' model calls are in the run's ledger"
    assert len(store.handoffs()) == 4


async def test_a_steer_and_a_pause_reach_the_worker_actors(
    two_nodes: RayCluster, tmp_path: Path
) -> None:
    run = await _create(tmp_path / "run.sqlite", latency=0.05, evaluations_per_round=400)
    w0 = _remote(run)[0]
    try:
        run.start(rounds=1)
        deadline = time.monotonic() + 120
        while run.store.count("attempts") < 20:
            assert time.monotonic() < deadline, "no attempts came back from the actors"
            await asyncio.sleep(0.05)
        run.steer(w0.name, "Only touch the step size.")
        await asyncio.sleep(1.0)
        run.pause()
        await asyncio.sleep(1.0)  # attempts in flight finish and are synced
        paused_at = run.store.count("attempts")
        await asyncio.sleep(1.5)
        still = run.store.count("attempts")
        run.resume()
        await asyncio.sleep(0.5)
        await run.stop()
        goals = [r["goal"] for r in run.store.attempt_rows(w0.name)]
    finally:
        await run.close()
    assert still == paused_at, "no attempt started while paused"
    assert "Only touch the step size." in goals, "the steer reached the actor's agents"
    first = goals.index("Only touch the step size.")
    assert all(g == "Only touch the step size." for g in goals[first:])


async def test_a_worker_actor_killed_mid_round_goes_on_from_the_store(
    two_nodes: RayCluster, tmp_path: Path
) -> None:
    run = await _create(tmp_path / "run.sqlite", latency=0.05, evaluations_per_round=40)
    w0 = _remote(run)[0]
    try:
        stepping = asyncio.ensure_future(run.step())
        deadline = time.monotonic() + 120
        while len(run.store.programs(worker=w0.name)) < 10:
            assert time.monotonic() < deadline, "the worker stored nothing"
            await asyncio.sleep(0.02)
        dead = w0.host["pid"]
        ray.kill(w0.actor)
        result = await stepping
        stored = run.store.programs(worker=w0.name)
        handoffs = run.store.handoffs()
    finally:
        await run.close()
    assert w0.actor_deaths == 1 and w0.host["pid"] != dead, "a new actor took the round on"
    assert len(stored) == 40, "the round spent exactly its budget, the dead actor's share too"
    assert all(p.status is not Status.LOST for p in stored)
    assert sorted(handoffs["worker"]) == ["p0.w0", "p0.w1"] and result.best.ok


async def test_a_run_with_worker_actors_reopens_from_its_store(
    two_nodes: RayCluster, tmp_path: Path
) -> None:
    path = tmp_path / "run.sqlite"
    run = await _create(path)
    try:
        await run.step()
        before = {n: sorted(p.id for p in a.elites()) for n, a in run.archives.items() if a}
    finally:
        await run.close()
    run = await Run.open(path)
    try:
        after = {n: sorted(p.id for p in a.elites()) for n, a in run.archives.items() if a}
        await run.step()
        actor_archive = await _remote(run)[0].actor.archive_ids.remote()
        w0 = _remote(run)[0]
        rounds = {p.round for p in run.store.programs(worker=w0.name)}
    finally:
        await run.close()
    assert after == before, "the driver's archives are rebuilt from the store"
    assert rounds == {0, 1}
    assert sorted(p.id for p in w0.archive.elites()) == actor_archive


async def test_the_second_node_dying_mid_round_loses_no_program(
    two_nodes: RayCluster, tmp_path: Path
) -> None:
    # last in the module: it kills the second node, with a worker actor and a node
    # sandbox on it
    # a round long enough that the worker on the second node is still in it when Ray
    # notices the node is gone (seconds after the raylet dies)
    run = await _create(tmp_path / "run.sqlite", latency=0.05, evaluations_per_round=150)
    workers = _remote(run)
    try:
        stepping = asyncio.ensure_future(run.step())
        deadline = time.monotonic() + 120
        while run.store.count("attempts") < 20:
            assert time.monotonic() < deadline, "the workers stored nothing"
            await asyncio.sleep(0.02)
        second = next(
            n["NodeID"]
            for n in ray.nodes()
            if n["Alive"] and "node:__internal_head__" not in n["Resources"]
        )
        on_second = [w for w in workers if w.host["node_id"] == second]
        assert len(on_second) == 1, "one worker per node"
        assert len(run.store.programs(worker=on_second[0].name)) < 100, "still mid-round"
        assert two_nodes.second is not None
        os.kill(two_nodes.second.raylet_pid(), signal.SIGKILL)
        result = await stepping
        stored = {w.name: run.store.programs(worker=w.name) for w in workers}
        stats = run.executor.stats
    finally:
        await run.close()
    assert on_second[0].actor_deaths == 1 and on_second[0].host["node_id"] != second
    assert all(len(ps) == 150 for ps in stored.values()), "each worker spent exactly its budget"
    assert all(p.status is not Status.LOST for ps in stored.values() for p in ps)
    assert stats["lost"] == 0 and result.best.ok
