"""Noisy evaluations for workers and planners: seeds, confirmation, early stopping.

What a task's ``[evaluation]`` (:class:`~aster_nb.evalplan.EvalPlan`) asks of the agents:

* every evaluation runs ``seeds`` seeds (concurrently, through the executor) and its score
  is their mean, with the spread (sample standard deviation) and count in the result
  (:func:`measure`);
* a program that would become a worker's or a planner's best is first run on the seeds it
  has not run, up to ``confirm_seeds`` (:func:`confirm`), and only a confirmed result may
  become a best (:func:`confirmed`): a candidate lucky on one seed is found out here;
* each run's reports are kept (bounded), sent to a callback (the event bus) and, with
  ``early_stop``, compared with the parent's curve at the same step: the parent side stops
  a run that is clearly worse (:class:`Watch`), whatever the evaluator does.

A task with a plain plan (deterministic, nothing reported) gets exactly one
``executor.submit(code)``, as before: executors without seeds keep working for it.

Reproducibility: a worker decides to confirm a child when its evaluation ends, against the
best as it then stands; with ``ordered`` attempts the best at that moment depends on timing
(never higher than when the attempt is applied, so no would-be best escapes confirmation,
but some children are confirmed in one run and not in another). Where a stop lands in an
early-stopped run depends on timing too. A noisy task's run is therefore not fixed by its
seed the way a deterministic task's is.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..evalplan import EarlyStop, EvalPlan
from ..records import EvalResult, Program, Status
from ..store.curves import Point, SeedScore

__all__ = ["Measured", "Watch", "confirm", "confirmed", "measure", "parent_curve"]

#: reports kept per run (the sandbox forwards at most 10 000; a plot needs far fewer)
MAX_POINTS = 2000

#: called with each report: ``(seed, step, values)``
OnReport = Callable[[int, int, dict[str, float]], None]


@dataclass(slots=True)
class Measured:
    """A program's evaluation over one or more seeds.

    Attributes:
        result: the combined result (score: the mean; ``spread``, ``repeats``).
        runs: each seed's result, by seed.
        curve: what the runs reported (at most :data:`MAX_POINTS` reports per run).
    """

    result: EvalResult
    runs: dict[int, EvalResult] = field(default_factory=dict)
    curve: list[Point] = field(default_factory=list)

    @property
    def seeds(self) -> list[SeedScore]:
        return [SeedScore(s, str(r.status), r.score, r.seconds) for s, r in self.runs.items()]


@dataclass(frozen=True, slots=True)
class StopRule:
    """Early stopping for one run: stop at a report whose ``name`` value is clearly worse
    than the parent's at the same step. A plain, picklable value, so a remote executor can
    apply it where the evaluation runs, at the report itself.

    Attributes:
        rule: the task's ``early_stop``.
        name: the reported value compared (the task's ``intermediate``).
        parent: the parent's curve of it, ``(step, value)`` by step (non-empty).
    """

    rule: EarlyStop
    name: str
    parent: tuple[tuple[int, float], ...]

    def __call__(self, step: int, values: dict[str, float]) -> bool:
        last = self.parent[-1][0]
        # at the parent's last step the run is done: stopping it then saves nothing and
        # throws its score away
        if self.name not in values or step < self.rule.after * last or step >= last:
            return False
        # the parent's value at the last step it reported at or before this one
        before = [v for s, v in self.parent if s <= step]
        return bool(before) and self.rule.worse(values[self.name], before[-1])


class Watch:
    """Listens to one run's reports: keeps them, passes them on, and decides early stopping.

    Args:
        seed: the run's seed.
        plan: the task's plan (``intermediate`` and ``early_stop``).
        parent: the parent's curve of ``intermediate``, ``(step, value)`` by step (empty:
            never stop).
        on_report: called with every report kept.

    Attributes:
        decide: the :class:`StopRule` it applies (None: it never stops a run), for an
            executor that evaluates elsewhere to apply there without a round trip.
    """

    def __init__(
        self,
        *,
        seed: int,
        plan: EvalPlan,
        parent: Sequence[tuple[int, float]] = (),
        on_report: OnReport | None = None,
    ) -> None:
        self.seed, self.plan, self.parent = seed, plan, list(parent)
        self.on_report = on_report
        self.points: list[Point] = []
        self.reports = 0
        self.stopped_at: int | None = None
        rule = plan.early_stop
        self.decide = StopRule(rule, plan.intermediate, tuple(parent)) if rule and parent else None

    def __call__(self, step: int, values: dict[str, float]) -> bool:
        if self.points and step <= self.points[-1].step:
            # the run started over (its server or node died and it was run again): the
            # curve is the new run's from here, not two runs interleaved
            self.points = [p for p in self.points if p.step < step]
        self.reports += 1
        if self.reports <= MAX_POINTS:
            self.points += [Point(self.seed, step, k, v) for k, v in values.items()]
            if self.on_report is not None:
                self.on_report(self.seed, step, values)
        if self.should_stop(step, values):
            self.stopped_at = step
            return True
        return False

    def should_stop(self, step: int, values: dict[str, float]) -> bool:
        """Whether the run is clearly worse than its parent at ``step``."""
        return self.decide is not None and self.decide(step, values)


def parent_curve(store: Any, parent: Program | None, plan: EvalPlan) -> list[tuple[int, float]]:
    """The parent's stored curve of the plan's ``intermediate`` value: the mean over its
    seeds at each step (empty without early stopping or a stored curve)."""
    if parent is None or plan.early_stop is None:
        return []
    by_step: dict[int, list[float]] = {}
    for p in store.curve(parent.id, plan.intermediate):
        by_step.setdefault(p.step, []).append(p.value)
    return [(s, statistics.fmean(v)) for s, v in sorted(by_step.items())]


def confirmed(result: EvalResult | None, plan: EvalPlan) -> bool:
    """Whether ``result`` may make its program a best: a deterministic task's always, a
    noisy task's once it is the mean of ``confirm_seeds`` seeds."""
    if result is None or not result.ok:
        return False
    return not plan.noisy or result.repeats >= plan.confirm_seeds


async def measure(
    executor: Any,
    code: str,
    plan: EvalPlan,
    *,
    parent: Sequence[tuple[int, float]] = (),
    on_report: OnReport | None = None,
    seeds: Sequence[int] | None = None,
) -> Measured:
    """Evaluate ``code`` on ``seeds`` (default the plan's ``0 .. seeds-1``) concurrently.

    A plain plan is one ``executor.submit(code)``. Otherwise each seed is a submission with
    ``seed=`` (when the plan is seeded) and a :class:`Watch` as its ``listener`` (when it is
    watched).
    """
    if plan.plain:
        return Measured(await executor.submit(code))
    chosen = list(range(plan.seeds) if seeds is None else seeds)
    watches = [Watch(seed=s, plan=plan, parent=parent, on_report=on_report) for s in chosen]

    async def one(w: Watch) -> EvalResult:
        kw: dict[str, Any] = {"seed": w.seed} if plan.seeded else {}
        if plan.watched:
            kw["listener"] = w
        return await executor.submit(code, **kw)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(one(w)) for w in watches]
    runs = {w.seed: t.result() for w, t in zip(watches, tasks, strict=True)}
    curve = [p for w in watches for p in w.points]
    return Measured(combine(list(runs.values())), runs, curve)


async def confirm(
    executor: Any,
    code: str,
    plan: EvalPlan,
    measured: Measured,
    *,
    on_report: OnReport | None = None,
) -> Measured:
    """``measured`` with the seeds it has not run, up to ``confirm_seeds``, run too."""
    if confirmed(measured.result, plan) or not measured.result.ok:
        return measured  # a deterministic task's, or one already run on enough seeds
    missing = [s for s in range(plan.confirm_seeds) if s not in measured.runs]
    more = await measure(executor, code, plan, on_report=on_report, seeds=missing)
    if not more.runs:  # a plain plan's one run: nothing to combine by seed
        return more
    runs = dict(sorted({**measured.runs, **more.runs}.items()))
    return Measured(combine(list(runs.values())), runs, measured.curve + more.curve)


def combine(results: Sequence[EvalResult]) -> EvalResult:
    """One result for several seeds' runs: the mean score with its spread when all are
    ``ok``; else the first failure (``lost`` first: it may be tried again), with the count."""
    n = len(results)
    failed = [r for r in results if not r.ok]
    if failed:
        lost = [r for r in failed if r.status is Status.LOST]
        return replace((lost or failed)[0], repeats=n)
    if n == 1:
        return results[0]
    scores = [float(r.score) for r in results]  # type: ignore[arg-type]
    metrics = {
        k: statistics.fmean(r.metrics[k] for r in results)
        for k in results[0].metrics
        if all(k in r.metrics for r in results)
    }
    spread = statistics.stdev(scores)
    return replace(
        results[0],
        score=statistics.fmean(scores),
        metrics=metrics,
        spread=spread if math.isfinite(spread) else None,
        repeats=n,
        seconds=max(r.seconds for r in results),
    )
