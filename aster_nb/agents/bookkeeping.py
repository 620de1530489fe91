"""What a worker does with each finished attempt: archive, memories, store, events.

Applied in attempt order (see :mod:`~aster_nb.agents.scheduler`): a program is stored when
its attempt is applied, before any event reports it; when two attempts propose identical
code, the stored row's lineage is the first applied, while the attempts table records
every proposal.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..blocks import touched_areas
from ..events import AttemptFailed, BestImproved, ProgramEvaluated
from ..records import AttemptRecord, Experiment, Program, Status
from .attempt import Outcome, first_sentence
from .context import Budget
from .noise import Measured, confirmed
from .scheduler import Sequencer

if TYPE_CHECKING:
    from .worker import Worker


@dataclass(slots=True)
class RunState:
    """One :meth:`Worker.run <aster_nb.agents.worker.Worker.run>` in progress.

    Attributes:
        goal: the goal the run started with (the handoff reports the last in ``goals``).
        base: the program it started from.
        budget: what it may spend.
        round: the planner round.
        seq: the scheduler's sequencer (evaluations counted, surplus discarded).
        first: its first attempt number.
        log: every applied attempt, as an experiment.
        best_score: the best score the worker's archive has seen.
        usage_in: input tokens of the applied attempts.
        usage_out: output tokens of the applied attempts.
        best: the best valid program this run found.
        fresh: programs evaluated by attempts not applied yet (so not stored), by id.
        measured: their runs by seed and reported values (stored with the program).
        goals: ``(first attempt, goal)`` of each goal the applied attempts worked toward,
            in attempt order: a goal steered during the run shows as a second entry.
    """

    goal: str
    base: Program
    budget: Budget
    round: int
    seq: Sequencer
    first: int
    log: list[Experiment] = field(default_factory=list)
    best_score: float | None = None
    usage_in: int = 0
    usage_out: int = 0
    best: Program | None = None
    fresh: dict[str, Program] = field(default_factory=dict)
    measured: dict[str, Measured] = field(default_factory=dict)
    goals: list[tuple[int, str]] = field(default_factory=list)


def apply_outcome(w: Worker, out: Outcome, st: RunState) -> bool:
    """Apply one attempt's outcome to ``w``'s archive, memories, store and events.

    Returns whether it counted as an evaluation (a new program, not a duplicate).
    """
    child = out.child
    if child is not None and child.id in w.known:
        # Decided here, in attempt order, so which of two identical proposals counts
        # as new does not depend on which evaluation finished first.
        out.outcome = "duplicate"
    improved = counted = False
    if child is not None and out.outcome != "duplicate":
        if child.status is not Status.LOST:
            # a lost evaluation says nothing about the program: it may be tried again
            w.known.add(child.id)
        if out.new:
            # Stored before any event reports it; a killed session loses only what
            # was never shown. (Code another worker stored first is its row.)
            m = st.measured.pop(child.id, None) or out.measured
            if w.store.add_program(child) and m is not None:
                w.store.add_details(child.id, seeds=m.seeds, curve=m.curve)
            st.fresh.pop(child.id, None)
        counted = True
        # a noisy task's child becomes a best only on its confirmed mean (agents.noise)
        eligible = confirmed(child.result, w.task.evaluation)
        if child.ok:
            improved = w.archive_for(len(child.descriptor or ())).add(child)
            w.store.add_archive_entry(worker=w.name, program_id=child.id)
            if eligible and (st.best is None or child.score > st.best.score):
                st.best = child
            if eligible and (st.best_score is None or (child.score or 0) > st.best_score):
                prev, st.best_score = st.best_score, child.score
                if out.outcome == "ok":
                    out.outcome = "improved"
                w.bus.emit(BestImproved(program=child, worker=w.name, previous=prev))
        w.bus.emit(ProgramEvaluated(program=child, worker=w.name, n=out.n, improved=improved))
    elif out.outcome == "duplicate" and child is not None:
        out.reason = f"identical to program {child.id}"
    exp = Experiment(
        n=out.n,
        parent_id=out.parent.id,
        parent_score=out.parent.score,
        idea=first_sentence(out.rationale) or "(no rationale)",
        change=out.change or "-",
        status="ok" if out.outcome in ("ok", "improved") else out.outcome,
        score=child.score
        if child is not None and child.ok and out.outcome != "duplicate"
        else None,
        reason=out.reason,
        program_id=child.id if child is not None else None,
    )
    w.memories[out.agent].record(exp)
    st.log.append(exp)
    if out.goal and (not st.goals or st.goals[-1][1] != out.goal):
        st.goals.append((out.n, out.goal))  # attempt order: the goal in effect from n on
    record_attempt(w, out, st)
    if out.outcome in ("edit_failed", "duplicate", "model_error"):
        w.bus.emit(
            AttemptFailed(
                worker=w.name,
                n=out.n,
                agent=out.agent,
                outcome=out.outcome,
                reason=out.reason or "",
            )
        )
    return counted


def remembered(row: Mapping[str, Any]) -> Experiment:
    """A stored attempt (:meth:`Store.attempt_rows <aster_nb.store.Store.attempt_rows>`) as
    its agent remembers it: how a reopened run rebuilds the agents' memories."""
    ok = row["outcome"] in ("ok", "improved")
    return Experiment(
        n=row["n"],
        parent_id=row["parent_id"] or "",
        parent_score=row["parent_score"],
        idea=first_sentence(row["rationale"] or "") or "(no rationale)",
        change=row["change"] or "-",
        status="ok" if ok else row["outcome"],
        score=row["child_score"] if ok else None,
        reason=row["reason"],
        program_id=row["program_id"],
    )


def record_attempt(w: Worker, out: Outcome, st: RunState) -> None:
    """Store the attempt (every one, whatever its outcome) and count its tokens."""
    r = out.response
    u = r.usage if r is not None else None
    w.store.add_attempt(
        AttemptRecord(
            worker=w.name,
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
            model=r.model if r is not None else getattr(w.model, "name", ""),
            input_tokens=u.input_tokens if u else 0,
            output_tokens=u.output_tokens if u else 0,
            cache_read_tokens=u.cache_read_tokens if u else 0,
            cache_write_tokens=u.cache_write_tokens if u else 0,
            cost_usd=r.cost_usd if r is not None else 0.0,
            retries=r.retries if r is not None else 0,
            latency=r.latency if r is not None else 0.0,
            started=out.started,
            finished=time.time(),
            focus=out.focus,
            areas=touched_areas(out.parent.code, out.child.code) if out.child is not None else (),
        )
    )
    if u is not None:
        st.usage_in += u.input_tokens
        st.usage_out += u.output_tokens
