"""A worker: many concurrent agent slots searching from one base program toward one goal.

Each slot loops: sample a parent and inspirations from the worker's archive, prompt the
model with the goal, the parent, the inspirations and the slot's own memory, apply the
edit, evaluate the child in the sandbox, store it, add it to the archive. At the end of
the budget the worker writes a :class:`~aster_nb.records.Handoff`.

This module holds what is the worker's own: its settings, the wiring of one run, sampling
from its archive, the base program and restoring from the store. The parts live beside it,
one job each: the ordering of concurrent attempts and the budget's cut
(:mod:`~aster_nb.agents.scheduler`), what an agent does in one attempt
(:mod:`~aster_nb.agents.propose`), the steps of an attempt shared with the planner's merges
(:mod:`~aster_nb.agents.attempt`), what an applied attempt changes
(:mod:`~aster_nb.agents.bookkeeping`) and the handoff (:mod:`~aster_nb.agents.handoff`).
Attempt ``n`` draws its randomness from ``(seed, worker, n)`` and, ordered, sees the
archive as attempts before it left it, so a seed fixes what a run finds.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from ..archive import Archive, make_archive, replay_archive
from ..control import Control
from ..events import EventBus, HandoffReceived
from ..features import archive_descriptor, describe
from ..llm.base import Model
from ..records import EvalResult, Goal, Handoff, Program
from ..store import Store
from ..task import Task, TaskError
from .attempt import MODEL_TIMEOUT, Outcome, Ticket, evaluate_stored
from .bookkeeping import RunState, apply_outcome, remembered
from .context import Budget, Context, Executor, make_context
from .handoff import write_handoff
from .memory import AgentMemory
from .noise import confirmed
from .prompts import system_prompt
from .propose import propose
from .scheduler import Scheduler

__all__ = ["Budget", "Executor", "Worker"]


class Worker:
    """Runs agents toward a goal and hands back what it found.

    Args:
        name: the worker's name (stored with every program it makes).
        model: the model agents call (the offline model by default in the CLI).
        context: the run's task, store, executor, bus, control and spending ledger
            (:class:`~aster_nb.agents.context.Context`). A standalone worker may be given
            ``task``, ``store`` and ``executor`` (and ``bus``, ``control``) instead.
        task: the task being improved (without ``context``).
        executor: where evaluations run (without ``context``).
        store: the run's store (without ``context``).
        bus: where events go (without ``context``; a private bus if omitted).
        control: pause/stop switch shared with a :class:`~aster_nb.run.Run` (without
            ``context``).
        agents: concurrent agent slots.
        archive: ``cluster``, ``grid`` or ``greedy``, or an archive instance.
        seed: seeds sampling and the model's per-call seeds.
        explore: probability an agent's parent is a uniformly random elite.
        inspirations: inspiration programs shown per prompt.
        ordered: apply results in attempt order so a seed fixes the outcome (see
            :mod:`~aster_nb.agents.scheduler`); ``False`` lets each slot see every result
            as soon as it lands.
        model_timeout: seconds a model call may take before it counts as a failed attempt.
        planner: the name of the planner this worker reports to (stored with programs).
        agent: ``edit`` (one reply with SEARCH/REPLACE blocks) or ``tools`` (a multi-turn
            session that reads, edits, evaluates and submits; see
            :mod:`~aster_nb.agents.toolagent`).
        tool_turns: turns a tool session may take.
    """

    def __init__(
        self,
        *,
        name: str,
        model: Model,
        context: Context | None = None,
        task: Task | None = None,
        executor: Executor | None = None,
        store: Store | None = None,
        bus: EventBus | None = None,
        control: Control | None = None,
        agents: int = 8,
        archive: str | Archive = "cluster",
        seed: int = 0,
        explore: float = 0.1,
        inspirations: int = 2,
        ordered: bool = True,
        model_timeout: float = MODEL_TIMEOUT,
        planner: str = "",
        agent: str = "edit",
        tool_turns: int = 8,
    ) -> None:
        ctx = make_context(
            context,
            task=task,
            store=store,
            executor=executor,
            bus=bus,
            control=control,
            who="Worker",
        )
        if agents < 1:
            raise ValueError(f"agents must be >= 1, got {agents}")
        if not 0.0 <= explore <= 1.0:
            raise ValueError(f"explore must be in [0, 1], got {explore}")
        if model_timeout <= 0:
            raise ValueError(f"model_timeout must be > 0 seconds, got {model_timeout}")
        if agent not in ("edit", "tools"):
            raise ValueError(f"agent must be 'edit' or 'tools', got {agent!r}")
        self.name = name
        self.context = ctx
        self.task, self.store, self.executor = ctx.task, ctx.store, ctx.executor
        self.bus, self.control = ctx.bus, ctx.control
        self.model = model
        self.agents = agents
        self.seed = seed
        self.explore = explore
        self.n_inspirations = inspirations
        self.ordered = ordered
        self.model_timeout = model_timeout
        self.agent_kind = agent
        self.stop_reason: str | None = None  # set when a spending cap stops the worker
        self.tool_turns = tool_turns
        self.planner = planner
        self.archive: Archive | None = archive if not isinstance(archive, str) else None
        self._archive_kind = archive if isinstance(archive, str) else archive.name
        self.memories = [AgentMemory() for _ in range(agents)]
        self.known: set[str] = set()  # ids of programs this worker has applied
        self.system = system_prompt(self.task)  # of every call its agents make
        # the worker's share of the seed: attempt n draws from (seed, salt, n)
        self.salt = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
        self.attempts_total = 0  # attempt numbers continue across runs
        # Per round: evaluations already made and the best of them, by a session killed in
        # that round (see restore); that round, resumed, spends only the rest of its budget.
        self._carried: dict[int, tuple[int, Program | None]] = {}

    # -- public --------------------------------------------------------------------------

    async def run(
        self,
        goal: str,
        base: Program,
        budget: Budget,
        *,
        round: int = 0,
        goal_source: Callable[[], str | Goal] | None = None,
    ) -> Handoff:
        """Search from ``base`` toward ``goal`` until ``budget`` is spent.

        ``goal_source``, if given, is read as each attempt starts (a planner passes its
        live goals, so a steer lands on the very next attempt); else every attempt works
        toward ``goal``. A :class:`Goal` record gives the attempt's focus areas; plain text
        focuses on every area of the task. The handoff reports the goal in effect at the end
        (and, in its report, every goal the attempts worked toward).

        A round that a killed session began (see :meth:`restore`) goes on where it
        stopped: the evaluations it stored count against ``budget``, and its best program
        can be this round's best.
        """
        carried, carried_best = self._carried.pop(round, (0, None))
        if carried and budget.evaluations is not None:
            budget = replace(budget, evaluations=max(0, budget.evaluations - carried))
        base = await self._ensure_evaluated(base, round)
        first = self.attempts_total
        deadline = None if budget.seconds is None else time.monotonic() + budget.seconds
        max_attempts = None if budget.evaluations is None else 4 * budget.evaluations + self.agents
        best_before = (
            self.archive.best() if self.archive is not None and len(self.archive) else None
        )
        source = goal_source or (lambda: goal)
        st: RunState
        sched = Scheduler(
            agents=self.agents,
            first=first,
            ordered=self.ordered,
            evaluations=budget.evaluations,
            deadline=deadline,
            max_attempts=max_attempts,
            control=self.control,
            halted=lambda: self.stop_reason is not None,
            sample=lambda n, slot: self._sample(n, slot, st),
            begin=lambda t: self._begin(t, source),
            attempt=lambda t, out: propose(self, t, out, st),
            apply=lambda out: apply_outcome(self, out, st),
        )
        st = RunState(goal=goal, base=base, budget=budget, round=round, seq=sched.seq, first=first)
        st.best_score = best_before.score if best_before is not None else None
        st.best = carried_best
        await sched.run()
        # Numbers of surplus attempts after the cut are used again: nothing of them is kept.
        self.attempts_total = sched.end
        return await self._handoff(st)

    def restore(self) -> None:
        """Rebuild the archive, the agents' memories and the attempt count from the store.

        Used when a run is reopened: everything a worker knows is in its stored programs and
        attempts, so nothing else needs saving.
        """
        logged = self.store.archive_log(self.name)
        mine = self.store.programs(worker=self.name)
        self.known.update(p.id for p in mine)
        self.known.update(logged)
        # the archive log has the exact order of adds (and bases made by others); stores
        # written before it existed fall back to the worker's own programs in storage order
        replay = [self.store.get(i) for i in logged] if logged else mine
        for p in mine:
            n, best = self._carried.get(p.round, (0, None))
            if confirmed(p.result, self.task.evaluation) and (best is None or p.score > best.score):
                best = p
            self._carried[p.round] = (n + 1, best)
        describe = lambda p: p.evaluated(p.result, self.descriptor_of(p.code, p.result))  # noqa: E731
        # archive_for builds self.archive at the first valid program, as a live add does
        replay_archive(replay, archive=self.archive, make=self.archive_for, describe=describe)
        for row in self.store.attempt_rows(self.name):
            self.memories[row["agent"] % self.agents].record(remembered(row))
            self.attempts_total = max(self.attempts_total, row["n"] + 1)

    def archive_for(self, dims: int) -> Archive:
        """The worker's archive, made at the first valid program (``dims`` its descriptor's)."""
        if self.archive is None:
            self.archive = make_archive(
                self._archive_kind,
                dims=dims,
                seed=self.seed,
                bounds=self.task.feature_bounds,
                descriptor=archive_descriptor(self.task, self.store),  # recorded in the store
            )
        return self.archive

    # -- one attempt ---------------------------------------------------------------------

    def _sample(self, n: int, slot: int, st: RunState) -> Ticket:
        rng = np.random.default_rng([self.seed, self.salt, n])
        if self.archive is None or len(self.archive) == 0:
            # Nothing valid yet: the agents must repair the base rather than copy it.
            parent, insp = st.base, []
        else:
            parent, insp = self.archive.sample(
                rng, n_inspirations=self.n_inspirations, explore=self.explore
            )
        memory = self.memories[slot].render()
        return Ticket(n=n, slot=slot, parent=parent, inspirations=insp, memory=memory)

    def _begin(self, t: Ticket, goal: Callable[[], str | Goal]) -> Outcome:
        # The goal is read as the attempt starts, so a steer lands on the very next attempt.
        g = goal()
        text, focus = (g.text, g.areas) if isinstance(g, Goal) else (g, self.task.area_names)
        return Outcome(
            n=t.n,
            agent=t.slot,
            parent=t.parent,
            inspirations=t.inspirations,
            response=None,
            started=time.time(),
            goal=text,
            focus=focus,
        )

    # -- helpers -------------------------------------------------------------------------

    def descriptor_of(self, code: str, result: EvalResult) -> tuple[float, ...]:
        """The archive descriptor of a valid program; the evaluator must keep the task's
        feature contract (one number per declared feature), else a :class:`TaskError`."""
        names = self.task.feature_names
        if names and (result.features is None or len(result.features) != len(names)):
            got = "none" if result.features is None else f"{len(result.features)}"
            raise TaskError(
                f"task {self.task.name!r} declares features {list(names)} but its evaluator "
                f"returned {got}; evaluate() must return one number per declared feature"
            )
        return describe(code, result)

    async def _ensure_evaluated(self, base: Program, round: int) -> Program:
        if base.result is None:
            base = await evaluate_stored(
                base,
                executor=self.executor,
                store=self.store,
                bus=self.bus,
                by=self.name,
                describe=self.descriptor_of,
                plan=self.task.evaluation,
                confirm_above=-math.inf,  # the base is the best to beat: judge it fully
            )
        if base.ok and base.descriptor is None:
            base = base.evaluated(base.result, self.descriptor_of(base.code, base.result))
        if base.id not in self.known:
            self.known.add(base.id)
            if base.ok:
                self.archive_for(len(base.descriptor or ())).add(base)
                self.store.add_archive_entry(worker=self.name, program_id=base.id)
        return base

    async def _handoff(self, st: RunState) -> Handoff:
        base, best = st.base, st.base
        if st.best is not None and (not base.ok or st.best.score > base.score):
            best = st.best
        seq = st.seq
        h = await write_handoff(
            worker=self.name,
            goal=st.goal,
            round=st.round,
            base=base,
            best=best,
            log=st.log,
            counts={
                "evaluations": seq.evaluations,
                "discarded": seq.discarded,
                "discarded_usd": seq.discarded_usd,
                "discarded_tokens": seq.discarded_tokens,
                "input_tokens": st.usage_in,
                "output_tokens": st.usage_out,
            },
            model=self.model,
            system=self.system,
            seed=st.first,
            timeout=self.model_timeout,
            goals=st.goals or [(st.first, st.goal)],
        )
        self.store.add_handoff(h)
        self.bus.emit(HandoffReceived(handoff=h))
        return h
