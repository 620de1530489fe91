"""The ordered scheduler on its own: what each attempt sees, and the budget's cut."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from aster_nb.agents.attempt import Outcome, Ticket
from aster_nb.agents.scheduler import Scheduler
from aster_nb.records import Program

BASE = Program(code="x = 1\n")


class Fake:
    """Attempts that sleep a random while; applying one appends its number to ``applied``."""

    def __init__(self, seed: int, *, counts: bool = True, slow: float = 0.004) -> None:
        self.rng = random.Random(seed)
        self.applied: list[int] = []
        self.seen: dict[int, tuple[int, ...]] = {}  # attempt -> what was applied at sampling
        self.counts, self.slow = counts, slow
        self.cancelled: list[int] = []

    def scheduler(self, *, agents: int, first: int = 0, ordered: bool = True, **kw: object):
        args: dict = dict(evaluations=None, deadline=None, max_attempts=None, control=None)
        args.update(kw)
        return Scheduler(
            agents=agents,
            first=first,
            ordered=ordered,
            halted=lambda: False,
            sample=self.sample,
            begin=self.begin,
            attempt=self.attempt,
            apply=self.apply,
            **args,
        )

    def sample(self, n: int, slot: int) -> Ticket:
        self.seen[n] = tuple(self.applied)
        return Ticket(n=n, slot=slot, parent=BASE, inspirations=[], memory="")

    def begin(self, t: Ticket) -> Outcome:
        return Outcome(
            n=t.n, agent=t.slot, parent=t.parent, inspirations=[], response=None, started=0.0
        )

    async def attempt(self, t: Ticket, out: Outcome) -> None:
        try:
            await asyncio.sleep(self.rng.random() * self.slow)
        except asyncio.CancelledError:
            self.cancelled.append(t.n)
            raise

    def apply(self, out: Outcome) -> bool:
        self.applied.append(out.n)
        return self.counts


@pytest.mark.parametrize("seed", range(5))
async def test_ordered_attempts_see_exactly_the_attempts_agents_before(seed: int) -> None:
    f = Fake(seed)
    s = f.scheduler(agents=4, first=10, max_attempts=40)
    await s.run()
    assert f.applied == list(range(10, 50))  # in attempt order, whatever the timing
    for n, seen in f.seen.items():
        assert seen == tuple(range(10, max(10, n - 4 + 1))), n
    assert s.end == 50


async def test_the_budget_is_cut_exactly_and_the_surplus_discarded() -> None:
    f = Fake(1, slow=0.01)
    s = f.scheduler(agents=6, evaluations=9)
    await s.run()
    assert f.applied == list(range(9))
    assert s.seq.full and s.seq.cut == 9 and s.end == 9
    assert s.seq.evaluations == 9
    # every attempt started after the cut's was thrown away, never applied
    assert s.seq.discarded == s.started - 9 and set(f.cancelled) <= set(range(9, s.started))


async def test_attempts_that_do_not_count_go_on_until_the_attempt_cap() -> None:
    f = Fake(2, counts=False)
    s = f.scheduler(agents=3, evaluations=5, max_attempts=4 * 5 + 3)
    await s.run()
    assert f.applied == list(range(23)) and s.seq.evaluations == 0 and not s.seq.full


async def test_unordered_applies_each_result_as_it_lands() -> None:
    f = Fake(3)
    s = f.scheduler(agents=4, ordered=False, evaluations=12)
    await s.run()
    assert len(f.applied) == 12 and s.seq.evaluations == 12 and s.seq.cut is None


async def test_a_deadline_stops_new_attempts() -> None:
    f = Fake(4, slow=0.02)
    s = f.scheduler(agents=2, deadline=time.monotonic() + 0.1)
    t0 = time.monotonic()
    await s.run()
    assert time.monotonic() - t0 < 1.0
    assert f.applied == list(range(len(f.applied))) and 2 <= len(f.applied) < 40


async def test_a_stopped_control_starts_nothing() -> None:
    from aster_nb.control import Control

    c = Control()
    c.stop()
    f = Fake(5)
    s = f.scheduler(agents=3, control=c, evaluations=10)
    await s.run()
    assert f.applied == [] and s.end == 0
