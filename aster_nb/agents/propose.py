"""A worker's agent at work: one attempt from ticket to evaluated child.

The :class:`~aster_nb.agents.scheduler.Scheduler` decides when an attempt runs and
:mod:`~aster_nb.agents.bookkeeping` what its outcome changes; this module is what happens
in between. The agent is prompted with the goal, the parent, the inspirations and its
memory, and answers with one reply of SEARCH/REPLACE blocks (``edit``) or a tool session
(``tools``, :mod:`~aster_nb.agents.toolagent`). The edit is applied and its markers
checked (:mod:`~aster_nb.agents.attempt`, shared with the planner's merges), and the child
is evaluated unless identical code was. Every failure (a timeout, a model error, an edit
that does not apply, the spending cap) is written into the :class:`Outcome` as a reason:
an attempt never raises for the model's sake.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..edits import EditError, diff_summary
from ..llm.base import Request, user
from ..llm.spend import BudgetExceeded
from ..records import Program, Status
from .attempt import (
    Outcome,
    Ticket,
    ask,
    check_markers,
    edited,
    progress_to,
    rationale,
    timed_out,
)
from .noise import confirm, measure, parent_curve
from .prompts import propose_prompt
from .toolagent import tool_attempt

if TYPE_CHECKING:
    from .bookkeeping import RunState
    from .worker import Worker


async def propose(w: Worker, t: Ticket, out: Outcome, st: RunState) -> None:
    """Run attempt ``t`` of ``w``, filling in ``out`` (so a cancelled one still shows its
    call): the model's reply or tool session, the edit, then the child's evaluation."""
    n, slot, parent, insp, goal = t.n, t.slot, t.parent, t.inspirations, out.goal
    prompt = propose_prompt(
        task=w.task,
        goal=goal,
        focus=out.focus,  # the goal's resolved areas, never its words
        parent=parent,
        inspirations=insp,
        memory=t.memory,
    )
    seed = w.salt * 1_000_003 + n
    tags = (("worker", w.name), ("agent", str(slot)))
    try:
        if w.agent_kind == "tools":
            code = await tool_attempt(
                model=w.model,
                system=w.system,
                prompt=prompt,
                parent=parent,
                out=out,
                statement=w.task.statement,
                evaluate=w.executor.submit,
                max_turns=w.tool_turns,
                timeout=w.model_timeout,
                seed=seed,
                tags=tags,
            )
            check_markers(parent.code, code)
        else:
            request = Request(
                messages=(user(prompt),),
                system=w.system,
                purpose="propose",
                seed=seed,
                tags=tags,
            )
            st.seq.calling.add(n)
            try:
                out.response = await ask(w.model, request, timeout=w.model_timeout)
            finally:
                st.seq.calling.discard(n)
            if st.seq.full:
                return  # surplus: the budget was met during the call (see Sequencer.close)
            text = str(out.response.text)
            out.rationale = rationale(text)
            code = edited(parent.code, text)
    except TimeoutError:
        out.outcome, out.reason = "model_error", timed_out(w.model, w.model_timeout)
        return
    except BudgetExceeded as e:
        # The run's spending cap: nothing was spent on this call; start no more.
        out.outcome, out.reason = "budget", str(e)
        w.stop_reason = str(e)
        if w.control is not None:
            w.control.stop(str(e))
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
        worker=w.name,
        planner=w.planner,
        agent=slot,
        round=st.round,
    )
    await evaluate_child(w, child, out, st)


async def evaluate_child(w: Worker, child: Program, out: Outcome, st: RunState) -> None:
    """Evaluate ``child`` unless identical code was: the store's or this run's result."""
    stored = w.store.get(child.id)
    earlier = st.fresh.get(child.id)
    if stored is not None and stored.result is not None:
        out.child = stored  # identical code is never evaluated twice
    elif earlier is not None and earlier.result is not None:
        # Evaluated by an attempt of this run not applied yet: its result, this
        # attempt's lineage (the row stored is that of the first applied).
        out.child, out.new = child.evaluated(earlier.result, earlier.descriptor), True
    else:
        plan = w.task.evaluation
        report = progress_to(w.bus, w.name, out.n)
        curve = parent_curve(w.store, out.parent, plan)
        m = await measure(w.executor, child.code, plan, parent=curve, on_report=report)
        if plan.noisy and m.result.ok and _may_be_best(m.result.score, st):
            # a would-be best is judged on more seeds first: one lucky seed must not win
            m = await confirm(w.executor, child.code, plan, m, on_report=report)
        result, out.measured = m.result, m
        desc = w.descriptor_of(child.code, result) if result.ok else None
        out.child, out.new = child.evaluated(result, desc), True
        if result.status not in (Status.LOST, Status.STOPPED):  # these may be tried again
            st.fresh[child.id] = out.child
            st.measured[child.id] = m
    result = out.child.result
    assert result is not None
    out.outcome = "ok" if result.ok else str(result.status)
    out.reason = None if result.ok else result.error


def _may_be_best(score: float | None, st: RunState) -> bool:
    """Whether a child scoring ``score`` could become the worker's best (or the run's):
    the lowest bar it would have to pass, as the run stands now. The bar only rises, so a
    child that is not confirmed here cannot beat it when its attempt is applied."""
    bars = [b for b in (st.best_score, st.best.score if st.best else None) if b is not None]
    return score is not None and (not bars or score > min(bars))
