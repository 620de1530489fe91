"""Noisy, slow evaluations end to end: seeds, confirmation before a best, intermediate values,
early stopping and the cache, on the real sandbox and a real SQLite store.

The task is tests/tasks/noisy: a program's TRUE value is its real score, each seed adds a
small noise, and LUCK (seed -> offset) makes a program look best on one seed only.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aster_nb.agents import Budget, Planner, Worker
from aster_nb.agents.context import Context
from aster_nb.agents.noise import StopRule, Watch
from aster_nb.evalplan import EarlyStop, EvalPlan
from aster_nb.events import BestImproved, EvaluationProgress, Event, ProgramEvaluated
from aster_nb.llm import Request, Response
from aster_nb.records import Program, Status, code_hash
from aster_nb.sandbox import LocalExecutor
from aster_nb.store import Store
from aster_nb.task import Task, TaskError

from .conftest import write_task

NOISY = Path(__file__).parent / "tasks" / "noisy"


def variant(task: Task, **knobs: object) -> str:
    """The noisy task's program with some knobs set."""
    code = task.initial_code
    for name, value in knobs.items():
        start = code.index(f"{name} = ")
        end = code.index("\n", start)
        code = code[:start] + f"{name} = {value!r}" + code[end:]
    return code


def edit(task: Task, **knobs: object) -> str:
    """A SEARCH/REPLACE reply turning the initial program into ``variant(**knobs)``."""
    return (
        "Try this.\n<<<<<<< SEARCH\n"
        + task.initial_code.rstrip("\n")
        + "\n=======\n"
        + variant(task, **knobs).rstrip("\n")
        + "\n>>>>>>> REPLACE\n"
    )


class Scripted:
    """A model that answers proposals (or merges) with fixed replies, in order."""

    name = "scripted"

    def __init__(self, replies: list[str], purpose: str = "propose") -> None:
        self.replies = replies
        self.purpose = purpose
        self.calls = 0

    async def complete(self, request: Request) -> Response:
        if request.purpose != self.purpose:
            return Response(text="Done: tried the scripted edits.", model=self.name)
        self.calls += 1
        text = self.replies[min(self.calls, len(self.replies)) - 1]
        return Response(text=text, model=self.name)


@pytest.fixture
def noisy() -> Task:
    return Task.load(NOISY)


@pytest.fixture
async def noisy_executor(noisy: Task) -> AsyncIterator[LocalExecutor]:
    async with LocalExecutor.from_task(noisy, concurrency=2) as ex:
        yield ex


async def _work(task: Task, ex: LocalExecutor, store: Store, replies: list[str], budget: int):
    events: list[Event] = []
    w = Worker(
        name="w0",
        model=Scripted(replies),
        task=task,
        executor=ex,
        store=store,
        agents=1,
        archive="greedy",
    )
    w.bus.subscribe(events.append)
    h = await w.run("improve TRUE", Program(code=task.initial_code), Budget(evaluations=budget))
    return w, h, events


async def test_lucky_candidate_is_re_evaluated_and_rejected_before_it_becomes_best(
    tmp_path: Path, noisy: Task, noisy_executor: LocalExecutor
) -> None:
    lucky = variant(noisy, TRUE=0.5, LUCK={0: 1.0})  # 1.49 on seed 0, 0.5 on seeds 1, 2
    good = variant(noisy, TRUE=1.2)  # really better on every seed
    store = Store(tmp_path / "n.sqlite")
    replies = [edit(noisy, TRUE=0.5, LUCK={0: 1.0}), edit(noisy, TRUE=1.2)]
    _, h, events = await _work(noisy, noisy_executor, store, replies, budget=2)

    # the base was confirmed (it is the best to beat): three seeds, mean 1.0
    base = store.get(code_hash(noisy.initial_code))
    assert base is not None and base.result is not None and base.result.repeats == 3
    # the lucky child looked best on seed 0 (1.49 > 1.0), so it ran on seeds 1 and 2 too
    # before it could become best, and its mean lost
    lucky_p = store.get(code_hash(lucky))
    assert lucky_p is not None and lucky_p.result is not None
    assert lucky_p.result.repeats == 3
    seeds = store.seed_scores(lucky_p.id)
    assert [s.seed for s in seeds] == [0, 1, 2]
    assert seeds[0].score == pytest.approx(1.49) and seeds[1].score == pytest.approx(0.5)
    assert lucky_p.score == pytest.approx((1.49 + 0.5 + 0.51) / 3)
    assert lucky_p.result.spread == pytest.approx(0.5687, abs=1e-3)
    # the good one was confirmed too, and is the only best
    good_p = store.get(code_hash(good))
    assert good_p is not None and good_p.result is not None and good_p.result.repeats == 3
    assert good_p.score == pytest.approx(1.2)
    bests = [e.program.id for e in events if isinstance(e, BestImproved)]
    assert lucky_p.id not in bests and good_p.id in bests
    assert h.best is not None and h.best.id == good_p.id
    # the spread is in the file itself, for any reader
    row = sqlite3.connect(store.path).execute(
        "SELECT score, score_std, score_n FROM programs WHERE id=?", (lucky_p.id,)
    )
    score, std, n = row.fetchone()
    assert n == 3 and std == pytest.approx(0.5687, abs=1e-3) and score < 1.0
    store.close()


async def test_a_below_best_candidate_is_not_re_evaluated(
    tmp_path: Path, noisy: Task, noisy_executor: LocalExecutor
) -> None:
    store = Store(tmp_path / "n.sqlite")
    await _work(noisy, noisy_executor, store, [edit(noisy, TRUE=0.3)], budget=1)
    worse = store.get(code_hash(variant(noisy, TRUE=0.3)))
    assert worse is not None and worse.result is not None
    assert worse.result.repeats == 1 and worse.result.spread is None
    assert [s.seed for s in store.seed_scores(worse.id)] == [0]
    store.close()


async def test_intermediate_values_reach_the_store_and_the_event_stream(
    tmp_path: Path, noisy: Task, noisy_executor: LocalExecutor
) -> None:
    store = Store(tmp_path / "n.sqlite")
    _, _, events = await _work(noisy, noisy_executor, store, [edit(noisy, TRUE=0.3)], 1)
    child = code_hash(variant(noisy, TRUE=0.3))
    progress = [e for e in events if isinstance(e, EvaluationProgress) and e.n >= 0]
    assert [e.step for e in progress] == [0, 10, 20, 30, 40, 50, 60, 70]
    assert progress[1].values == {"loss": 0.5, "lr": 0.1}
    losses = store.curve(child, "loss")
    assert [(p.seed, p.step, p.value) for p in losses[:2]] == [(0, 0, 1.0), (0, 10, 0.5)]
    assert len(store.curve(child)) == 16  # loss and lr at 8 steps
    # the program is stored before the event that shows it, and after its progress
    kinds = [type(e) for e in events]
    assert kinds.index(ProgramEvaluated, 1) > kinds.index(EvaluationProgress, 0)
    store.close()


async def test_early_stopping_kills_a_clearly_worse_run(
    tmp_path: Path, noisy: Task, noisy_executor: LocalExecutor
) -> None:
    store = Store(tmp_path / "n.sqlite")
    # three times the parent's loss at every step, and slow: 8 steps of 0.5 s
    reply = edit(noisy, LOSS=3.0, SLEEP=0.5)
    _, _, events = await _work(noisy, noisy_executor, store, [reply], budget=1)
    child = store.get(code_hash(variant(noisy, LOSS=3.0, SLEEP=0.5)))
    assert child is not None and child.result is not None
    assert child.status is Status.STOPPED
    # stopped at the first step past a quarter of the parent's 70 steps (20), not at 70
    assert child.result.metrics["step"] == 20.0 and child.result.seconds < 2.5
    assert "stopped early" in (child.result.error or "")
    att = store.attempts()
    assert list(att["outcome"]) == ["stopped"]
    shown = [e.program for e in events if isinstance(e, ProgramEvaluated) and e.n >= 0]
    assert [p.status for p in shown] == [Status.STOPPED]
    # stopped results are never cached: the same code runs again
    before = noisy_executor.stats["evaluations"]
    again = await noisy_executor.submit(child.code, seed=0)
    assert again.status is Status.OK and noisy_executor.stats["evaluations"] == before + 1
    store.close()


def test_the_stop_rule_never_stops_a_finished_run() -> None:
    """Stopping a run at the parent's last step saves nothing and loses its score (a
    benchmark of optimizer_search once stored runs 'stopped at step 400' of 400)."""
    rule = StopRule(EarlyStop(after=0.25, margin=0.05), "loss", ((0, 1.0), (200, 0.5), (400, 0.4)))
    assert not rule(50, {"loss": 9.0})  # before a quarter of the parent's run
    assert rule(200, {"loss": 0.6}) and not rule(200, {"loss": 0.52})  # within the margin
    assert not rule(400, {"loss": 9.0}) and not rule(401, {"loss": 9.0})
    assert not rule(300, {"lr": 9.0})  # not the watched value


def test_a_run_that_starts_over_keeps_one_curve() -> None:
    """A rerun (its server or Ray node died) reports from step 0 again: the curve kept is
    the new run's, not both interleaved."""
    seen: list[int] = []
    w = Watch(
        seed=0, plan=EvalPlan(intermediate="loss"), on_report=lambda s, st, v: seen.append(st)
    )
    for step in (0, 10, 20, 0, 10, 20, 30):
        w(step, {"loss": 1.0 / (step + 1)})
    assert [p.step for p in w.points] == [0, 10, 20, 30]
    assert seen == [0, 10, 20, 0, 10, 20, 30]  # the dashboard saw both, as they came


async def test_cache_is_keyed_by_seed_and_skipped_without_one(
    noisy: Task, noisy_executor: LocalExecutor
) -> None:
    code = variant(noisy, TRUE=2.0)
    a = await noisy_executor.submit(code, seed=0)
    b = await noisy_executor.submit(code, seed=1)
    assert a.score == pytest.approx(1.99) and b.score == pytest.approx(2.0)
    hits = noisy_executor.stats["cache_hits"]
    assert (await noisy_executor.submit(code, seed=1)).score == b.score
    assert noisy_executor.stats["cache_hits"] == hits + 1  # one exact sample: seed 1's
    evaluations = noisy_executor.stats["evaluations"]
    await noisy_executor.submit(code)
    await noisy_executor.submit(code)
    # a noisy task's evaluation without a seed is a sample, never cached as exact
    assert noisy_executor.stats["evaluations"] == evaluations + 2


OLD_EVALUATOR = """\
import os

def evaluate(program_path):
    return {"score": 1.0, "metrics": {"seed_env": float(len(os.environ.get("SEED", "")))}}
"""


async def test_old_evaluators_get_no_seed_and_still_work(tmp_path: Path) -> None:
    task = write_task(
        tmp_path / "old",
        program="X = 1\n",
        evaluator=OLD_EVALUATOR,
        toml='name = "old"\n[evaluation]\nseeds = 2\n',
    )
    async with LocalExecutor.from_task(task, concurrency=2) as ex:
        r = await ex.submit(task.initial_code, seed=1, listener=lambda s, v: True)
        assert r.status is Status.OK and r.score == 1.0
        assert ex.server_info["evaluator_accepts"] == []


async def test_reports_are_checked_and_bounded(tmp_path: Path) -> None:
    evaluator = """\
import os

def evaluate(program_path, *, report=None):
    bad = []
    calls = [(-1, {"a": 1}), (1, {"a": float("nan")}), (1, "x"), (True, {"a": 1}), (1, {"a": "1"})]
    for args in calls:
        try:
            report(*args)
        except (TypeError, ValueError):
            bad.append(1)
    report(1, {"a": 2})
    # what a hostile program could write to the pipe itself: junk, a forged huge line
    fd = report.fd
    os.write(fd, b"not json\\n" + b'{"step": 2, "values": {"a": 1e999}}\\n')
    os.write(fd, b"x" * 5000 + b"\\n")
    os.write(fd, b'{"step": 3, "values": {"b": 4}}\\n')
    for i in range(20000):
        report(10 + i, {"a": i})
    return {"score": float(len(bad))}
"""
    task = write_task(tmp_path / "r", program="X = 1\n", evaluator=evaluator, toml='name = "r"\n')
    seen: list[tuple[int, dict[str, float]]] = []
    async with LocalExecutor.from_task(task, concurrency=1) as ex:
        r = await ex.submit(task.initial_code, listener=lambda s, v: seen.append((s, v)) or False)
    assert r.status is Status.OK and r.score == 5.0  # every bad call raised in the evaluator
    assert seen[:2] == [(1, {"a": 2.0}), (3, {"b": 4.0})]
    # 10 001 good lines (the forged one included), the first 10 000 forwarded: bounded
    assert len(seen) == 10_000 and seen[-1][0] == 10 + 9_997


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("seeds = 0", "[evaluation] seeds must be a whole number from 1 to 1000"),
        ("seeds = 3\nconfirm_seeds = 2", "confirm_seeds must be a count >= seeds (3)"),
        ("intermediate = 3", "[evaluation] intermediate must be the name of a reported value"),
        ("early_stop = {after = 0.5}", 'set intermediate = "loss"'),
        (
            'intermediate = "loss"\nearly_stop = {after = 2}',
            "early_stop.after must be a number in [0, 1]",
        ),
        ('intermediate = "loss"\nearly_stop = {direction = "up"}', '"min" (lower is better'),
        (
            'intermediate = "loss"\nearly_stop = {patience = 3}',
            "early_stop.patience must be one of the keys",
        ),
        ("seed = 3", "[evaluation] seed must be one of the keys seeds, confirm_seeds"),
    ],
)
def test_bad_evaluation_keys_are_named(tmp_path: Path, table: str, expected: str) -> None:
    with pytest.raises(TaskError) as info:
        write_task(
            tmp_path / "bad",
            program="X = 1\n",
            evaluator="def evaluate(p):\n    return {'score': 1.0}\n",
            toml=f'name = "bad"\n[evaluation]\n{table}\n',
        )
    assert expected in str(info.value) and "task.toml" in str(info.value)


def test_noisy_defaults(tmp_path: Path) -> None:
    evaluator = "def evaluate(p):\n    return {'score': 1.0}\n"
    plain = write_task(tmp_path / "a", program="X = 1\n", evaluator=evaluator, toml='name = "a"\n')
    assert plain.evaluation.plain and not plain.evaluation.noisy
    noise = write_task(
        tmp_path / "b", program="X = 1\n", evaluator=evaluator, toml='name = "b"\nnoise = 0.1\n'
    )
    assert noise.evaluation.noisy and noise.evaluation.confirm_seeds == 3


def test_old_store_opens_and_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    from aster_nb.store.schema import SCHEMA

    old = SCHEMA.split("-- a noisy task's")[0] + "\n"
    db.executescript(old)
    db.execute(
        "INSERT INTO programs(id, code, parents, origin, worker, round, status, score,"
        " metrics, created) VALUES('abc', 'X = 1', '[]', 'initial', '', 0, 'ok', 1.0, '{}', 0)"
    )
    db.commit()
    db.close()
    store = Store(path)
    p = store.get("abc")
    assert p is not None and p.result is not None
    assert p.result.repeats == 1 and p.result.spread is None
    assert store.seed_scores("abc") == [] and store.curve("abc") == []
    store.close()


async def test_a_lucky_merge_is_confirmed_and_loses_the_planner_s_best(
    tmp_path: Path, noisy: Task, noisy_executor: LocalExecutor
) -> None:
    store = Store(tmp_path / "p.sqlite")
    ctx = Context(task=noisy, store=store, executor=noisy_executor)
    workers = [
        Worker(name=f"w{i}", model=Scripted([edit(noisy, TRUE=t)]), context=ctx, agents=1)
        for i, t in enumerate((1.1, 1.05))
    ]
    lucky = variant(noisy, TRUE=0.5, LUCK={0: 1.0})  # 1.49 on seed 0: above every best
    planner = Planner(
        name="p0",
        model=Scripted([edit(noisy, TRUE=0.5, LUCK={0: 1.0})], purpose="merge"),
        children=workers,
        context=ctx,
        merges=1,
        revise=False,
    )
    planner.best = Program(code=noisy.initial_code)
    r = await planner.round(Budget(evaluations=1))
    merge = store.get(code_hash(lucky))
    assert merge is not None and merge.result is not None and merge.origin == "merge"
    assert merge.result.repeats == 3 and merge.score == pytest.approx(2.5 / 3)
    assert r.best.code == variant(noisy, TRUE=1.1) and r.best.result.repeats == 3
    assert store.rounds()["best_score"].iloc[-1] == pytest.approx(1.1)
    store.close()


def test_the_cli_json_carries_the_confirmed_mean_and_spread(tmp_path: Path) -> None:
    args = ["run", str(NOISY), "--budget", "6", "--agents", "2", "--out", str(tmp_path / "runs")]
    r = subprocess.run(
        [sys.executable, "-m", "aster_nb", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    # every best is confirmed on 3 seeds, whose noise here is -0.01, 0 and +0.01
    assert summary["best_score_n"] == 3
    assert summary["best_score_spread"] == pytest.approx(0.01)
    store = Store(next((tmp_path / "runs").glob("*.sqlite")))
    best = max(
        (p for p in store.programs() if p.ok and p.result.repeats == 3), key=lambda p: p.score
    )
    assert summary["best_score"] == pytest.approx(best.score)
    assert [s.score for s in store.seed_scores(best.id)] == pytest.approx(
        [best.score - 0.01, best.score, best.score + 0.01]
    )
    statuses = [p.status for p in store.programs()]
    assert summary["stopped_early"] == statuses.count(Status.STOPPED)
    assert summary["failed"] == sum(s not in (Status.OK, Status.STOPPED) for s in statuses)
    store.close()
