"""What planners and workers are given: the run's shared collaborators and a budget.

A :class:`Context` holds what every agent of a run shares (the task, the store, the
executor, the event bus, the pause/stop switch and the spending ledger), so a planner, its
workers and the run that builds them pass one value instead of six arguments each. A
:class:`Budget` says how much one worker may spend on one goal in one round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..control import Control
from ..events import EventBus
from ..records import EvalResult

if TYPE_CHECKING:
    from ..llm.spend import Spend
    from ..store import Store
    from ..task import Task


class Executor(Protocol):
    """Where evaluations run: ``await executor.submit(code)`` returns the sandbox's result."""

    async def submit(self, code: str) -> EvalResult: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """The collaborators every planner and worker of a run shares.

    Attributes:
        task: the task being improved.
        store: the run's store; every program, attempt, handoff and goal goes there.
        executor: where evaluations run (``await executor.submit(code)``).
        bus: where events go (a private bus if omitted).
        control: the pause/stop switch a :class:`~aster_nb.run.Run` drives, if any.
        spend: the run's spending ledger, if any (the models report to it; kept here so
            an agent can read what the run has spent).
    """

    task: Task
    store: Store
    executor: Executor
    bus: EventBus = field(default_factory=EventBus)
    control: Control | None = None
    spend: Spend | None = None


@dataclass(frozen=True, slots=True)
class Budget:
    """How much a worker may spend on one goal in one round.

    Attributes:
        evaluations: new programs to evaluate (edits that fail to apply and duplicates do
            not count; attempts are capped at ``4 * evaluations + agents`` all the same).
            Exactly this many are stored: attempts still running when it is reached are
            discarded (see :mod:`~aster_nb.agents.scheduler`), and the handoff counts them.
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


def make_context(
    context: Context | None,
    *,
    task: Task | None,
    store: Store | None,
    executor: Executor | None,
    bus: EventBus | None,
    control: Control | None,
    who: str,
) -> Context:
    """``context``, or one made of the separate arguments a standalone agent was given.

    Raises:
        TypeError: both a context and separate collaborators, or neither all of ``task``,
            ``store`` and ``executor``.
    """
    loose = {"task": task, "store": store, "executor": executor, "bus": bus, "control": control}
    given = [k for k, v in loose.items() if v is not None]
    if context is not None:
        if given:
            raise TypeError(f"{who} takes context= or {', '.join(given)}=, not both")
        return context
    missing = [k for k in ("task", "store", "executor") if loose[k] is None]
    if missing:
        raise TypeError(f"{who} needs context= (or task=, store= and executor=); missing {missing}")
    assert task is not None and store is not None and executor is not None
    return Context(
        task=task, store=store, executor=executor, bus=bus or EventBus(), control=control
    )
