"""One attempt: propose, edit, check the markers, evaluate; shared by workers and merges.

A worker's agent and a planner's merge make a program the same way: ask the model under
one timeout policy (:func:`ask`; :func:`timed_out` is what a timeout counts as), apply the
reply's edit to the parent and refuse one that breaks the EVOLVE-BLOCK markers
(:func:`edited`), and evaluate the result unless identical code was evaluated before
(:func:`evaluate_stored`). :class:`Ticket` and :class:`Outcome` are what the scheduler
hands an attempt and gets back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from ..blocks import BlockError, find_blocks
from ..edits import EditError, apply_edit, parse_edit
from ..evalplan import EvalPlan
from ..events import EvaluationProgress, EventBus, ProgramEvaluated
from ..features import describe
from ..llm.base import Model, Request, Response
from ..llm.watch import Watched
from ..records import EvalResult, Program
from ..store import Store
from .context import Executor
from .noise import Measured, OnReport, confirm, measure

MODEL_TIMEOUT = 600.0  # seconds a model call may take before it counts as failed


@dataclass(slots=True)
class Ticket:
    """A sampled attempt, ready to run.

    Attributes:
        n: the worker's attempt number.
        slot: the agent slot that runs it.
        parent: the program it edits.
        inspirations: the programs its prompt shows beside the parent.
        memory: the slot's memory as it stood at sampling (only this slot changes it).
    """

    n: int
    slot: int
    parent: Program
    inspirations: list[Program]
    memory: str


@dataclass(slots=True)
class Outcome:
    """What one attempt produced, applied to shared state in attempt order.

    Attributes:
        n: the attempt number.
        agent: its slot.
        parent: the program it edited.
        inspirations: the programs its prompt showed.
        response: the model's reply (``None`` until it came).
        started: Unix time it started.
        child: the program it made (evaluated), if any.
        outcome: ``ok``, ``improved``, ``duplicate``, ``edit_failed``, ``model_error``,
            ``budget`` or an evaluation status.
        reason: why it failed, when it did.
        rationale: the model's text before its edit.
        change: a one-line diff summary.
        goal: the goal it worked toward (read as it started).
        focus: the goal's surface areas then (the prompt's focus).
        tool_trials: evaluations a tool session ran before submitting.
        new: the child was evaluated by this run, not found in the store.
        measured: the child's runs by seed and what they reported (stored with it), when
            this attempt evaluated it.
    """

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
    focus: tuple[str, ...] = ()
    tool_trials: int = 0
    new: bool = False
    measured: Measured | None = None


async def ask(model: Model, request: Request, *, timeout: float) -> Response:
    """``model``'s reply to ``request``; ``TimeoutError`` after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        return await model.complete(request)


def timed_out(model: Model, timeout: float) -> str:
    """The reason a call that timed out failed, counted as a failure of ``model``.

    The timeout cancelled the call inside a :class:`~aster_nb.llm.watch.Watched` wrapper,
    which counts no cancellation as a failure: this one is, so it is counted here.
    """
    reason = f"no reply within {timeout:g} s"
    if isinstance(model, Watched):
        model.watch.failed(reason)
    return reason


def rationale(text: str) -> str:
    """The model's words before its first edit block or code fence."""
    return text.split("<<<<<<<")[0].split("```")[0].strip()


def edited(parent: str, reply: str) -> str:
    """``parent`` with the edit in ``reply`` applied and its markers checked.

    Raises:
        EditError: the reply holds no edit that applies, or it breaks the markers.
    """
    code = apply_edit(parent, parse_edit(reply))
    check_markers(parent, code)
    return code


def check_markers(parent: str, child: str) -> None:
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


async def evaluate_stored(
    p: Program,
    *,
    executor: Executor,
    store: Store,
    bus: EventBus,
    by: str,
    describe: Callable[[str, EvalResult], tuple[float, ...]] = describe,
    plan: EvalPlan | None = None,
    confirm_above: float | None = None,
) -> Program:
    """``p`` with its result: the stored one if its code was seen, else the sandbox's.

    For a noisy task (``plan``), the result is the mean over the plan's seeds, confirmed
    on ``confirm_seeds`` seeds when it beats ``confirm_above`` (``-inf``: always). A new
    result is stored, with its seeds' scores and reported values, before the event that
    reports it.
    """
    stored = store.get(p.id)
    if stored is not None and stored.result is not None:
        return stored
    plan = plan or EvalPlan()
    report = progress_to(bus, by, -1)
    m = await measure(executor, p.code, plan, on_report=report)
    if confirm_above is not None and m.result.ok and m.result.score > confirm_above:
        m = await confirm(executor, p.code, plan, m, on_report=report)
    result = m.result
    p = p.evaluated(result, describe(p.code, result) if result.ok else None)
    if store.add_program(p):
        store.add_details(p.id, seeds=m.seeds, curve=m.curve)
        bus.emit(ProgramEvaluated(program=p, worker=by, n=-1, improved=False))
    return p


def progress_to(bus: EventBus, worker: str, n: int) -> OnReport:
    """What sends attempt ``n``'s reports to ``bus`` as events."""

    def on_report(seed: int, step: int, values: dict[str, float]) -> None:
        bus.emit(EvaluationProgress(worker=worker, n=n, seed=seed, step=step, values=values))

    return on_report


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` (at most 240 characters), whitespace collapsed."""
    text = " ".join(text.split())
    for end in (". ", "! ", "? "):
        i = text.find(end)
        if 0 < i < 240:
            return text[: i + 1]
    return text[:240]
