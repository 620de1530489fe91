"""The ordered scheduler: many concurrent attempts, results applied in attempt order.

A worker's run numbers its attempts from ``first`` on; attempt ``n`` belongs to slot
``(n - first) % agents`` and sees the shared state (archive, memories) as it stood after
attempts ``first .. n - agents`` exactly, because results are applied in attempt order
(:class:`Sequencer`). Evaluation timing can then change how long a run takes, never what
it finds. ``ordered=False`` applies each result as soon as it lands instead.

An evaluation budget is kept exactly without a serial tail: every slot keeps starting
attempts while the applied ones have made fewer than ``evaluations`` programs, although
some of those running may then prove surplus. The attempt whose result makes the budget
exact is the last one applied; every attempt after it is discarded before anything stores
or reports it. In order, that last attempt is fixed by the results before it, so a seed
still fixes the outcome. Surplus attempts are cancelled, except one inside its proposal
call (a provider bills a request it began, and the spending ledger should see what it
bills): it is left to finish and its reply thrown away (see :meth:`Sequencer.close`).
Waiting instead for the exact count before each of the last attempts ran the end of a run
one model call at a time.

What an attempt does is not this module's business: :class:`Scheduler` takes it as
callables (sample, begin, attempt, apply), so the ordering is tested on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..control import Control
from .attempt import Outcome, Ticket


@dataclass(slots=True)
class Sequencer:
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
    pending: dict[int, Outcome] = field(default_factory=dict)
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

    def discard(self, out: Outcome) -> None:
        """Count a surplus attempt and what its finished calls cost (tokens of every kind,
        as the spending ledger counts them, so the ledger less these is the kept spend)."""
        self.discarded += 1
        if out.response is not None:
            self.discarded_usd += out.response.cost_usd
            self.discarded_tokens += out.response.usage.total

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


class Scheduler:
    """Runs ``agents`` slots of attempts until a budget, a deadline or a stop ends them.

    Args:
        agents: concurrent slots.
        first: the number of the first attempt (numbers continue across runs).
        ordered: apply results in attempt order (see the module docstring).
        evaluations: attempts that count as evaluations before the budget is met, or
            ``None`` for no count.
        deadline: ``time.monotonic()`` after which no attempt starts, or ``None``.
        max_attempts: attempts after which none starts, or ``None``.
        control: the run's pause/stop switch, if any.
        halted: whether something outside stopped the work (a spending cap).
        sample: makes attempt ``n`` of a slot from the shared state as it stands.
        begin: the outcome record of a ticket about to run (reads the goal then).
        attempt: runs a ticket, filling in its outcome; cancelled if it proves surplus.
        apply: applies an outcome to the shared state; returns whether it counted as an
            evaluation.
    """

    def __init__(
        self,
        *,
        agents: int,
        first: int,
        ordered: bool,
        evaluations: int | None,
        deadline: float | None,
        max_attempts: int | None,
        control: Control | None,
        halted: Callable[[], bool],
        sample: Callable[[int, int], Ticket],
        begin: Callable[[Ticket], Outcome],
        attempt: Callable[[Ticket, Outcome], Awaitable[None]],
        apply: Callable[[Outcome], bool],
    ) -> None:
        self.agents, self.first, self.ordered = agents, first, ordered
        self.evaluations, self.deadline, self.max_attempts = evaluations, deadline, max_attempts
        self.control, self.halted = control, halted
        self._sample_fn, self._begin, self._attempt, self._apply_fn = sample, begin, attempt, apply
        self.seq = Sequencer(agents=agents, applied=first, sample_front=first)
        self.started = 0  # attempts started, counted from first

    @property
    def end(self) -> int:
        """The number the next run's first attempt takes (surplus numbers are reused)."""
        return self.seq.cut if self.seq.cut is not None else self.first + self.started

    async def run(self) -> None:
        """Run every slot to its end, then apply what is left in order."""
        try:
            async with asyncio.TaskGroup() as tg:
                for slot in range(self.agents):
                    tg.create_task(self._slot(slot))
        except ExceptionGroup as eg:
            # A configuration error (say, an evaluator breaking its feature contract) stops
            # the run; re-raise it as itself so callers can catch it by type.
            raise eg.exceptions[0] from None
        if self.ordered:
            self.seq.stop_at = min(self.seq.stop_at, self.first + self.started)
            await self._drain()

    async def _slot(self, slot: int) -> None:
        seq = self.seq
        n = self.first + slot
        while (ticket := await self._next(n, slot)) is not None:
            if self.control is not None and not await self.control.admit():
                await self._stop(n)  # stopped while paused: this sample never runs
                return
            if seq.full:
                return  # the budget was met while this slot waited to start
            # No await between admission and here: a pause stops every attempt not yet started.
            self.started = max(self.started, n - self.first + 1)
            out = self._begin(ticket)
            # A task of its own, so meeting the budget can cancel it without this slot.
            job = asyncio.create_task(self._run_attempt(ticket, out))
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
                await self._drain()
            else:
                self._apply(out)  # no await in it: applies never interleave
            n += self.agents

    async def _run_attempt(self, ticket: Ticket, out: Outcome) -> None:
        await self._attempt(ticket, out)

    async def _next(self, n: int, slot: int) -> Ticket | None:
        """Sample attempt ``n`` if the budget allows it; ``None`` ends the slot."""
        seq = self.seq
        if n >= seq.stop_at or seq.full:
            return None
        if (
            self.halted()
            or (self.control is not None and self.control.stopping)
            or (self.deadline is not None and time.monotonic() >= self.deadline)
            or (self.max_attempts is not None and n - self.first >= self.max_attempts)
        ):
            await self._stop(n)
            return None
        if self.ordered:
            await seq.wait_applied(n - self.agents + 1)
            if n >= seq.stop_at:
                return None
            if self.deadline is not None and time.monotonic() >= self.deadline:
                await self._stop(n)
                return None
        ticket = self._sample_fn(n, slot)
        if self.ordered:
            seq.mark_sampled(n)
            await self._drain()  # applies that waited for this sample may go now
        # Start it while the applied attempts fall short of the budget, even if those
        # running may make it up: waiting to know would leave the end of the run to one
        # call at a time. What proves surplus is cancelled when the budget is met (see
        # Sequencer.close). Ordered, an attempt that is not surplus always gets here with
        # the budget unmet, so which attempts are applied does not depend on timing.
        budget = self.evaluations
        if not seq.full and n < seq.stop_at and (budget is None or seq.evaluations < budget):
            return ticket
        await self._stop(n)
        return None

    async def _stop(self, n: int) -> None:
        self.seq.stop_at = min(self.seq.stop_at, n)
        await self._drain()

    async def _drain(self) -> None:
        seq = self.seq
        async with seq.cond:
            while True:
                if seq.may_apply(seq.applied):
                    self._apply(seq.pending.pop(seq.applied))
                elif not (
                    seq.applied >= seq.stop_at
                    and seq.applied not in seq.running
                    and any(m > seq.applied for m in seq.pending)
                ):
                    break
                # else: never started (a deadline stopped it while later ones ran): skip
                seq.applied += 1
            seq.cond.notify_all()

    def _apply(self, out: Outcome) -> None:
        """Apply one outcome; close the budget when it makes the count."""
        seq = self.seq
        if self._apply_fn(out):
            seq.evaluations += 1
        budget = self.evaluations
        if budget is not None and seq.evaluations >= budget and not seq.full:
            seq.close(out.n + 1 if self.ordered else None)
