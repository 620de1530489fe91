"""A worker that runs in a Ray actor, as the driver's planner sees it.

:class:`RemoteWorker` is a :class:`~aster_nb.agents.worker.Worker` to everyone on the
driver (planners run it, ``Run.workers`` lists it, the dashboard reads its archive), but
its agents run in a :class:`~aster_nb.actors.host.WorkerHost` actor somewhere on the
cluster. A round is one call to the actor, and while it runs the driver syncs with it
every :attr:`RemoteWorker.sync_every` seconds: it sends the live goal, the pause/stop
switch and what the rest of the run spent, and takes the worker's journal, which it
applies to the run's store and bus (:func:`~aster_nb.actors.journal.apply`) and to its
copy of the worker's archive, replayed in the same order with the same seed (the same
archive as the actor's, for the map; see ``tests/test_ray_workers.py``).

**What differs from a worker in the driver.** A steer, a pause or a stop reaches the
agents at the next sync (by default within 50 ms), not before the very next attempt; the
events reach the bus in batches, in order, each after the store has what it reports.

**Faults.** When the actor (or its node) dies, the round goes on in a new actor restored
from the store, exactly as a reopened run restores a worker: what the driver applied
counts against the round's budget and its best can be the round's best; what the dead
actor had not yet synced (at most :attr:`sync_every` seconds of work) is evaluated again
if its agents propose it again. After :attr:`restarts` deaths in one round the round
fails with :class:`WorkerLost`. A driver killed mid-run is the resume case: the actors
die with it (Ray kills the actors of a driver that is gone) and ``Run.open`` restores.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import Any

from ..agents.context import Budget
from ..agents.worker import Worker
from ..llm import FailureWatch
from ..records import Goal, Handoff, Program
from ..sandbox.rayshape import task_files
from .host import HostSpec, WorkerHost
from .journal import Entry, apply
from .service import ServiceExecutor

__all__ = ["RemoteWorker", "WorkerLost"]

#: the environment a worker actor gets from the driver (a Claude model's key and address)
PASSED_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN")


class WorkerLost(RuntimeError):
    """A worker's actor died more often in one round than :attr:`RemoteWorker.restarts`."""


class RemoteWorker(Worker):
    """A worker whose agents run in a Ray actor (see the module).

    Takes :class:`~aster_nb.agents.worker.Worker`'s arguments (``model`` is the driver's,
    used for nothing but the shape of the stand-in), and:

    Args:
        service: the run's executor for workers as actors (it holds the evaluation
            service the actor submits to, and stops the actor when it closes).
        model_name: the model the actor's agents call, by name (see
            :func:`~aster_nb.llm.make_model`).
        model_seed: that model's seed.
        latency: the offline model's simulated latency, seconds.
        max_usd: the run's cap in dollars, if any (held over all workers: see
            :meth:`~aster_nb.actors.host.WorkerHost.sync`).
        max_tokens: the run's cap in tokens, if any.
        watch: the run's model failure watch (every worker's failures count there).
        **kwargs: :class:`Worker`'s arguments.
    """

    sync_every: float = 0.05  # seconds between syncs with the actor
    restarts: int = 2  # actor deaths one round survives
    start_timeout: float = 120.0  # an actor's process, its imports and its restore

    def __init__(
        self,
        *,
        service: ServiceExecutor,
        model_name: str = "offline",
        model_seed: int = 0,
        latency: float = 0.0,
        max_usd: float | None = None,
        max_tokens: int | None = None,
        watch: FailureWatch | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(kwargs.get("archive", "cluster"), str):
            raise TypeError(
                "a RemoteWorker's archive must be a name (cluster, grid, greedy): the actor "
                f"makes its own; got {type(kwargs['archive']).__name__}"
            )
        super().__init__(**kwargs)
        if not isinstance(service, ServiceExecutor):
            raise TypeError(
                f"service must be the run's ServiceExecutor, got {type(service).__name__}"
            )
        self.service = service
        self.run_watch = watch
        self._spec = dict(
            model=model_name,
            model_seed=model_seed,
            latency=latency,
            max_usd=max_usd,
            max_tokens=max_tokens,
        )
        self._settings = {
            k: kwargs[k]
            for k in (
                "agents", "archive", "seed", "explore", "inspirations", "ordered",
                "model_timeout", "agent", "tool_turns",
            )
            if k in kwargs
        }  # fmt: skip
        self.actor: Any = None
        self.host: dict[str, Any] = {}  # where the actor runs: pid, host, node_id
        self.actor_deaths = 0
        self.synced = 0  # journal entries applied
        self._spent = (0.0, 0)  # dollars and tokens this worker's actors booked
        self._recent: dict[str, Program] = {}
        service.on_close.append(self.close)

    # -- the round -----------------------------------------------------------------------

    async def run(
        self,
        goal: str,
        base: Program,
        budget: Budget,
        *,
        round: int = 0,
        goal_source: Callable[[], str | Goal] | None = None,
    ) -> Handoff:
        """:meth:`Worker.run`, in the actor; a dead actor's round goes on in a new one."""
        from ray.exceptions import ActorUnschedulableError, RayActorError, RayTaskError

        source = goal_source or (lambda: goal)
        deaths, avoid = 0, set()
        while True:
            try:
                actor = await self._ready(frozenset(avoid))
                return await self._round(actor, goal, base, budget, round, source)
            except RayTaskError:
                raise  # the worker's own error (or one it met, e.g. the service's): not a death
            except (RayActorError, ActorUnschedulableError) as e:  # its death, its node's too
                if getattr(e, "actor_init_failed", False):
                    raise RuntimeError(
                        f"worker {self.name}'s actor could not be built on node "
                        f"{self.host.get('node_id', '?')[:8]}: {_first_line(e)}"
                    ) from e
                deaths += 1
                self.actor_deaths += 1
                if self.host.get("node_id"):
                    avoid.add(self.host["node_id"])
                self._forget()
                if deaths > self.restarts:
                    raise WorkerLost(
                        f"worker {self.name}: its actor died {deaths} times in round {round}; "
                        f"last: {type(e).__name__}: {_first_line(e)}"
                    ) from e

    async def _round(
        self,
        actor: Any,
        goal: str,
        base: Program,
        budget: Budget,
        round: int,
        source: Callable[[], str | Goal],
    ) -> Handoff:
        import ray

        ref = actor.run.remote(goal, base, budget, round, self._driver_side(source))
        running = asyncio.ensure_future(_result(ref))
        try:
            while True:
                finished = running.done()
                entries, reason = await actor.sync.remote(*self._driver_side(source))
                self._apply(entries)
                if reason and self.control is not None and not self.control.stopping:
                    self.control.stop(reason)  # a spending cap met in the actor stops the run
                if finished:
                    break
                await asyncio.wait({running}, timeout=self.sync_every)
            handoff, self.attempts_total, self.stop_reason = running.result()
        except BaseException:
            if not running.done():
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
                running.cancel()
            # what it did since the last sync is only in its copy: the next round's actor
            # restores from the store, so archive, memories and store agree again
            self._forget()
            raise
        return handoff

    def _driver_side(self, source: Callable[[], str | Goal]) -> tuple[Any, ...]:
        c = self.control
        control = (False, False, "") if c is None else (c.paused, c.stopping, c.reason)
        spend = self.context.spend
        others = (0.0, 0)
        if spend is not None:
            others = (max(0.0, spend.usd - self._spent[0]), max(0, spend.tokens - self._spent[1]))
        return source(), control, others

    def _apply(self, entries: list[Entry]) -> None:
        usd, tokens = self._spent
        for e in entries:
            if e[0] == "spend":
                usd, tokens = usd + e[2], tokens + e[1].total
        self._spent = (usd, tokens)
        try:
            self.synced += apply(
                entries,
                store=self.store,
                bus=self.bus,
                spend=self.context.spend,
                watch=self.run_watch,
                on_write=self._mirror,
            )
        finally:
            self._recent.clear()

    def _mirror(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Keep the driver's copy of the archive as the actor's: the same adds, in order."""
        if name == "add_program":
            p: Program = args[0]
            self._recent[p.id] = p
        elif name == "add_archive_entry" and kwargs.get("worker") == self.name:
            pid = kwargs["program_id"]
            q = self._recent.get(pid) or self.store.get(pid)
            self.known.add(pid)
            if q is None or not q.ok:
                return
            if q.descriptor is None:
                assert q.result is not None
                q = q.evaluated(q.result, self.descriptor_of(q.code, q.result))
            self.archive_for(len(q.descriptor or ())).add(q)

    # -- the actor -----------------------------------------------------------------------

    async def _ready(self, avoid: frozenset[str] = frozenset()) -> Any:
        if self.actor is not None:
            return self.actor
        import ray

        spec = HostSpec(
            files=task_files(self.task.root),
            worker={"name": self.name, "planner": self.planner, **self._settings},
            **self._spec,
        )
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        place = self.service.next_node(avoid)
        self.host = {"node_id": place.node_id}  # known before it answers, should it die
        handle = (
            ray.remote(WorkerHost)
            .options(
                num_cpus=0,  # agents wait on the model: they take no evaluation's core
                max_concurrency=1000,
                scheduling_strategy=place,
                runtime_env={"env_vars": env} if env else None,
            )
            .remote(spec=spec, snapshot=self.store.snapshot(), service=self.service.handle)
        )
        self.actor = handle
        try:
            self.host = await asyncio.wait_for(handle.info.remote(), self.start_timeout)
        except TimeoutError as e:
            self._forget()
            raise RuntimeError(
                f"worker {self.name}'s actor did not start within {self.start_timeout:g} s"
            ) from e
        return handle

    def _forget(self) -> None:
        if self.actor is not None:
            import ray

            with contextlib.suppress(Exception):  # already dead
                ray.kill(self.actor, no_restart=True)
        self.actor = None
        self._spent = (0.0, 0)  # a new actor's ledger starts at zero

    async def close(self) -> None:
        """Stop the actor (the run's executor calls this when it closes)."""
        if self.actor is None:
            return
        with contextlib.suppress(Exception):  # a dead actor has nothing to close
            await asyncio.wait_for(self.actor.close.remote(), 10)
        self._forget()


async def _result(ref: Any) -> tuple[Handoff, int, str | None]:
    return await ref


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]
