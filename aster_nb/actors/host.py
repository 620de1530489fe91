"""A worker in a Ray actor: the body of the process a :class:`~aster_nb.actors.remote.RemoteWorker`
starts on some node of the cluster.

The actor holds a real :class:`~aster_nb.agents.worker.Worker` (its agents, archive and
memories) built from what the driver shipped: the task folder, the worker's settings, the
model's name, and a snapshot of the run's store (:meth:`Store.snapshot
<aster_nb.store.Store.snapshot>`) that it restores itself from, exactly as a reopened run
does. Everything it writes goes to its copy of the store and into a journal
(:mod:`aster_nb.actors.journal`) that the driver takes with :meth:`WorkerHost.sync`, a
call that also brings the driver's side down: the worker's live goal, pause and stop, and
what the rest of the run has spent (so the spending caps hold over all workers).

Its evaluations go to the run's evaluation service (:mod:`aster_nb.actors.service`), its
model calls straight from here: the client's CPU, the prompts, the edits and the archive
are this process's, which is what moving a worker off the driver buys.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..agents.context import Budget, Context
from ..agents.worker import Worker
from ..control import Control
from ..events import EventBus
from ..llm import Watched, aclose, make_model
from ..records import Goal, Handoff, Program
from ..sandbox.rayshape import unpack_task
from ..task import Task
from .journal import Journal, JournalSpend, JournalStore, JournalWatch
from .service import ServiceClient

__all__ = ["HostSpec", "Side", "WorkerHost"]

#: the driver's side of a sync: the live goal, ``(paused, stopping, reason)``, and what the
#: rest of the run has spent (dollars, tokens)
Side = tuple[Any, tuple[bool, bool, str], tuple[float, int]]


@dataclass(frozen=True, slots=True, kw_only=True)
class HostSpec:
    """What a worker actor is built from.

    Attributes:
        files: the task folder (:func:`~aster_nb.sandbox.rayshape.task_files`).
        worker: the :class:`~aster_nb.agents.worker.Worker`'s keyword arguments but its
            model and collaborators (``name``, ``agents``, ``archive``, ``seed``, ...).
        model: the agents' model name (``offline`` or a Claude model: the actor reads
            ``ANTHROPIC_*`` from the environment Ray gives it).
        model_seed: the model's seed.
        latency: the offline model's simulated latency, seconds.
        max_usd: the run's cap in dollars, if any.
        max_tokens: the run's cap in tokens, if any.
    """

    files: Mapping[str, bytes]
    worker: Mapping[str, Any] = field(default_factory=dict)
    model: str = "offline"
    model_seed: int = 0
    latency: float = 0.0
    max_usd: float | None = None
    max_tokens: int | None = None


class WorkerHost:
    """A worker restored from the run's store, run and synced from the driver.

    Args:
        spec: what it is built from.
        snapshot: the run's store as the driver had it (it restores from this).
        service: the run's evaluation service actor.
    """

    def __init__(self, *, spec: HostSpec, snapshot: bytes, service: Any) -> None:
        self.spec = spec
        self.root = unpack_task(spec.files)
        task = Task.load(self.root)
        self.journal = Journal()
        self.store = JournalStore.replica(snapshot, self.journal)
        self.spend = JournalSpend(self.journal, max_usd=spec.max_usd, max_tokens=spec.max_tokens)
        self.watch = JournalWatch(journal=self.journal)
        self.model = Watched(
            make_model(spec.model, seed=spec.model_seed, latency=spec.latency, spend=self.spend),
            self.watch,
        )
        bus = EventBus()
        bus.subscribe(lambda e: self.journal.append(("event", e)))
        self.control = Control()
        ctx = Context(
            task=task,
            store=self.store,
            executor=ServiceClient(service, limits=task.limits),
            bus=bus,
            control=self.control,
            spend=self.spend,
        )
        self.worker = Worker(context=ctx, model=self.model, **spec.worker)
        self.worker.restore()
        self._goal: str | Goal | None = None

    async def run(
        self, goal: str, base: Program, budget: Budget, round: int, side: Side
    ) -> tuple[Handoff, int, str | None]:
        """The worker's round (see :meth:`Worker.run <aster_nb.agents.worker.Worker.run>`):
        its handoff, its attempt count after it and why it stopped, if a cap stopped it.

        ``side`` is the driver's side as :meth:`sync` takes it, applied before the first
        attempt: the switch as the driver has it now (a stop of the round before lifted,
        a pause kept), not as the last sync left it.
        """
        self._goal = None
        self._take(*side)
        handoff = await self.worker.run(
            goal, base, budget, round=round, goal_source=lambda: self._goal or goal
        )
        return handoff, self.worker.attempts_total, self.worker.stop_reason

    def sync(
        self, goal: str | Goal | None, control: tuple[bool, bool, str], others: tuple[float, int]
    ) -> tuple[list[Any], str]:
        """Take the driver's side (the live goal, ``(paused, stopping, reason)`` and what
        the rest of the run has spent in dollars and tokens); give the journal since the
        last call, and the reason this worker stopped the run (a spending cap), if it did."""
        self._take(goal, control, others)
        return self.journal.take(), self.worker.stop_reason or ""

    def _take(
        self, goal: str | Goal | None, control: tuple[bool, bool, str], others: tuple[float, int]
    ) -> None:
        if goal is not None:
            self._goal = goal
        paused, stopping, reason = control
        c = self.control  # the driver's switch, mirrored (a next round lifts a stop)
        if stopping or self.worker.stop_reason:  # a cap this worker reached stays reached
            c.stop(reason or self.worker.stop_reason or "")
        else:
            c.stopping = False
            if paused:
                c.pause()
            else:
                c.resume()
        # the caps are the run's: what this worker may still spend is what others left
        usd, tokens = others
        if self.spec.max_usd is not None:
            self.spend.max_usd = max(0.0, self.spec.max_usd - usd)
        if self.spec.max_tokens is not None:
            self.spend.max_tokens = max(0, self.spec.max_tokens - tokens)

    def info(self) -> dict[str, Any]:
        """Where it runs: ``pid``, ``host``, ``node_id``."""
        import ray

        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "node_id": ray.get_runtime_context().get_node_id(),
        }

    def archive_ids(self) -> list[str]:
        """Ids of the archive's elites, by cell (tests compare the driver's copy with it)."""
        a = self.worker.archive
        return [] if a is None else sorted(p.id for p in a.elites())

    async def close(self) -> None:
        await aclose(self.model)
        self.store.close()
        shutil.rmtree(self.root, ignore_errors=True)
