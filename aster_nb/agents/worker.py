"""A worker: many concurrent agent slots searching from one base program toward one goal.

Each slot loops: sample a parent and inspirations from the worker's archive, prompt the
model with the goal, the parent, the inspirations and the slot's own memory, apply the
edit, evaluate the child in the sandbox, store it, add it to the archive. At the end of
the budget the worker writes a :class:`~aster_nb.agents.handoff.Handoff`.

Reproducibility with concurrency: a run numbers its attempts from ``first`` on; attempt
``n`` belongs to slot ``(n - first) % agents``, draws its randomness from ``(seed, worker,
n)``, and sees the archive as it stood after attempts ``first .. n - agents`` exactly
(results are applied to the archive and memories in attempt order). Evaluation timing can
then change how long a run takes, never what it finds. A program is stored when its attempt
is applied, before any event reports it; when two attempts propose identical code, the
stored row's lineage is the first applied, while the attempts table records every proposal.

An evaluation budget is kept exactly without a serial tail: every slot keeps starting
attempts while the applied ones have made fewer than ``budget`` programs, although some of
those running may then prove surplus. The attempt whose result makes the budget exact is
the last one applied; every attempt after it is discarded before anything stores or
reports it. In order, that last attempt is fixed by the results before it, so a seed still
fixes the outcome. Surplus evaluations and tool sessions are cancelled; a surplus proposal
call already under way is left to finish (a provider bills a request it began, and the
spending ledger should see what it bills) and its reply thrown away unevaluated. The
handoff counts the discarded attempts (``discarded``) and what their calls cost
(``discarded_usd``, ``discarded_tokens``). Waiting instead for the exact count before each
of the last attempts ran the end of a run one model call at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from ..archive import Archive, make_archive
from ..blocks import BlockError, find_blocks
from ..control import Control
from ..edits import EditError, apply_edit, diff_summary, parse_edit, unified_diff
from ..events import AttemptFailed, BestImproved, EventBus, HandoffReceived, ProgramEvaluated
from ..features import archive_descriptor, describe
from ..llm.base import Model, Request, Response, user
from ..llm.spend import BudgetExceeded
from ..llm.watch import Watched
from ..program import EvalResult, Program, Status
from ..store import AttemptRecord, Store
from ..task import Task, TaskError
from .handoff import Handoff, parse_sections
from .memory import AgentMemory, Experiment
from .prompts import focus_from_goal, handoff_prompt, propose_prompt, system_prompt
from .toolagent import run_tool_session


class Executor(Protocol):
    async def submit(self, code: str) -> EvalResult: ...


@dataclass(frozen=True, slots=True)
class Budget:
    """How much a worker may spend on one goal.

    Attributes:
        evaluations: new programs to evaluate (edits that fail to apply and duplicates do
            not count; attempts are capped at ``4 * evaluations + agents`` all the same).
            Exactly this many are stored: attempts still running when it is reached are
            discarded (see the module docstring), and the handoff counts them.
        seconds: wall-clock seconds before no new attempt starts.
    """

    evaluations: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.evaluations is None and self.seconds is None:
            raise ValueError("Budget needs evaluations and/or seconds; got neither")
        if self.evaluations is not None and self.evaluations < 0:
            raise ValueError(f"Budget.evaluations must be >= 0, got {self.evaluations}")
        if self.seconds is not None and self.seconds <= 0:
            raise ValueError(f"Budget.seconds must be > 0, got {self.seconds}")


@dataclass(slots=True)
class _Outcome:
    """What one attempt produced, applied to shared state in attempt order."""

    n: int
    agent: int
    parent: Program
    inspirations: list[Program]
    response: Response | None
    started: float
    child: Program | None = None
    outcome: str = "ok"
    reason: str | None = None
    rationale: str = ""
    change: str = ""
    goal: str = ""
    tool_trials: int = 0
    new: bool = False  # the child was evaluated by this run, not found in the store


@dataclass(slots=True)
class _Sequencer:
    """Orders samples and applies so attempt ``n`` sees exactly attempts ``< n - agents + 1``.

    Attempt ``n`` samples once attempts below ``n - agents + 1`` are applied; attempt ``m``
    is applied once it finished, every attempt before it is applied, and attempt
    ``m + agents - 1`` has sampled (or never will). A slot is thus at most one attempt
    ahead of the slowest, and what each attempt sees does not depend on timing.

    Unordered, the fields that order samples and applies (``applied``, ``sampled``,
    ``sample_front``, ``pending``, ``cut``) go unused.
    """

    agents: int
    applied: int = 0  # attempts below this are applied
    sampled: set[int] = field(default_factory=set)
    sample_front: int = 0  # every attempt below this has sampled
    stop_at: float = float("inf")  # attempts >= stop_at never start
    evaluations: int = 0
    pending: dict[int, _Outcome] = field(default_factory=dict)
    running: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    calling: set[int] = field(default_factory=set)  # running attempts in their proposal call
    cond: asyncio.Condition = field(default_factory=asyncio.Condition)
    # The evaluation budget is met: nothing more is applied, and attempts not applied by
    # then are surplus. Ordered, ``cut`` is the attempt after the last one applied.
    full: bool = False
    cut: int | None = None
    discarded: int = 0  # surplus attempts started, then cancelled or thrown away
    discarded_usd: float = 0.0  # what the surplus attempts' finished calls cost
    discarded_tokens: int = 0

    def close(self, cut: int | None) -> None:
        """The budget is met: stop what is still running and drop what waits to apply.

        Every attempt not yet applied is surplus here (ordered, all those before the
        attempt that met the budget are applied), so none of them may reach the store.
        A proposal call under way is not cancelled: its attempt stops when it returns.
        """
        self.full = True
        if cut is not None:
            self.cut = cut
            self.stop_at = min(self.stop_at, cut)
        for n, job in self.running.items():
            if n not in self.calling:
                job.cancel()  # its slot counts it as discarded when it sees the cancellation
        for out in self.pending.values():
            self.discard(out)
        self.pending.clear()

    def discard(self, out: _Outcome) -> None:
        """Count a surplus attempt and what its finished call cost."""
        self.discarded += 1
        if out.response is not None:
            self.discarded_usd += out.response.cost_usd
            u = out.response.usage
            self.discarded_tokens += u.input_tokens + u.output_tokens

    async def wait_applied(self, upto: int) -> None:
        """Until every attempt below ``upto`` (and below ``stop_at``) is applied."""
        async with self.cond:
            await self.cond.wait_for(lambda: self.applied >= min(upto, self.stop_at))

    def mark_sampled(self, n: int) -> None:
        self.sampled.add(n)
        while self.sample_front in self.sampled:
            self.sampled.discard(self.sample_front)
            self.sample_front += 1

    def may_apply(self, m: int) -> bool:
        later = m + self.agents - 1
        return m in self.pending and (later < self.sample_front or later >= self.stop_at)


@dataclass(slots=True)
class _Ticket:
    """A sampled attempt, ready to run."""

    n: int
    slot: int
    parent: Program
    inspirations: list[Program]
    memory: str  # the slot's memory as it stood at sampling (only this slot changes it)


class Worker:
    """Runs agents toward a goal and hands back what it found.

    Args:
        name: the worker's name (stored with every program it makes).
        task: the task being improved.
        model: the model agents call (the offline model by default in the CLI).
        executor: where evaluations run (``await executor.submit(code)``).
        store: the run's store; every program and attempt goes there.
        agents: concurrent agent slots.
        archive: ``cluster``, ``grid`` or ``greedy``, or an archive instance.
        seed: seeds sampling and the model's per-call seeds.
        explore: probability an agent's parent is a uniformly random elite.
        inspirations: inspiration programs shown per prompt.
        ordered: apply results in attempt order so a seed fixes the outcome (see module
            docstring); ``False`` lets each slot see every result as soon as it lands.
        model_timeout: seconds a model call may take before it counts as a failed attempt.
        bus: where events go; a private bus if omitted.
        control: pause/stop switch shared with a :class:`~aster_nb.run.Run`, if any.
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
        task: Task,
        model: Model,
        executor: Executor,
        store: Store,
        agents: int = 8,
        archive: str | Archive = "cluster",
        seed: int = 0,
        explore: float = 0.1,
        inspirations: int = 2,
        ordered: bool = True,
        model_timeout: float = 600.0,
        bus: EventBus | None = None,
        control: Control | None = None,
        planner: str = "",
        agent: str = "edit",
        tool_turns: int = 8,
    ) -> None:
        if agents < 1:
            raise ValueError(f"agents must be >= 1, got {agents}")
        if not 0.0 <= explore <= 1.0:
            raise ValueError(f"explore must be in [0, 1], got {explore}")
        self.name = name
        self.task = task
        self.model = model
        self.executor = executor
        self.store = store
        self.agents = agents
        self.seed = seed
        self.explore = explore
        self.n_inspirations = inspirations
        self.ordered = ordered
        if model_timeout <= 0:
            raise ValueError(f"model_timeout must be > 0 seconds, got {model_timeout}")
        self.model_timeout = model_timeout
        self.bus = bus or EventBus()
        self.control = control
        if agent not in ("edit", "tools"):
            raise ValueError(f"agent must be 'edit' or 'tools', got {agent!r}")
        self.agent_kind = agent
        self.stop_reason: str | None = None  # set when a spending cap stops the worker
        self.tool_turns = tool_turns
        self.planner = planner
        # Where the goal comes from while running; a planner points it at its live goals.
        self.goal_of: Callable[[], str] | None = None
        self.archive: Archive | None = archive if not isinstance(archive, str) else None
        self._archive_kind = archive if isinstance(archive, str) else archive.name
        self.memories = [AgentMemory() for _ in range(agents)]
        self.known: set[str] = set()  # ids of programs this worker has applied
        self._system = system_prompt(task)
        self._salt = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
        self.attempts_total = 0  # attempt numbers continue across runs
        # Per round: evaluations already made and the best of them, by a session killed in
        # that round (see restore); that round, resumed, spends only the rest of its budget.
        self._carried: dict[int, tuple[int, Program | None]] = {}

    # -- public --------------------------------------------------------------------------

    async def run(self, goal: str, base: Program, budget: Budget, *, round: int = 0) -> Handoff:
        """Search from ``base`` toward ``goal`` until ``budget`` is spent.

        A round that a killed session began (see :meth:`restore`) goes on where it
        stopped: the evaluations it stored count against ``budget``, and its best program
        can be this round's best.
        """
        carried, carried_best = self._carried.pop(round, (0, None))
        if carried and budget.evaluations is not None:
            budget = replace(budget, evaluations=max(0, budget.evaluations - carried))
        base = await self._ensure_evaluated(base, round)
        focus = focus_from_goal(goal, self.task.area_names)
        first = self.attempts_total
        seq = _Sequencer(agents=self.agents, applied=first, sample_front=first)
        deadline = None if budget.seconds is None else time.monotonic() + budget.seconds
        max_attempts = None if budget.evaluations is None else 4 * budget.evaluations + self.agents
        log: list[Experiment] = []
        best_before = (
            self.archive.best() if self.archive is not None and len(self.archive) else None
        )
        state = _RunState(goal, focus, base, budget, round, seq, deadline, max_attempts, first, log)
        state.best_score = best_before.score if best_before is not None else None
        state.best = carried_best
        try:
            async with asyncio.TaskGroup() as tg:
                for slot in range(self.agents):
                    tg.create_task(self._slot(slot, state))
        except ExceptionGroup as eg:
            # A configuration error (say, an evaluator breaking its feature contract) stops
            # the run; re-raise it as itself so callers can catch it by type.
            raise eg.exceptions[0] from None
        if self.ordered:
            seq.stop_at = min(seq.stop_at, first + state.started)
            await self._drain(state)
        # Numbers of surplus attempts after the cut are used again: nothing of them is kept.
        self.attempts_total = seq.cut if seq.cut is not None else first + state.started
        return await self._handoff(state)

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
            if p.ok and (best is None or p.score > best.score):
                best = p
            self._carried[p.round] = (n + 1, best)
        for p in replay:
            if p is not None and p.ok:
                if p.features is None:
                    p = p.evaluated(p.result, self._describe(p.code, p.result))
                self._archive(len(p.features or ())).add(p)
        for row in self.store.attempt_rows(self.name):
            ok = row["outcome"] in ("ok", "improved")
            self.memories[row["agent"] % self.agents].record(
                Experiment(
                    n=row["n"],
                    parent_id=row["parent_id"] or "",
                    parent_score=row["parent_score"],
                    idea=_first_sentence(row["rationale"] or "") or "(no rationale)",
                    change=row["change"] or "-",
                    status="ok" if ok else row["outcome"],
                    score=row["child_score"] if ok else None,
                    reason=row["reason"],
                    program_id=row["program_id"],
                )
            )
            self.attempts_total = max(self.attempts_total, row["n"] + 1)

    # -- the agent loop ------------------------------------------------------------------

    async def _slot(self, slot: int, st: _RunState) -> None:
        seq = st.seq
        n = st.first + slot
        while (ticket := await self._next(n, slot, st)) is not None:
            if self.control is not None and not await self.control.admit():
                await self._stop(n, st)  # stopped while paused: this sample never runs
                return
            if seq.full:
                return  # the budget was met while this slot waited to start
            # No await between admission and here: a pause stops every attempt not yet started.
            st.started = max(st.started, n - st.first + 1)
            # The goal is read as the attempt starts, so a steer lands on the very next attempt.
            goal = self.goal_of() if self.goal_of is not None else st.goal
            out = _Outcome(
                n=n,
                agent=slot,
                parent=ticket.parent,
                inspirations=ticket.inspirations,
                response=None,
                started=time.time(),
                goal=goal,
            )
            # A task of its own, so meeting the budget can cancel it without this slot.
            job = asyncio.create_task(self._attempt(ticket, out, st))
            seq.running[n] = job
            try:
                await job
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if not seq.full or (me is not None and me.cancelling()):
                    raise  # this slot itself is cancelled, not just a surplus attempt
            finally:
                del seq.running[n]
            if seq.full:
                # Surplus: the budget was met while it ran (ordered, by an attempt before
                # it). Neither stored nor reported; every later attempt of this slot would
                # be surplus too.
                seq.discard(out)
                return
            if self.ordered:
                seq.pending[n] = out
                await self._drain(st)
            else:
                self._apply(out, st)  # no await in it: applies never interleave
            n += self.agents

    async def _next(self, n: int, slot: int, st: _RunState) -> _Ticket | None:
        """Sample attempt ``n`` if the budget allows it; ``None`` ends the slot."""
        seq = st.seq
        if n >= seq.stop_at or seq.full:
            return None
        if (
            self.stop_reason is not None
            or (self.control is not None and self.control.stopping)
            or (st.deadline is not None and time.monotonic() >= st.deadline)
            or (st.max_attempts is not None and n - st.first >= st.max_attempts)
        ):
            await self._stop(n, st)
            return None
        if self.ordered:
            await seq.wait_applied(n - self.agents + 1)
            if n >= seq.stop_at:
                return None
            if st.deadline is not None and time.monotonic() >= st.deadline:
                await self._stop(n, st)
                return None
        ticket = self._sample(n, slot, st)
        if self.ordered:
            seq.mark_sampled(n)
            await self._drain(st)  # applies that waited for this sample may go now
        # Start it while the applied attempts fall short of the budget, even if those
        # running may make it up: waiting to know would leave the end of the run to one
        # call at a time. What proves surplus is cancelled when the budget is met (see
        # _Sequencer.close). Ordered, an attempt that is not surplus always gets here
        # with the budget unmet, so which attempts are applied does not depend on timing.
        budget = st.budget.evaluations
        if not seq.full and n < seq.stop_at and (budget is None or seq.evaluations < budget):
            return ticket
        await self._stop(n, st)
        return None

    async def _stop(self, n: int, st: _RunState) -> None:
        st.seq.stop_at = min(st.seq.stop_at, n)
        await self._drain(st)

    async def _drain(self, st: _RunState) -> None:
        seq = st.seq
        async with seq.cond:
            while True:
                if seq.may_apply(seq.applied):
                    self._apply(seq.pending.pop(seq.applied), st)
                elif not (
                    seq.applied >= seq.stop_at
                    and seq.applied not in seq.running
                    and any(m > seq.applied for m in seq.pending)
                ):
                    break
                # else: never started (a deadline stopped it while later ones ran): skip
                seq.applied += 1
            seq.cond.notify_all()

    async def _tool_attempt(
        self,
        prompt: str,
        parent: Program,
        out: _Outcome,
        seed: int,
        tags: tuple[tuple[str, str], ...],
    ) -> str:
        """A tool-using session on a copy of ``parent``; returns the program it ended with."""
        session = await run_tool_session(
            model=self.model,
            system=self._system,
            prompt=prompt + TOOL_NOTE,
            code=parent.code,
            statement=self.task.statement,
            evaluate=self.executor.submit,
            max_turns=self.tool_turns,
            timeout=self.model_timeout,
            seed=seed,
            tags=tags,
        )
        out.response = session.response(getattr(self.model, "name", ""))
        out.rationale = " ".join(session.edit_notes or session.notes)[:2000]
        out.tool_trials = len(session.trials)
        if session.code == parent.code:
            raise EditError(
                f"the tool session changed nothing ({session.turns} turns, "
                f"{session.tool_errors} tool errors{', submitted' if session.submitted else ''})"
            )
        return session.code

    def _sample(self, n: int, slot: int, st: _RunState) -> _Ticket:
        rng = np.random.default_rng([self.seed, self._salt, n])
        if self.archive is None or len(self.archive) == 0:
            # Nothing valid yet: the agents must repair the base rather than copy it.
            parent, insp = st.base, []
        else:
            parent, insp = self.archive.sample(
                rng, n_inspirations=self.n_inspirations, explore=self.explore
            )
        memory = self.memories[slot].render()
        return _Ticket(n=n, slot=slot, parent=parent, inspirations=insp, memory=memory)

    async def _attempt(self, t: _Ticket, out: _Outcome, st: _RunState) -> None:
        """Run attempt ``t``, filling in ``out`` (so a cancelled one still shows its call)."""
        n, slot, parent, insp, goal = t.n, t.slot, t.parent, t.inspirations, out.goal
        prompt = propose_prompt(
            task=self.task,
            goal=goal,
            focus=focus_from_goal(goal, self.task.area_names),
            parent=parent,
            inspirations=insp,
            memory=t.memory,
        )
        seed = self._salt * 1_000_003 + n
        tags = (("worker", self.name), ("agent", str(slot)))
        try:
            if self.agent_kind == "tools":
                code = await self._tool_attempt(prompt, parent, out, seed, tags)
            else:
                st.seq.calling.add(n)
                try:
                    async with asyncio.timeout(self.model_timeout):
                        out.response = await self.model.complete(
                            Request(
                                messages=(user(prompt),),
                                system=self._system,
                                purpose="propose",
                                seed=seed,
                                tags=tags,
                            )
                        )
                finally:
                    st.seq.calling.discard(n)
                if st.seq.full:
                    return  # surplus: the budget was met during the call (see close)
                text = str(out.response.text)
                out.rationale = text.split("<<<<<<<")[0].split("```")[0].strip()
                code = apply_edit(parent.code, parse_edit(text))
            _check_markers(parent.code, code)
        except TimeoutError:
            out.outcome, out.reason = "model_error", f"no reply within {self.model_timeout:g} s"
            if isinstance(self.model, Watched):
                # The timeout cancelled the call inside the wrapper, which counts no
                # cancellation as a failure: this one is, so it is counted here.
                self.model.watch.failed(out.reason)
            return
        except BudgetExceeded as e:
            # The run's spending cap: nothing was spent on this call; start no more.
            out.outcome, out.reason = "budget", str(e)
            self.stop_reason = str(e)
            if self.control is not None:
                self.control.stop(str(e))
            return
        except EditError as e:
            out.outcome, out.reason = "edit_failed", str(e)
            return
        except Exception as e:  # a model fault is a recorded failure, never a crash
            out.outcome, out.reason = "model_error", f"{type(e).__name__}: {e}"
            return
        out.change = diff_summary(parent.code, code)
        child = Program(
            code=code,
            parents=(parent.id, *(p.id for p in insp if p.id in out.response.text)),
            origin="edit",
            worker=self.name,
            planner=self.planner,
            agent=slot,
            round=st.round,
        )
        stored = self.store.get(child.id)
        earlier = st.fresh.get(child.id)
        if stored is not None and stored.result is not None:
            out.child = stored  # identical code is never evaluated twice
        elif earlier is not None and earlier.result is not None:
            # Evaluated by an attempt of this run not applied yet: its result, this
            # attempt's lineage (the row stored is that of the first applied).
            out.child, out.new = child.evaluated(earlier.result, earlier.features), True
        else:
            result = await self.executor.submit(code)
            out.child = child.evaluated(result, self._describe(code, result) if result.ok else None)
            out.new = True
            if result.status is not Status.LOST:  # a lost evaluation may be tried again
                st.fresh[child.id] = out.child
        result = out.child.result
        assert result is not None
        out.outcome = "ok" if result.ok else str(result.status)
        out.reason = None if result.ok else result.error

    def _apply(self, out: _Outcome, st: _RunState) -> None:
        """Apply one attempt's outcome to the archive, memories, budget and events."""
        child = out.child
        if child is not None and child.id in self.known:
            # Decided here, in attempt order, so which of two identical proposals counts
            # as new does not depend on which evaluation finished first.
            out.outcome = "duplicate"
        improved = False
        if child is not None and out.outcome != "duplicate":
            if child.status is not Status.LOST:
                # a lost evaluation says nothing about the program: it may be tried again
                self.known.add(child.id)
            if out.new:
                # Stored before any event reports it; a killed session loses only what
                # was never shown. (Code another worker stored first is its row.)
                self.store.add_program(child)
                st.fresh.pop(child.id, None)
            st.seq.evaluations += 1
            if child.ok:
                improved = self._archive(len(child.features or ())).add(child)
                self.store.add_archive_entry(worker=self.name, program_id=child.id)
                if st.best is None or child.score > st.best.score:
                    st.best = child
                if st.best_score is None or (child.score or 0) > st.best_score:
                    prev, st.best_score = st.best_score, child.score
                    if out.outcome == "ok":
                        out.outcome = "improved"
                    self.bus.emit(BestImproved(program=child, worker=self.name, previous=prev))
            self.bus.emit(
                ProgramEvaluated(program=child, worker=self.name, n=out.n, improved=improved)
            )
        elif out.outcome == "duplicate" and child is not None:
            out.reason = f"identical to program {child.id}"
        exp = Experiment(
            n=out.n,
            parent_id=out.parent.id,
            parent_score=out.parent.score,
            idea=_first_sentence(out.rationale) or "(no rationale)",
            change=out.change or "-",
            status="ok" if out.outcome in ("ok", "improved") else out.outcome,
            score=child.score
            if child is not None and child.ok and out.outcome != "duplicate"
            else None,
            reason=out.reason,
            program_id=child.id if child is not None else None,
        )
        self.memories[out.agent].record(exp)
        st.log.append(exp)
        self._record_attempt(out, st)
        if out.outcome in ("edit_failed", "duplicate", "model_error"):
            self.bus.emit(
                AttemptFailed(
                    worker=self.name,
                    n=out.n,
                    agent=out.agent,
                    outcome=out.outcome,
                    reason=out.reason or "",
                )
            )
        budget = st.budget.evaluations
        if budget is not None and st.seq.evaluations >= budget and not st.seq.full:
            st.seq.close(out.n + 1 if self.ordered else None)

    def _record_attempt(self, out: _Outcome, st: _RunState) -> None:
        r = out.response
        u = r.usage if r is not None else None
        self.store.add_attempt(
            AttemptRecord(
                worker=self.name,
                n=out.n,
                agent=out.agent,
                round=st.round,
                parent_id=out.parent.id,
                inspiration_ids=tuple(p.id for p in out.inspirations),
                program_id=out.child.id if out.child is not None else None,
                outcome=out.outcome,
                reason=out.reason,
                rationale=out.rationale,
                goal=out.goal,
                change=out.change,
                model=r.model if r is not None else getattr(self.model, "name", ""),
                input_tokens=u.input_tokens if u else 0,
                output_tokens=u.output_tokens if u else 0,
                cache_read_tokens=u.cache_read_tokens if u else 0,
                cache_write_tokens=u.cache_write_tokens if u else 0,
                cost_usd=r.cost_usd if r is not None else 0.0,
                retries=r.retries if r is not None else 0,
                latency=r.latency if r is not None else 0.0,
                started=out.started,
                finished=time.time(),
            )
        )
        if u is not None:
            st.usage_in += u.input_tokens
            st.usage_out += u.output_tokens

    # -- helpers -------------------------------------------------------------------------

    def _archive(self, dims: int) -> Archive:
        if self.archive is None:
            # Built at the first valid program, so its dimension is the descriptor's.
            self.archive = make_archive(
                self._archive_kind,
                dims=dims,
                seed=self.seed,
                bounds=self.task.feature_bounds,
                descriptor=archive_descriptor(self.task, self.store),  # recorded in the store
            )
        return self.archive

    def _describe(self, code: str, result: EvalResult) -> tuple[float, ...]:
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
                describe=self._describe,
            )
        if base.ok and base.features is None:
            base = base.evaluated(base.result, self._describe(base.code, base.result))
        if base.id not in self.known:
            self.known.add(base.id)
            if base.ok:
                self._archive(len(base.features or ())).add(base)
                self.store.add_archive_entry(worker=self.name, program_id=base.id)
        return base

    async def _handoff(self, st: _RunState) -> Handoff:
        base, best = st.base, st.base
        if st.best is not None and (not base.ok or st.best.score > base.score):
            best = st.best
        log = sorted(st.log, key=lambda e: e.n)
        counts = Counter(e.status for e in log)
        stats = {
            "attempts": len(log),
            "evaluations": st.seq.evaluations,
            "ok": counts["ok"],
            "failed": sum(counts[k] for k in ("error", "timeout", "memory", "invalid", "lost")),
            "edit_failed": counts["edit_failed"],
            "model_errors": counts["model_error"],
            "duplicates": counts["duplicate"],
            "discarded": st.seq.discarded,
            "discarded_usd": st.seq.discarded_usd,
            "discarded_tokens": st.seq.discarded_tokens,
            "improved": sum(1 for e in log if (e.delta or 0) > 0),
            "base_score": base.score,
            "best_score": best.score,
            "input_tokens": st.usage_in,
            "output_tokens": st.usage_out,
        }
        shown = _telling(log, HANDOFF_LOG_LINES)
        prompt = handoff_prompt(
            goal=st.goal, base=base, best=best, stats=stats, log="\n".join(e.line() for e in shown)
        )
        try:
            async with asyncio.timeout(self.model_timeout):
                resp = await self.model.complete(
                    Request(
                        messages=(user(prompt),),
                        system=self._system,
                        purpose="handoff",
                        seed=st.first,
                        tags=(("worker", self.name),),
                    )
                )
            sections = parse_sections(resp.text)
        except Exception as e:  # the handoff still goes out, with the numbers
            sections = {
                "done": f"{len(log)} attempts, {stats['evaluations']} evaluations.",
                "learned": "",
                "concerns": f"the handoff model call failed: {type(e).__name__}: {e}",
            }
        h = Handoff(
            worker=self.name,
            goal=st.goal,
            round=st.round,
            done=sections["done"],
            learned=sections["learned"],
            concerns=sections["concerns"],
            best=best,
            base_id=st.base.id,
            diff=unified_diff(st.base.code, best.code, a_name="base", b_name="best"),
            stats=stats,
        )
        self.store.add_handoff(h)
        self.bus.emit(HandoffReceived(handoff=h))
        return h


@dataclass(slots=True)
class _RunState:
    goal: str
    focus: tuple[str, ...]
    base: Program
    budget: Budget
    round: int
    seq: _Sequencer
    deadline: float | None
    max_attempts: int | None
    first: int
    log: list[Experiment]
    started: int = 0
    best_score: float | None = None
    usage_in: int = 0
    usage_out: int = 0
    best: Program | None = None  # best valid program this run found
    # Programs evaluated by attempts not applied yet (so not in the store), by id.
    fresh: dict[str, Program] = field(default_factory=dict)


async def evaluate_stored(
    p: Program,
    *,
    executor: Executor,
    store: Store,
    bus: EventBus,
    by: str,
    describe: Callable[[str, EvalResult], tuple[float, ...]] = describe,
) -> Program:
    """``p`` with its result: the stored one if its code was seen, else the sandbox's.

    A new result is stored before the event that reports it.
    """
    stored = store.get(p.id)
    if stored is not None and stored.result is not None:
        return stored
    result = await executor.submit(p.code)
    p = p.evaluated(result, describe(p.code, result) if result.ok else None)
    if store.add_program(p):
        bus.emit(ProgramEvaluated(program=p, worker=by, n=-1, improved=False))
    return p


TOOL_NOTE = (
    "\n\nIn this session you change the program through the tools (read_file, edit_file, "
    "run_evaluation, submit); SEARCH/REPLACE blocks in your text are not applied.\n"
)
HANDOFF_LOG_LINES = 80  # attempt lines a handoff prompt shows; counts cover the rest


def _telling(log: list[Experiment], limit: int) -> list[Experiment]:
    """The attempts most worth a planner's reading: the best gains, then the latest."""
    if len(log) <= limit:
        return log
    gains = sorted((e for e in log if (e.delta or 0) > 0), key=lambda e: e.delta or 0, reverse=True)
    keep = {e.n for e in gains[: limit // 2]}
    for e in reversed(log):
        if len(keep) >= limit:
            break
        keep.add(e.n)
    return [e for e in log if e.n in keep]


def _check_markers(parent: str, child: str) -> None:
    """An edit must keep the parent's surface areas (EVOLVE-BLOCK names) intact."""
    try:
        before, after = list(find_blocks(parent)), list(find_blocks(child))
    except BlockError as e:
        raise EditError(f"the edit broke the EVOLVE-BLOCK markers: {e}") from e
    if before != after:
        raise EditError(
            f"the edit changed the EVOLVE-BLOCK areas from {before} to {after}; "
            "keep every marker line as it is"
        )


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    for end in (". ", "! ", "? "):
        i = text.find(end)
        if 0 < i < 240:
            return text[: i + 1]
    return text[:240]
