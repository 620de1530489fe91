"""A planner: goals for its children, rounds, and synthesis of their results.

Workers and planners share one protocol, ``await x.run(goal, base, budget) -> Handoff``, so
a planner's children may be workers or planners: "P planners x W workers x K agents" is a
configuration (see :func:`aster_nb.run.build`), not code.

A round: every child runs concurrently from the current best with its goal; handoffs come
back; synthesis builds candidates (each child's best, plus model-written merges of them),
evaluates the merges in the sandbox, and the best candidate becomes the current best,
never worse than before. Then the planner's model revises the goals that are not pinned.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from ..events import EventBus, GoalChanged, RoundFinished, RoundStarted
from ..llm.base import Model, Request, user
from ..prompts import render
from ..records import Goal, Handoff, Program, RoundResult
from ..store import Store
from ..task import Task
from .attempt import MODEL_TIMEOUT, ask, edited, evaluate_stored, timed_out
from .context import Budget, Context, Executor, make_context
from .goals import Goals, goal_line, parse_plan
from .handoff import round_handoff
from .noise import confirmed
from .prompts import fenced, system_prompt
from .worker import Worker

__all__ = ["Child", "Planner", "RoundResult"]


class Child(Protocol):
    """What a planner runs: a worker or another planner.

    ``goal_source``, if given, is read as each attempt starts, so a steer reaches a running
    child; a child that plans reads its goal once per round.
    """

    name: str

    async def run(
        self,
        goal: str,
        base: Program,
        budget: Budget,
        *,
        round: int = 0,
        goal_source: Callable[[], str | Goal] | None = None,
    ) -> Handoff: ...


class Planner:
    """Coordinates children over rounds and keeps the current best program.

    Args:
        name: the planner's name (stored with the programs it synthesizes).
        model: the planner's model (merges, goal revision).
        children: workers or planners, each with a unique ``name``.
        context: the run's task, store, executor (it evaluates merge candidates), bus,
            control and spending ledger (:class:`~aster_nb.agents.context.Context`). A
            standalone planner may be given ``task``, ``store`` and ``executor`` (and
            ``bus``) instead.
        task: the task (without ``context``).
        executor: evaluates merge candidates (without ``context``).
        store: the run's store (without ``context``).
        bus: where events go (without ``context``; a private bus if omitted).
        merges: merge candidates asked of the model per round (when there are at least two
            children's bests to merge).
        revise: let the model revise unpinned goals after each round.
        model_timeout: seconds a model call (a merge, a goal revision) may take before it
            counts as failed; the same policy as a worker's attempts.
    """

    def __init__(
        self,
        *,
        name: str,
        model: Model,
        children: Sequence[Child],
        context: Context | None = None,
        task: Task | None = None,
        executor: Executor | None = None,
        store: Store | None = None,
        bus: EventBus | None = None,
        merges: int = 2,
        revise: bool = True,
        model_timeout: float = MODEL_TIMEOUT,
    ) -> None:
        ctx = make_context(
            context, task=task, store=store, executor=executor, bus=bus, control=None, who="Planner"
        )
        names = [c.name for c in children]
        if not children or len(set(names)) != len(names):
            raise ValueError(f"a planner needs children with unique names, got {names}")
        if merges < 0:
            raise ValueError(f"merges must be >= 0, got {merges}")
        self.name = name
        self.context = ctx
        self.task, self.store, self.executor, self.bus = ctx.task, ctx.store, ctx.executor, ctx.bus
        self.model = model
        self.model_timeout = model_timeout
        self.children = {c.name: c for c in children}
        self.merges = merges
        self.revise = revise
        self.goals = Goals(on_change=self._goal_changed, areas=self.task.area_names)
        self.best: Program | None = None
        self.round_no = 0
        self.goal = ""
        self.goal_areas: tuple[str, ...] | None = None  # chosen for this planner, if anyone did
        self._system = system_prompt(self.task)
        for c in children:
            if isinstance(c, Worker):
                c.planner = name

    # -- goals ---------------------------------------------------------------------------

    def assign_goals(self, goal: str = "", areas: Sequence[str] | None = None) -> None:
        """Split ``areas`` (every surface area if ``None``) over the children, explicitly.

        With fewer children than areas a child gets several; with more, areas are shared.
        Pinned goals are kept. ``goal``'s words choose nothing (see :mod:`.goals`).
        """
        chosen = set(self.task.area_names if areas is None else areas)
        areas = [a for a in self.task.surface_areas if a.name in chosen]
        names = list(self.children)
        for i, child in enumerate(names):
            if child in self.goals and self.goals.info(child).pinned:
                continue
            if not areas:
                text = goal or "Raise the score."
            else:
                mine = (
                    areas[i :: len(names)] if len(names) < len(areas) else [areas[i % len(areas)]]
                )
                text = (
                    "Improve "
                    + " and ".join(f"`{a.name}`" for a in mine)
                    + ": "
                    + " ".join(a.description for a in mine)
                )
            self.goals.set(child, text, by="planner", areas=[a.name for a in mine] or None)

    def _goal_changed(self, worker: str, goal: Goal) -> None:
        self.store.add_goal(
            worker=worker,
            goal=goal.text,
            set_by=goal.set_by,
            pinned=goal.pinned,
            round=self.round_no,
            areas=goal.areas,
            areas_by=goal.areas_by,
        )
        self.bus.emit(
            GoalChanged(
                planner=self.name,
                worker=worker,
                goal=goal.text,
                set_by=goal.set_by,
                pinned=goal.pinned,
                areas=goal.areas,
                areas_by=goal.areas_by,
            )
        )

    def find(self, worker: str) -> Planner | None:
        """The planner (this one or below) whose child ``worker`` is."""
        if worker in self.children:
            return self
        for c in self.children.values():
            if isinstance(c, Planner) and (p := c.find(worker)) is not None:
                return p
        return None

    def workers(self) -> dict[str, Worker]:
        """Every worker under this planner, by name."""
        out: dict[str, Worker] = {}
        for c in self.children.values():
            if isinstance(c, Worker):
                out[c.name] = c
            elif isinstance(c, Planner):
                out.update(c.workers())
        return out

    # -- rounds --------------------------------------------------------------------------

    async def run(
        self,
        goal: str,
        base: Program,
        budget: Budget,
        *,
        round: int = 0,
        goal_source: Callable[[], str | Goal] | None = None,
    ) -> Handoff:
        """The child protocol: one round from ``base`` toward ``goal``, as a handoff.

        The goal is split over the children once per round: the areas chosen for this
        planner (``goal_source``'s record, when it names them), else all of them.
        """
        g = goal_source() if goal_source is not None else None
        areas = g.areas if isinstance(g, Goal) and g.areas_by != "default" else None
        if (goal, areas) != (self.goal, self.goal_areas):
            self.goal, self.goal_areas = goal, areas
            self.assign_goals(goal, areas)
        self.best, self.round_no = base, round
        r = await self.round(budget)
        return round_handoff(self.name, self.goal, r)

    def _live(self, child: str) -> Callable[[], Goal]:
        """``child``'s goal as it stands when read (a steer lands at its next attempt)."""
        return lambda: self.goals.info(child)

    async def round(self, budget: Budget) -> RoundResult:
        """Run every child from the current best, synthesize, revise goals."""
        if self.best is None:
            raise RuntimeError("the planner has no current best program; set Planner.best first")
        if not self.goals:
            if self.task.surface_areas:
                self.assign_goals(self.goal, self.goal_areas)
            else:
                await self._initial_goals()
        t0 = time.time()
        if self.best.result is None:
            self.best.planner = self.best.planner or self.name
            self.best = await self._evaluate(self.best)
        r, base = self.round_no, self.best
        self.bus.emit(RoundStarted(planner=self.name, round=r, base=base))
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(
                        c.run(self.goals[n], base, budget, round=r, goal_source=self._live(n))
                    )
                    for n, c in self.children.items()
                ]
        except ExceptionGroup as eg:
            raise eg.exceptions[0] from None  # the child's own error, catchable by its type
        handoffs = tuple(t.result() for t in tasks)
        merges = await self._merge(base, handoffs, r)
        pool = [base, *(h.best for h in handoffs if h.best is not None), *merges]
        best = base
        plan = self.task.evaluation
        for p in pool:
            # a noisy task's candidate wins only on its confirmed mean (agents.noise)
            if confirmed(p.result, plan) and (not best.ok or p.score > best.score):
                best = p
        improved = best is not base and (not base.ok or best.score > base.score)
        self.best = best
        self.store.add_round(
            planner=self.name, round=r, started=t0, base=base, best=best, improved=improved
        )
        result = RoundResult(r, base, best, handoffs, tuple(merges), improved, time.time() - t0)
        self.bus.emit(
            RoundFinished(
                planner=self.name, round=r, best=best, improved=improved, previous=base.score
            )
        )
        if self.revise:
            await self._revise(handoffs)
        self.round_no = r + 1
        return result

    async def _merge(self, base: Program, handoffs: tuple[Handoff, ...], r: int) -> list[Program]:
        bests = {
            h.best.id: (h, h.best)
            for h in handoffs
            if h.best is not None and h.best.ok and h.best.id != base.id
        }
        if len(bests) < 2 or not self.merges:
            return []
        ranked = sorted(bests.values(), key=lambda hb: -hb[1].score)
        cands = "\n".join(
            f"### Candidate {i} (id {p.id}, score {p.score:.10g}, from {h.worker}; goal: {h.goal})\n{fenced(p.code)}"
            for i, (h, p) in enumerate(ranked, 1)
        )
        prompt = render(
            "merge",
            goal=self.goal or "Combine the best ideas into one program.",
            base_id=base.id,
            base_score=f"score {base.score:.10g}" if base.ok else f"status {base.status}",
            base_code=fenced(base.code),
            candidates=cands,
        )
        out: list[Program] = []
        seen = {base.id, *bests}
        for v in range(self.merges):
            request = Request(
                messages=(user(prompt),),
                system=self._system,
                purpose="merge",
                seed=v,
                tags=(("planner", self.name),),
            )
            try:
                resp = await ask(self.model, request, timeout=self.model_timeout)
                code = edited(base.code, resp.text)  # the worker's edit and marker check
            except TimeoutError:
                timed_out(self.model, self.model_timeout)
                continue
            except Exception:  # a failed merge costs a candidate, not the round
                continue
            child = Program(
                code=code, parents=(base.id, *bests), origin="merge", planner=self.name, round=r
            )
            if child.id in seen:
                continue
            seen.add(child.id)
            # a merge that would beat every candidate is confirmed before it is stored
            bar = max(p.score for p in (base, *(b for _, b in bests.values())) if p.ok)
            out.append(await self._evaluate(child, confirm_above=bar))
        return out

    async def _evaluate(self, p: Program, *, confirm_above: float = -math.inf) -> Program:
        return await evaluate_stored(
            p,
            executor=self.executor,
            store=self.store,
            bus=self.bus,
            by=self.name,
            plan=self.task.evaluation,
            confirm_above=confirm_above,
        )

    async def _initial_goals(self) -> None:
        """Goals from the planner's model, for a task that marks no surface areas."""
        for n in self.children:
            self.goals.load(n, self.goal or "Raise the score.", set_by="planner", pinned=False)
        changed = await self._revise(())
        for n in self.children:  # record the goals the model left as they were, too
            if n not in changed:
                self.goals.set(n, self.goals[n], by="planner")

    async def _revise(self, handoffs: tuple[Handoff, ...]) -> set[str]:
        """Ask the model for new goals; returns the children whose goal it changed."""
        open_children = [n for n in self.children if not self.goals.info(n).pinned]
        if not open_children:
            return set()
        areas = (
            "\n".join(f"- {a.name}: {a.description}" for a in self.task.surface_areas) or "(none)"
        )
        goals = "\n".join(
            goal_line(n, self.goals.info(n), with_areas=bool(self.task.surface_areas))
            for n in self.children
        )
        blocks = []
        for h in handoffs:
            gain = (
                (h.best.score - h.stats["base_score"])
                if h.best is not None and h.best.ok and h.stats.get("base_score") is not None
                else 0.0
            )
            blocks.append(
                f"### {h.worker}\ngoal: {h.goal}\nbest: {h.stats.get('best_score')} (base "
                f"{h.stats.get('base_score')}, gain {gain:+.6g})\nDONE: {h.done}\nLEARNED: {h.learned}\n"
                f"CONCERNS: {h.concerns}\n"
            )
        prompt = render(
            "plan",
            areas=areas,
            program=fenced(self.best.code) if self.best is not None else "(none)",
            goals=goals,
            handoffs="\n".join(blocks) or "(none yet: this is the first round)",
        )
        request = Request(
            messages=(user(prompt),),
            system=self._system,
            purpose="plan",
            seed=self.round_no,
            tags=(("planner", self.name),),
        )
        try:
            resp = await ask(self.model, request, timeout=self.model_timeout)
        except TimeoutError:
            timed_out(self.model, self.model_timeout)
            return set()
        except Exception:
            return set()  # goals stay as they were; the next round still runs
        changed = set()
        for w, (text, areas) in parse_plan(resp.text, self.task.area_names).items():
            now = self.goals.info(w) if w in open_children else None
            if now is None or not text:
                continue
            if text != now.text or (areas is not None and areas != now.areas):
                # the plan's areas are the model's explicit choice; none named keeps them
                self.goals.set(w, text, by="planner", areas=areas)
                changed.add(w)
        return changed
