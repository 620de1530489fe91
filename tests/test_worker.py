"""A worker end to end with the offline model, the real sandbox and a real SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from aster_nb.agents import Budget, Worker
from aster_nb.events import Event, ProgramEvaluated
from aster_nb.llm import OfflineModel, Request, Response
from aster_nb.program import Program
from aster_nb.sandbox import LocalExecutor
from aster_nb.store import Store
from aster_nb.task import Task

from .conftest import write_task

# Valid while X <= 1.2: upward perturbations often break it, so failures are common.
CLIFF_PROGRAM = """\
# EVOLVE-BLOCK-START knob
X = {x}
# EVOLVE-BLOCK-END
def value():
    return X
"""
CLIFF_EVALUATOR = """\
import importlib.util

def evaluate(path):
    spec = importlib.util.spec_from_file_location("prog", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    x = float(m.value())
    if x > 1.2:
        return {"valid": False, "reason": f"X = {x} is above the cliff at 1.2"}
    return {"score": x, "features": [x]}
"""
CLIFF_TOML = """\
name = "cliff"
[features]
names = ["x"]
[surface_areas]
knob = "The constant X."
"""


def cliff(tmp_path: Path, x: float) -> Task:
    return write_task(
        tmp_path / f"cliff{x}",
        program=CLIFF_PROGRAM.format(x=x),
        evaluator=CLIFF_EVALUATOR,
        toml=CLIFF_TOML,
    )


async def _run(
    task: Task,
    store: Store,
    ex: LocalExecutor,
    *,
    budget: int,
    agents: int = 4,
    seed: int = 0,
    archive: str = "cluster",
    model=None,
    **kw,
):
    w = Worker(
        name="w0",
        task=task,
        model=model or OfflineModel(seed=seed),
        executor=ex,
        store=store,
        agents=agents,
        archive=archive,
        seed=seed,
        **kw,
    )
    h = await w.run(
        "Raise the score via alpha and beta",
        Program(code=task.initial_code),
        Budget(evaluations=budget),
    )
    return w, h


async def test_budget_store_and_handoff(
    tmp_path: Path, toy: Task, toy_executor: LocalExecutor
) -> None:
    store = Store(tmp_path / "run.sqlite")
    seen_in_store: list[bool] = []
    w, h = None, None

    def check(e: Event) -> None:
        if isinstance(e, ProgramEvaluated):
            # A program is committed before any event reports it; read through a second connection.
            with sqlite3.connect(store.path) as db:
                seen_in_store.append(
                    db.execute("SELECT 1 FROM programs WHERE id=?", (e.program.id,)).fetchone()
                    is not None
                )

    from aster_nb.events import EventBus

    bus = EventBus()
    bus.subscribe(check)
    w, h = await _run(toy, store, toy_executor, budget=40, bus=bus)
    df = store.history()
    assert (df["worker"] == "w0").sum() == 40, "exactly the budget of new programs"
    assert len(df) == 41  # plus the initial program
    assert seen_in_store and all(seen_in_store)
    attempts = store.attempts()
    assert len(attempts) >= 40 and set(attempts["agent"]) == {0, 1, 2, 3}
    assert h.best is not None and h.best.score > -12.75
    assert h.stats["evaluations"] == 40 and h.stats["base_score"] == -12.75
    assert h.done.startswith(
        f"{h.stats['attempts']} attempts from the round's start (-12.75): 40 evaluations "
        f"({h.stats['ok']} ok,"
    )
    assert h.learned and h.concerns
    assert "+" in h.diff and "-" in h.diff, "the best program's diff against the base"
    assert len(store.handoffs()) == 1
    # Every agent remembers its own experiments, and they appear in its next prompt.
    assert all(len(m) > 0 for m in w.memories)
    store.close()


async def test_seeded_runs_are_reproducible(tmp_path: Path, toy: Task) -> None:
    results = []
    for i, conc in enumerate((1, 2)):  # different evaluation concurrency, so different timing
        async with LocalExecutor.from_task(toy, concurrency=conc) as ex:
            store = Store(tmp_path / f"r{i}.sqlite")
            _, h = await _run(toy, store, ex, budget=30, agents=4, seed=7)
            att = store.attempts()
            att = att.sort_values("n")
            results.append(
                (h.best.id, list(att["program_id"]), list(att["parent_id"]), list(att["outcome"]))
            )
            store.close()
    assert results[0][0] == results[1][0]
    assert results[0][1] == results[1][1], "same attempts produce the same programs"
    assert results[0][2] == results[1][2], "from the same parents"
    assert results[0][3] == results[1][3]


CRASH_EVALUATOR = """\
import importlib.util

def evaluate(path):
    spec = importlib.util.spec_from_file_location("prog", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return {"score": float(m.value()), "features": [float(m.value())]}
"""
CRASH_PROGRAM = """\
# EVOLVE-BLOCK-START knob
X = 3.0
# EVOLVE-BLOCK-END
def value():
    if X > 1.2:
        raise ValueError(f"X = {X} is too large")
    return X
"""


async def test_runs_from_a_crashing_base_are_reproducible(tmp_path: Path) -> None:
    outcomes = []
    task = write_task(
        tmp_path / "crash",
        program=CRASH_PROGRAM,
        evaluator=CRASH_EVALUATOR,
        toml=CLIFF_TOML.replace("cliff", "crash"),
    )
    for i in range(2):  # two executors: fresh sandbox dirs and counters
        async with LocalExecutor.from_task(task, concurrency=2) as ex:
            store = Store(tmp_path / f"x{i}.sqlite")
            await _run(task, store, ex, budget=25, agents=3, seed=5)
            att = store.attempts().sort_values("n")
            outcomes.append((list(att["program_id"]), list(att["reason"].fillna(""))))
            errors = store.history().query("status == 'error'")["error"]
            # The sandbox's own frames and temp paths are not in the reason.
            assert errors.str.contains("ValueError: X = ").all()
            assert not errors.str.contains("aster_nb-sandbox").any()
            store.close()
    assert outcomes[0] == outcomes[1]


def test_edits_must_keep_the_surface_areas() -> None:
    from aster_nb.agents.attempt import check_markers
    from aster_nb.edits import EditError

    check_markers(CLIFF_PROGRAM, CLIFF_PROGRAM.replace("X = {x}", "X = 2"))
    with pytest.raises(EditError, match="changed the EVOLVE-BLOCK areas"):
        check_markers(CLIFF_PROGRAM, "X = 1\n")
    with pytest.raises(EditError, match="broke the EVOLVE-BLOCK markers"):
        check_markers(CLIFF_PROGRAM, CLIFF_PROGRAM.replace("# EVOLVE-BLOCK-END", ""))


async def test_failed_programs_are_never_parents(tmp_path: Path) -> None:
    task = cliff(tmp_path, 1.0)
    async with LocalExecutor.from_task(task, concurrency=2) as ex:
        store = Store(tmp_path / "c.sqlite")
        await _run(task, store, ex, budget=40, agents=3)
        progs = store.history().set_index("id")
        att = store.attempts()
        assert (progs["status"] == "invalid").sum() >= 3, "the cliff must produce failures"
        parent_status = progs.loc[att["parent_id"], "status"]
        assert (parent_status == "ok").all()
        assert set(att["outcome"]) >= {"invalid"}
        store.close()


async def test_invalid_start_is_repaired_not_copied(tmp_path: Path) -> None:
    task = cliff(tmp_path, 2.0)
    async with LocalExecutor.from_task(task, concurrency=2) as ex:
        store = Store(tmp_path / "c.sqlite")
        _w, h = await _run(task, store, ex, budget=30, agents=2)
        base_id = Program(code=task.initial_code).id
        att = store.attempts().sort_values("n")
        first_ok = store.history().query("status == 'ok'")
        assert len(first_ok) > 0, "some agent repaired the program"
        # Until a valid program exists, every attempt starts from the failing base (with its
        # error in the prompt); afterwards only valid programs are parents.
        assert att.iloc[0]["parent_id"] == base_id
        assert h.best is not None and h.best.ok
        store.close()


class FlakyModel:
    """Raises on every third call: the worker must record it and go on."""

    name = "flaky"

    def __init__(self) -> None:
        self.inner = OfflineModel(seed=1)
        self.calls = 0

    async def complete(self, request: Request) -> Response:
        self.calls += 1
        if request.purpose == "propose" and self.calls % 3 == 0:
            raise ConnectionError("simulated dropped connection")
        if request.purpose == "propose" and self.calls % 5 == 0:
            return Response(text="I have no idea.", model="flaky")
        return await self.inner.complete(request)


async def test_model_faults_are_recorded_not_raised(
    tmp_path: Path, toy: Task, toy_executor: LocalExecutor
) -> None:
    store = Store(tmp_path / "f.sqlite")
    _, h = await _run(toy, store, toy_executor, budget=20, model=FlakyModel(), agents=3)
    outcomes = store.attempts()["outcome"].value_counts()
    assert outcomes.get("model_error", 0) > 0 and outcomes.get("edit_failed", 0) > 0
    reasons = set(store.attempts().query("outcome == 'model_error'")["reason"])
    assert any("dropped connection" in r for r in reasons)
    assert h.stats["evaluations"] == 20
    store.close()


@pytest.mark.parametrize("archive", ["grid", "greedy"])
async def test_other_archives_run(
    tmp_path: Path, toy: Task, toy_executor: LocalExecutor, archive: str
) -> None:
    store = Store(tmp_path / "a.sqlite")
    w, h = await _run(toy, store, toy_executor, budget=20, archive=archive)
    assert w.archive is not None and w.archive.name == archive
    assert h.best.score >= -12.75
    store.close()


async def test_time_budget_stops_new_attempts(
    tmp_path: Path, toy: Task, toy_executor: LocalExecutor
) -> None:
    store = Store(tmp_path / "t.sqlite")
    w = Worker(
        name="w0",
        task=toy,
        model=OfflineModel(latency=0.05),
        executor=toy_executor,
        store=store,
        agents=3,
    )
    t0 = asyncio.get_running_loop().time()
    h = await w.run("alpha", Program(code=toy.initial_code), Budget(seconds=0.5))
    took = asyncio.get_running_loop().time() - t0
    assert 0.5 <= took < 5.0
    assert h.stats["attempts"] > 3
    store.close()


def test_budget_validation() -> None:
    with pytest.raises(ValueError, match="evaluations and/or seconds"):
        Budget()
    with pytest.raises(ValueError, match="seconds must be > 0"):
        Budget(seconds=0)
