"""The end of a budgeted run: do all agents stay busy until the last evaluation?

One worker with ``--agents`` slots (64) and the offline model at ``--latency`` seconds a
call spends ``Budget(evaluations=--budget)`` on a task (``toy`` by default: evaluations
take milliseconds, so the model's latency is what the run waits on; on a machine with a few
cores a slower task's evaluations would be the bottleneck instead). A wrapper around the
model records when each proposal call starts and ends (a cancelled call ends when it is
cancelled), and the worker's events give the moment each evaluation is reported. Reported
per seed and as means over the seeds:

* ``wall_s``: the worker's ``run``, with its handoff call and (after the change) the wait
  for surplus proposal calls under way when the budget was met; ``search_s``: to the last
  evaluation;
* ``tail_s``: from the report of evaluation ``ceil(0.9 * budget)`` to that of the last one,
  and ``tail_share`` of ``search_s``;
* ``tail_in_flight``: mean proposal calls in flight over that last 10% (time-weighted), and
  ``in_flight``: the same over the whole search (the most possible is ``agents``);
* ``stored``: new programs in the store (must equal the budget), ``attempts`` applied, and
  ``discarded``: surplus attempts started, then cancelled or thrown away (absent before the
  change: the worker then never started more than the budget could use).

The results in ``benchmarks/results/budget_tail.json`` compare a checkout of the commit
before the change (this file copied into it) with the commit that adds this file.

    python benchmarks/budget_tail.py [--agents 64] [--latency 0.5] [--budget 640]
                                     [--seeds 3] [--task toy] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from aster_nb.agents import Budget, Worker
from aster_nb.events import Event, ProgramEvaluated
from aster_nb.llm import OfflineModel, Request, Response
from aster_nb.program import Program
from aster_nb.sandbox import LocalExecutor
from aster_nb.store import Store
from aster_nb.task import Task


class InFlight:
    """A model that logs ``(time, +1 | -1)`` as each proposal call starts and ends."""

    def __init__(self, model: OfflineModel) -> None:
        self.model = model
        self.name = model.name
        self.log: list[tuple[float, int]] = []

    async def complete(self, request: Request) -> Response:
        if request.purpose != "propose":
            return await self.model.complete(request)
        self.log.append((time.monotonic(), 1))
        try:
            return await self.model.complete(request)
        finally:
            self.log.append((time.monotonic(), -1))


def mean_in_flight(log: list[tuple[float, int]], t0: float, t1: float) -> float:
    """Time-weighted mean of calls in flight over ``[t0, t1]``."""
    if t1 <= t0:
        return float("nan")
    level, area, last = 0, 0.0, t0
    for t, step in sorted(log):
        if t > t0:
            area += level * (min(t, t1) - last)
            last = min(t, t1)
        if t >= t1:
            break
        level += step
    area += level * (t1 - last)
    return area / (t1 - t0)


async def one_run(
    task: Task, ex: LocalExecutor, seed: int, budget: int, agents: int, latency: float, tmp: Path
) -> dict[str, Any]:
    store = Store(tmp / f"s{seed}.sqlite")
    model = InFlight(OfflineModel(seed=seed, latency=latency))
    w = Worker(
        name="w0",
        task=task,
        model=model,  # type: ignore[arg-type]
        executor=ex,
        store=store,
        agents=agents,
        seed=seed,
    )
    reported: list[float] = []

    def on(e: Event) -> None:
        if isinstance(e, ProgramEvaluated) and e.n >= 0:
            reported.append(time.monotonic())

    w.bus.subscribe(on)
    t0 = time.monotonic()
    h = await w.run("Raise the score", Program(code=task.initial_code), Budget(evaluations=budget))
    wall = time.monotonic() - t0
    stored = int((store.history()["worker"] == "w0").sum())
    store.close()
    t90, t_end = reported[math.ceil(0.9 * budget) - 1], reported[-1]
    return {
        "seed": seed,
        "wall_s": round(wall, 3),
        "search_s": round(t_end - t0, 3),
        "tail_s": round(t_end - t90, 3),
        "tail_share": round((t_end - t90) / (t_end - t0), 3),
        "tail_in_flight": round(mean_in_flight(model.log, t90, t_end), 2),
        "in_flight": round(mean_in_flight(model.log, t0, t_end), 2),
        "stored": stored,
        "attempts": h.stats["attempts"],
        "discarded": h.stats.get("discarded"),  # absent before the change
        "best_score": h.stats["best_score"],
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    task = Task.load(args.task)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        async with LocalExecutor.from_task(task) as ex:
            for seed in range(args.seeds):
                runs.append(
                    await one_run(task, ex, seed, args.budget, args.agents, args.latency, Path(tmp))
                )
    keys = ("wall_s", "search_s", "tail_s", "tail_share", "tail_in_flight", "in_flight")
    mean = {k: round(statistics.fmean(r[k] for r in runs), 3) for k in keys}
    if all(r["discarded"] is not None for r in runs):
        mean["discarded"] = round(statistics.fmean(r["discarded"] for r in runs), 1)
    return {
        "task": args.task,
        "agents": args.agents,
        "latency_s": args.latency,
        "budget": args.budget,
        "seeds": args.seeds,
        "mean": mean,
        "runs": runs,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.5, help="model delay per call (s)")
    ap.add_argument("--budget", type=int, default=640, help="evaluations per run")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--task", default="toy")
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    a = ap.parse_args()
    out = asyncio.run(main(a))
    text = json.dumps(out, indent=2)
    print(text)
    if a.json is not None:
        a.json.write_text(text + "\n")
