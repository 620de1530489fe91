"""The Ray executor's backend: a warm sandbox on every node that fits, evaluations sent to
the least busy one, and a node that dies under an evaluation is not the program's fault.

:class:`RayPool` is what :class:`~aster_nb.sandbox.cache.Cached` wraps in
:class:`~aster_nb.sandbox.cluster.RayExecutor`. On every live node where at least one
evaluation fits (by the task's ``[resources]``, :class:`~aster_nb.resources.Resources`), it
places one :class:`~aster_nb.sandbox.raynode.NodeSandbox` actor, pinned to that node,
that reserves the resources of as many evaluations as fit there (its *slots*) for the
run. Why actors sized in slots rather than one Ray task per evaluation: a task would need
a Ray worker process per evaluation slot in addition to the sandbox server, pays Ray's
scheduling on every evaluation, and a task that waits on an actor gives its CPUs back to
Ray while it waits (so more evaluations than CPUs would run). One actor per node keeps one
warm server per node, as locally, and the driver counts the slots.

**Faults.** When an actor or its node dies under an evaluation (Ray raises
``RayActorError``, ``ActorUnavailableError``, ``NodeDiedError``, ...), the actor is dropped
and killed, the evaluation is sent once more to another actor (on another node where there
is one), and a second death gives ``lost``: never cached, never the program's ``error``.
Dropped actors are replaced, and nodes that joined are found, by a refresh that runs in the
background (after a death, and every :attr:`RayPool.refresh_every` seconds).

**Workers as actors** (:mod:`aster_nb.actors`) use this as it is: the pool runs inside
one async actor (:class:`~aster_nb.actors.service.EvalService`) that the driver and every
worker actor submit to, so the slots are counted in one place and one cache serves the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from typing import Any

from ..errors import UserInputError
from ..program import EvalResult, Status
from ..resources import Resources
from ..task import Limits
from .cache import Evaluation
from .rayconnect import RaySession, connect, disconnect
from .raycounts import NodeActor, PoolCounts
from .raynode import NodeSandbox, NodeSpec
from .rayshape import actor_options, needs_text, slots_on
from .raywatch import on_node

__all__ = ["RayPool"]


class RayPool:
    """Evaluations on the sandboxes of a Ray cluster's nodes, uncached.

    Args:
        spec: what each node's sandbox is built from.
        resources: what one evaluation needs of a node.
        concurrency: most evaluations at once over the cluster; default: all that fit.
        address: the cluster (see :func:`~aster_nb.sandbox.rayconnect.connect`).
    """

    start_timeout: float = 120.0  # an actor's worker process, then its sandbox server
    retry_wait: float = 60.0  # how long an evaluation waits for a node when none is left
    refresh_every: float = 30.0  # how often to look for nodes that joined

    def __init__(
        self,
        *,
        spec: NodeSpec,
        resources: Resources,
        concurrency: int | None = None,
        address: str | None = None,
    ) -> None:
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ValueError(f"concurrency must be a positive int or None, got {concurrency!r}")
        if address is not None and (not isinstance(address, str) or not address):
            raise ValueError(f"address must be a Ray address (host:port) or None, got {address!r}")
        self.spec, self.resources, self.concurrency = spec, resources, concurrency
        self.address = address
        self.session: RaySession | None = None
        self.limits: Limits = spec.limits
        self.actors: list[NodeActor] = []
        self.unplaced: dict[str, str] = {}  # node id -> why no sandbox runs there
        self._ray: Any = None
        self._spec_ref: Any = None
        self._starting: asyncio.Future[None] | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._refresh: asyncio.Task[None] | None = None
        self._refreshed = -math.inf
        self.counts = PoolCounts()
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to Ray and place a sandbox on every node that fits (otherwise the first
        evaluation does).

        Raises:
            UserInputError: Ray is not installed or the address has no cluster.
            RuntimeError: no node can run an evaluation, or no sandbox started.
        """
        if self._closed:
            raise RuntimeError("executor closed")
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        import ray

        self.session = connect(self.address)
        self._ray = ray
        self._spec_ref = ray.put(self.spec)  # shipped once, whatever the number of nodes
        self._refresh_soon()
        assert self._refresh is not None
        await self._refresh
        if not self.actors:
            raise RuntimeError(self._why_none())

    async def close(self) -> None:
        """Stop every node's sandbox and leave Ray as it was found; evaluations in flight
        end as ``error``."""
        self._closed = True
        try:
            await self._close_actors()
        finally:
            if self.session is not None:
                disconnect(self.session)

    async def _close_actors(self) -> None:
        self._wake(all_=True)
        # a placement still running is cancelled (it kills the actors it made), and so
        # is a start waiting on it
        if self._refresh is not None:
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
        actors, self.actors = self.actors, []
        closing = [asyncio.wait_for(a.handle.close.remote(), 10) for a in actors]
        await asyncio.gather(*closing, return_exceptions=True)
        for a in actors:
            self._kill(a)

    # -- evaluation ----------------------------------------------------------------------

    async def evaluate(self, code: str, limits: Limits, **extra: Any) -> Evaluation:
        """Evaluate ``code`` on the least busy node; another node once if it dies under it.
        ``seed=`` goes with it; a ``listener`` gets the reports streamed back and may stop
        it early (:mod:`~aster_nb.sandbox.raywatch`)."""
        try:
            await self.start()
        except (RuntimeError, UserInputError) as e:
            return _unkept(Status.ERROR, str(e))
        from ray.exceptions import RayError, RayTaskError

        first: str | None = None
        avoid: set[str] = set()
        for _ in range(2):
            actor = await self._acquire(avoid)
            if actor is None:
                if self._closed:
                    return _unkept(Status.ERROR, "executor closed")
                why = f"no Ray node could take it within {self.retry_wait:g} s"
                return self._lost(f"{first}; then {why}" if first else why)
            try:
                evaluation, counters = await on_node(actor.handle, self._ray, code, limits, extra)
            except RayTaskError as e:  # our code failed on the node: no death, no retry
                return _unkept(Status.ERROR, f"the sandbox on node {actor.node_id[:8]} failed: {e}")
            except RayError as e:
                self._drop(actor, e)
                if self._closed:
                    return _unkept(Status.ERROR, "executor closed")
                died = f"node {actor.node_id[:8]} died under it ({type(e).__name__})"
                if first is not None:
                    return self._lost(f"{first}; then {died}")
                first = died
                avoid.add(actor.node_id)
                self.counts.retries += 1
                continue
            finally:
                self._release(actor)
            self.counts.answered(actor, counters)
            return evaluation
        raise AssertionError("unreachable")

    def _lost(self, why: str) -> Evaluation:
        self.counts.lost += 1
        return _unkept(Status.LOST, f"the evaluation was lost, not the program's fault: {why}")

    # -- slots ---------------------------------------------------------------------------

    async def _acquire(self, avoid: set[str]) -> NodeActor | None:
        """A slot on the least busy actor (on a node not in ``avoid`` where possible); None
        when the pool closed or no actor came within :attr:`retry_wait` seconds."""
        deadline: float | None = None
        while not self._closed:
            if time.monotonic() - self._refreshed > self.refresh_every:
                self._refresh_soon()
            free = [a for a in self.actors if a.busy < a.slots]
            if free:
                elsewhere = [a for a in free if a.node_id not in avoid] or free
                actor = max(elsewhere, key=lambda a: (a.slots - a.busy) / a.slots)
                actor.busy += 1
                return actor
            timeout = None
            if not self.actors:  # busy actors free up; no actors may never come back
                self._refresh_soon()
                deadline = deadline or time.monotonic() + self.retry_wait
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    return None
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # the slot this caller was woken for goes to the next
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        return None

    def _release(self, actor: NodeActor) -> None:
        actor.busy -= 1
        self._wake()

    def _wake(self, *, all_: bool = False) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not all_:
                    return

    # -- the actors ----------------------------------------------------------------------

    def _refresh_soon(self) -> None:
        if self._ray is not None and (self._refresh is None or self._refresh.done()):
            self._refreshed = time.monotonic()
            self._refresh = asyncio.ensure_future(self._place())

    async def _place(self) -> None:
        """A sandbox on every live node that fits and has none yet."""
        self._refreshed = time.monotonic()
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        have = {a.node_id for a in self.actors}
        room = None if self.concurrency is None else self.concurrency - self.slots
        remote = ray.remote(NodeSandbox)
        new: list[NodeActor] = []
        for node in sorted(ray.nodes(), key=lambda n: n["NodeID"]):
            node_id = node["NodeID"]
            if not node.get("Alive") or node_id in have:
                continue
            slots = slots_on(node.get("Resources", {}), self.resources)
            if room is not None:
                slots = min(slots, room)
            if slots < 1:
                self.unplaced[node_id] = "no room for one evaluation"
                continue
            if room is not None:
                room -= slots
            handle = remote.options(
                **actor_options(self.resources, slots),
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                max_restarts=0,
            ).remote(spec=self._spec_ref, slots=slots)
            new.append(NodeActor(handle, node_id, slots))
        try:
            started = await asyncio.gather(*(self._ready(a) for a in new))
        except BaseException:  # cancelled by close(): no actor may outlive the pool
            for actor in new:
                self._kill(actor)
            raise
        for actor, ok in zip(new, started, strict=True):
            if ok and not self._closed:
                self.actors.append(actor)
                self.unplaced.pop(actor.node_id, None)
            else:
                self._kill(actor)
        self._wake(all_=True)

    async def _ready(self, actor: NodeActor) -> bool:
        try:
            actor.info = await asyncio.wait_for(actor.handle.start.remote(), self.start_timeout)
        except Exception as e:  # any failure leaves that node out, with the reason kept
            why = f"its sandbox did not start within {self.start_timeout:g} s"
            self.unplaced[actor.node_id] = why if isinstance(e, TimeoutError) else str(e)
            return False
        return True

    def _drop(self, actor: NodeActor, error: BaseException) -> None:
        """``actor`` died (or became unreachable): out of the pool, killed, replaced."""
        if actor in self.actors:
            self.actors.remove(actor)
            self.counts.retire(actor)
            first = (str(error).strip().splitlines() or [""])[0][:200]
            self.unplaced[actor.node_id] = f"its sandbox died: {type(error).__name__}: {first}"
            self._kill(actor)
            self._wake(all_=True)
            self._refresh_soon()

    def _kill(self, actor: NodeActor) -> None:
        with contextlib.suppress(Exception):  # it may be gone already
            self._ray.kill(actor.handle, no_restart=True)

    def _why_none(self) -> str:
        reasons = "; ".join(f"node {n[:8]}: {why}" for n, why in self.unplaced.items())
        return (
            f"no Ray node can run an evaluation of this task (one needs "
            f"{needs_text(self.resources)}): {reasons or 'the cluster has no live node'}"
        )

    # -- introspection -------------------------------------------------------------------

    @property
    def slots(self) -> int:
        """Evaluations the live actors run at once."""
        return sum(a.slots for a in self.actors)

    @property
    def stats(self) -> dict[str, Any]:
        """Counters over the cluster (see :class:`~aster_nb.sandbox.cluster.RayExecutor`)."""
        return self.counts.stats(self.actors, self.unplaced)


def _unkept(status: Status, error: str) -> Evaluation:
    """A result about this attempt, not the program: never cached."""
    return Evaluation(EvalResult(status, error=error), False)
