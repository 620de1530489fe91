"""Typed events and a small synchronous bus.

Every event is emitted after the store has committed what it reports, so a subscriber
(a progress line, a widget) never shows a program that a crash could lose.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import Handoff, Program

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all events; ``at`` is Unix time."""

    at: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True, slots=True)
class ProgramEvaluated(Event):
    """A new program was evaluated and stored (any status)."""

    program: Program
    worker: str
    n: int
    improved: bool  # became a cell's elite


@dataclass(frozen=True, slots=True)
class AttemptFailed(Event):
    """An attempt produced no new program: the edit failed, the model failed, or a duplicate."""

    worker: str
    n: int
    agent: int
    outcome: str
    reason: str


@dataclass(frozen=True, slots=True)
class BestImproved(Event):
    """A worker's best program improved."""

    program: Program
    worker: str
    previous: float | None


@dataclass(frozen=True, slots=True)
class EvaluationProgress(Event):
    """An evaluation in flight reported intermediate values (``report(step, values)``).

    It names the attempt (``worker``, ``n``; ``-1`` for a planner's or a base's
    evaluation) and the seed, not a program: the program is stored, with every value its
    runs reported, when its attempt is applied, and only then do events show it.
    """

    worker: str
    n: int
    seed: int
    step: int
    values: dict[str, float]


@dataclass(frozen=True, slots=True)
class HandoffReceived(Event):
    handoff: Handoff


Subscriber = Callable[[Event], None]


class EventBus:
    """Fan events out to subscribers; a failing subscriber is logged, never fatal."""

    def __init__(self) -> None:
        self._subs: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add ``fn``; returns a function that removes it."""
        self._subs.append(fn)
        return lambda: self._subs.remove(fn) if fn in self._subs else None

    def emit(self, event: Event) -> None:
        for fn in list(self._subs):
            try:
                fn(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", fn, type(event).__name__)


@dataclass(frozen=True, slots=True)
class GoalChanged(Event):
    """A worker's goal changed; ``set_by`` is ``planner`` or ``researcher``; ``areas`` are
    the surface areas it resolved to and ``areas_by`` who chose them (see ``Goal``)."""

    planner: str
    worker: str
    goal: str
    set_by: str
    pinned: bool
    areas: tuple[str, ...] = ()
    areas_by: str = "default"


@dataclass(frozen=True, slots=True)
class RoundStarted(Event):
    planner: str
    round: int
    base: Program


@dataclass(frozen=True, slots=True)
class RoundFinished(Event):
    """A planner finished a round; ``best`` is its current best after synthesis."""

    planner: str
    round: int
    best: Program
    improved: bool
    previous: float | None


@dataclass(frozen=True, slots=True)
class RunStateChanged(Event):
    """The run became ``running``, ``paused``, ``stopped``, ``finished`` or ``failed``."""

    state: str
    reason: str = ""
