"""An evaluation budget kept exactly without a serial tail.

A worker used to start one of its last attempts only when it knew the budget still needed
it, so the end of a run went one model call at a time. Now every slot keeps working until
the budget is met, and the attempts that prove surplus are cancelled or thrown away: never
stored, never reported, counted in the handoff.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import random
import time
from pathlib import Path

import pytest

from aster_nb.agents import Budget, Worker
from aster_nb.events import Event, EventBus, ProgramEvaluated
from aster_nb.llm import OfflineModel, Request, Response
from aster_nb.program import EvalResult, Program, Status
from aster_nb.sandbox import LocalExecutor
from aster_nb.store import Store
from aster_nb.task import Task

from .conftest import write_task


class Recorder:
    """The offline model with a jittered latency, logging proposal calls in flight.

    The jitter spreads replies out as a real model's do (a fixed latency makes agents move
    in lockstep); the offline model's replies depend on the request alone, so it changes
    when a run's attempts finish, never what they propose.
    """

    def __init__(self, *, seed: int, latency: float, jitter: float) -> None:
        self.model = OfflineModel(seed=seed)
        self.name = self.model.name
        self.latency, self.jitter = latency, jitter
        self.rng = random.Random()
        self.log: list[tuple[float, int]] = []  # (time, +1 at a start / -1 at an end)
        self.calls = 0
        self.cancelled = 0

    async def complete(self, request: Request) -> Response:
        if request.purpose != "propose":
            return await self.model.complete(request)
        self.calls += 1
        self.log.append((time.monotonic(), 1))
        try:
            await asyncio.sleep(self.latency + self.rng.uniform(0.0, self.jitter))
            return await self.model.complete(request)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.log.append((time.monotonic(), -1))


def mean_in_flight(log: list[tuple[float, int]], t0: float, t1: float) -> float:
    """Time-weighted mean of calls in flight over ``[t0, t1]``."""
    level, area, last = 0, 0.0, t0
    for t, step in sorted(log):
        if t > t0:
            area += level * (min(t, t1) - last)
            last = min(t, t1)
        if t >= t1:
            break
        level += step
    return (area + level * (t1 - last)) / (t1 - t0)


class Seen:
    """Every program a worker reported, and when."""

    def __init__(self) -> None:
        self.bus = EventBus()
        self.ids: list[str] = []
        self.times: list[float] = []
        self.bus.subscribe(self)

    def __call__(self, e: Event) -> None:
        if isinstance(e, ProgramEvaluated) and e.n >= 0:
            self.ids.append(e.program.id)
            self.times.append(time.monotonic())


class InProcess:
    """The toy task's own scoring, run in this process without a sandbox.

    For measuring the scheduler alone: the toy's programs only set four constants, and
    a sandbox on a machine with few cores would cap how many evaluations finish a second.
    """

    def __init__(self, task: Task, delay: float) -> None:
        spec = importlib.util.spec_from_file_location("toy_evaluator", task.evaluator_path)
        assert spec is not None and spec.loader is not None
        self.evaluator = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.evaluator)
        self.delay = delay

    async def submit(self, code: str) -> EvalResult:
        await asyncio.sleep(self.delay)
        namespace: dict[str, object] = {}
        try:
            exec(compile(code, "program.py", "exec"), namespace)
            out = self.evaluator.score_values(namespace["solve"]())  # type: ignore[operator]
        except Exception as e:
            return EvalResult(Status.ERROR, error=f"{type(e).__name__}: {e}")
        if out.get("valid", True) is False:
            return EvalResult(Status.INVALID, error=out["reason"])
        return EvalResult(
            Status.OK, score=out["score"], metrics=out["metrics"], features=tuple(out["features"])
        )


def stored_ids(store: Store, worker: str = "w0") -> list[str]:
    df = store.history()
    return sorted(df[df["worker"] == worker]["id"])


async def _run(
    task: Task,
    store: Store,
    ex: LocalExecutor | InProcess | CountingExecutor,
    *,
    budget: int,
    agents: int,
    latency: float = 0.0,
    jitter: float = 0.0,
    seed: int = 3,
    ordered: bool = True,
    model: object | None = None,
    seen: Seen | None = None,
):
    model = model or Recorder(seed=seed, latency=latency, jitter=jitter)
    seen = seen or Seen()
    w = Worker(
        name="w0",
        task=task,
        model=model,  # type: ignore[arg-type]
        executor=ex,
        store=store,
        agents=agents,
        seed=seed,
        ordered=ordered,
        bus=seen.bus,
    )
    h = await w.run(
        "Raise the score via alpha and beta",
        Program(code=task.initial_code),
        Budget(evaluations=budget),
    )
    return w, h, model, seen


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_the_last_evaluations_keep_every_agent_busy(
    tmp_path: Path, toy: Task, ordered: bool
) -> None:
    agents, budget = 32, 320
    store = Store(tmp_path / "r.sqlite")
    _, h, model, seen = await _run(
        toy,
        store,
        InProcess(toy, delay=0.01),
        budget=budget,
        agents=agents,
        latency=0.1,
        jitter=0.2,
        ordered=ordered,
    )
    assert len(seen.times) == budget
    t90, t_end = seen.times[math.ceil(0.9 * budget) - 1], seen.times[-1]
    tail = mean_in_flight(model.log, t90, t_end)
    body = mean_in_flight(model.log, seen.times[0], t90)
    # Waiting for the exact count before each of the last attempts ran this stretch at a
    # quarter of the calls in flight before it (5-10 of 32); now it is as busy as the rest.
    why = f"{tail:.2f} calls in flight over the last 10%, {body:.2f} before"
    assert tail >= 0.7 * body and tail >= agents / 2, why
    assert stored_ids(store) == sorted(seen.ids) and len(seen.ids) == budget
    assert h.stats["evaluations"] == budget
    # Every call belongs to an applied attempt or a discarded one (which may have been
    # cancelled before its call began). A call under way is never cancelled (a provider
    # bills it anyway): it finishes, and its cost is counted with the discarded.
    applied, discarded = h.stats["attempts"], h.stats["discarded"]
    assert applied < model.calls <= applied + discarded
    assert model.cancelled == 0
    assert 0 < discarded < agents and h.stats["discarded_tokens"] > 0
    store.close()


async def test_seeded_runs_agree_whatever_proves_surplus(tmp_path: Path, toy: Task) -> None:
    """Same seed, different timing (evaluation concurrency, model jitter): the same
    attempts are applied and the same programs stored, whichever attempts were surplus."""
    runs = []
    for i, conc in enumerate((1, 2)):
        async with LocalExecutor.from_task(toy, concurrency=conc) as ex:
            store = Store(tmp_path / f"r{i}.sqlite")
            w, h, _, seen = await _run(
                toy, store, ex, budget=60, agents=6, latency=0.02, jitter=0.1, seed=11
            )
            att = store.attempts().sort_values("n")
            mine = sorted(store.programs(worker="w0"), key=lambda p: p.id)
            runs.append(
                {
                    "n": list(att["n"]),
                    "attempts": list(
                        zip(att["program_id"], att["parent_id"], att["outcome"], strict=True)
                    ),
                    "programs": [(p.id, p.code, p.parents, p.agent, p.score) for p in mine],
                    "next": w.attempts_total,
                    "best": h.best.id,
                }
            )
            assert len(mine) == 60 and sorted(seen.ids) == [p.id for p in mine]
            assert h.stats["discarded"] > 0, "the run had surplus attempts to leave out"
            # The applied attempts are a prefix: numbers of surplus ones are used again.
            assert list(att["n"]) == list(range(len(att))) and w.attempts_total == len(att)
            store.close()
    assert runs[0] == runs[1]


# An evaluator slow enough that surplus attempts are cancelled in the sandbox.
SLOW_EVALUATOR = """\
import importlib.util, time

def evaluate(path):
    spec = importlib.util.spec_from_file_location("prog", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    time.sleep(0.4)
    return {"score": -abs(float(m.X) - 2.0), "features": [float(m.X)]}
"""
SLOW_PROGRAM = """\
# EVOLVE-BLOCK-START knob
X = 0.5
# EVOLVE-BLOCK-END
"""
SLOW_TOML = """\
name = "slow"
[features]
names = ["x"]
[surface_areas]
knob = "The constant X."
"""


class CountingExecutor:
    """Passes evaluations to the sandbox, counting those cancelled on the way."""

    def __init__(self, inner: LocalExecutor) -> None:
        self.inner = inner
        self.cancelled: list[str] = []

    async def submit(self, code: str) -> EvalResult:
        try:
            return await self.inner.submit(code)
        except asyncio.CancelledError:
            self.cancelled.append(code)
            raise


async def test_surplus_evaluations_are_cancelled_and_the_sandbox_stays_warm(
    tmp_path: Path,
) -> None:
    task = write_task(
        tmp_path / "slow", program=SLOW_PROGRAM, evaluator=SLOW_EVALUATOR, toml=SLOW_TOML
    )
    async with LocalExecutor.from_task(task, concurrency=4) as ex:
        counting = CountingExecutor(ex)
        store = Store(tmp_path / "s.sqlite")
        # No model latency: surplus attempts are caught in their evaluation.
        _, h, _, seen = await _run(
            task, store, counting, budget=10, agents=6, model=OfflineModel(seed=2)
        )
        assert counting.cancelled, "surplus evaluations were running when the budget was met"
        assert h.stats["discarded"] >= len(counting.cancelled)
        assert stored_ids(store) == sorted(seen.ids) and len(seen.ids) == 10
        cancelled_ids = {Program(code=c).id for c in counting.cancelled}
        assert not cancelled_ids & set(seen.ids), "a cancelled evaluation was reported"
        # The warm server killed those evaluations, nothing more: it is the same server,
        # and it evaluates the next programs normally. A cancelled one may come back from
        # the cache (its evaluation can finish in the instant it is cancelled); a new one
        # is run by the server.
        stats = ex.stats
        assert stats["restarts"] == 0 and stats["server_deaths"] == 0
        again = await ex.submit(counting.cancelled[0])
        new = await ex.submit(counting.cancelled[0] + "\n# submitted after the cut\n")
        assert again.ok and new.ok, (again.error, new.error)
        assert ex.stats["restarts"] == 0 and ex.stats["evaluations"] > stats["evaluations"]
        store.close()


async def test_a_restored_worker_continues_where_the_cut_left_off(
    tmp_path: Path, toy: Task, toy_executor: LocalExecutor
) -> None:
    store = Store(tmp_path / "r.sqlite")
    w, h, _, _ = await _run(toy, store, toy_executor, budget=30, agents=6, jitter=0.05)
    assert h.stats["discarded"] > 0
    again = Worker(
        name="w0",
        task=toy,
        model=OfflineModel(seed=3),
        executor=toy_executor,
        store=store,
        agents=6,
        seed=3,
    )
    again.restore()
    # Nothing of the surplus attempts was kept, so the store says what the live worker knows.
    assert again.attempts_total == w.attempts_total == len(store.attempts())
    assert again.known == w.known
    h2 = await again.run(
        "Raise the score via alpha and beta", h.best, Budget(evaluations=25), round=1
    )
    df = store.history()
    assert ((df["worker"] == "w0") & (df["round"] == 1)).sum() == 25
    assert h2.stats["evaluations"] == 25
    assert store.attempts()["n"].is_unique
    store.close()
