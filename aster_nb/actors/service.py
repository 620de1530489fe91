"""The run's evaluations when its workers run in other processes: one service actor.

With workers as Ray actors, every process of the run evaluates programs: each worker
actor its agents' children, the driver its merges and the initial program. They must share
one :class:`~aster_nb.sandbox.cluster.RayExecutor`: its node sandboxes reserve the
cluster's resources slot by slot (a second executor would find none left), and its cache
answers identical code once for the whole run, as the local executor does. So the
executor lives in one async actor, :class:`EvalService`, and every process submits to it
through a :class:`ServiceClient`. The service speaks the node sandboxes' three calls
(:func:`~aster_nb.sandbox.raywatch.on_node`), so reports stream back to a worker and its
early-stop rule travels with the evaluation to the node, as from the driver.

Why not one executor per worker: the slots would be counted in several places and the
cache split. Why not through the driver: every evaluation would cost the driver two
messages, and the driver's CPU is what the worker actors are there to spare.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from ..records import EvalResult
from ..sandbox.cache import Evaluation
from ..sandbox.cluster import RayExecutor
from ..sandbox.connection import Listener
from ..sandbox.rayshape import unpack_task
from ..sandbox.raywatch import on_node, stream_reports
from ..task import Limits, Task

__all__ = ["EvalService", "ServiceClient"]


class EvalService:
    """The run's one Ray executor, in an actor (made by :class:`ServiceClient.start`).

    Args:
        files: the task folder (:func:`~aster_nb.sandbox.rayshape.task_files`).
        concurrency: most evaluations at once over the cluster; default: all that fit.
        isolate: see :class:`~aster_nb.sandbox.local.LocalExecutor` (tests only).
    """

    def __init__(
        self,
        *,
        files: Mapping[str, bytes],
        concurrency: int | None = None,
        isolate: bool | str | None = None,
    ) -> None:
        self.root = unpack_task(files)
        self.executor = RayExecutor(
            task=Task.load(self.root), concurrency=concurrency, isolate=isolate
        )
        self._watching: set[str] = set()
        self._stopping: set[str] = set()

    async def start(self) -> dict[str, Any]:
        """Place the node sandboxes; what :meth:`info` says."""
        await self.executor.start()
        return self.info()

    def info(self) -> dict[str, Any]:
        """``stats``, ``server_info``, ``isolation_warning``, ``concurrency`` and
        ``network`` of the executor, and the service's ``pid``."""
        ex = self.executor
        return {
            "pid": os.getpid(),
            "stats": ex.stats,
            "server_info": ex.server_info,
            "isolation_warning": ex.isolation_warning,
            "concurrency": ex.concurrency,
            "network": ex.network,
        }

    async def evaluate(
        self, code: str, limits: Limits | None, seed: int | None = None
    ) -> tuple[Evaluation, dict[str, Any]]:
        result = await self.executor.submit(code, limits=limits, seed=seed)
        return Evaluation(result, cacheable=False), {}  # the cache is here, not the caller's

    async def evaluate_watched(
        self,
        code: str,
        limits: Limits | None,
        seed: int | None = None,
        decide: Callable[[int, dict[str, float]], bool] | None = None,
        key: str = "",
    ) -> AsyncIterator[tuple[Any, ...]]:
        relay = _Relay(decide)

        def start(listen: Listener) -> Any:
            relay.listen = listen
            return self.executor.submit(code, limits=limits, seed=seed, listener=relay)

        self._watching.add(key)
        try:
            async for item in stream_reports(start, decide, lambda: key in self._stopping):
                yield (
                    (item[0], Evaluation(item[1], cacheable=False), {})
                    if item[0] == "done"
                    else item
                )
        finally:
            self._watching.discard(key)
            self._stopping.discard(key)

    async def stop(self, key: str) -> None:
        if key in self._watching:
            self._stopping.add(key)

    async def close(self) -> None:
        try:
            await self.executor.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class _Relay:
    """The listener the service's executor sees: it passes reports on to the stream and
    carries the caller's rule (``decide``) so the executor sends it on to the node."""

    def __init__(self, decide: Callable[[int, dict[str, float]], bool] | None) -> None:
        self.decide = decide
        self.listen: Listener | None = None

    def __call__(self, step: int, values: dict[str, float]) -> bool:
        assert self.listen is not None
        return bool(self.listen(step, values))


class ServiceClient:
    """An executor (``await client.submit(code)``) whose evaluations the run's
    :class:`EvalService` makes; usable in any process of the cluster.

    Args:
        handle: the service actor.
        limits: default limits of one evaluation (the task's).
    """

    def __init__(self, handle: Any, *, limits: Limits) -> None:
        self.handle = handle
        self.limits = limits

    async def submit(
        self,
        code: str,
        *,
        limits: Limits | None = None,
        seed: int | None = None,
        listener: Listener | None = None,
    ) -> EvalResult:
        """The service's result for ``code``: cached there, shared with every worker."""
        import ray

        extra: dict[str, Any] = {"seed": seed}
        if listener is not None:
            extra["listener"] = listener
        evaluation, _ = await on_node(self.handle, ray, code, limits or self.limits, extra)
        return evaluation.result


async def wait_ready(handle: Any, timeout: float) -> dict[str, Any]:
    """The service's :meth:`EvalService.start`, or a clear error when it took too long."""
    try:
        return await asyncio.wait_for(handle.start.remote(), timeout)
    except TimeoutError as e:
        raise RuntimeError(
            f"the evaluation service did not place its node sandboxes within {timeout:g} s"
        ) from e


class ServiceExecutor(ServiceClient):
    """The driver's executor when workers run as actors: it starts the run's
    :class:`EvalService`, keeps its counters fresh for the status line, and at close stops
    what the run started on the cluster (the worker actors first, then the service).

    Args:
        task: the task whose programs are evaluated.
        address: the cluster (see :func:`~aster_nb.sandbox.rayconnect.connect`).
        concurrency: most evaluations at once over the cluster; default: all that fit.
        isolate: see :class:`~aster_nb.sandbox.local.LocalExecutor` (tests only).
    """

    start_timeout: float = 180.0  # the service's worker process, then the node sandboxes
    refresh_every: float = 0.5  # seconds between reads of the service's counters

    def __init__(
        self,
        *,
        task: Task,
        address: str | None = None,
        concurrency: int | None = None,
        isolate: bool | str | None = None,
    ) -> None:
        super().__init__(None, limits=task.limits)
        self.task, self.address = task, address
        self.concurrency_wanted, self.isolate = concurrency, isolate
        self.on_close: list[Callable[[], Any]] = []  # the worker actors' stops
        self._info: dict[str, Any] = {"stats": {}, "server_info": {}, "concurrency": 0}
        self._session: Any = None
        self._refresh: asyncio.Task[None] | None = None
        self._closed = False
        self._placed = 0

    def next_node(self, avoid: frozenset[str] = frozenset()) -> Any:
        """Where the next worker actor goes: the live nodes not in ``avoid`` (where an
        actor just died: Ray may not know yet that the node is gone) in turn.

        Why a hard node affinity: Ray's ``SPREAD`` and a soft affinity both left actors
        that reserve nothing on one node here. A node that dies before the actor starts is
        one more actor death; the worker avoids it next time.
        """
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        nodes = [n for n in alive if n not in avoid] or alive
        node = nodes[self._placed % len(nodes)]
        self._placed += 1
        return NodeAffinitySchedulingStrategy(node_id=node, soft=False)

    async def __aenter__(self) -> ServiceExecutor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect to Ray and start the service (it places the node sandboxes).

        Raises:
            UserInputError: Ray is missing or the address has no cluster.
            RuntimeError: the service did not start in time.
        """
        if self.handle is not None:
            return
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from ..sandbox.rayconnect import connect
        from ..sandbox.rayshape import task_files

        self._session = connect(self.address)
        # beside the driver: it dies only with the driver's own node, which ends the run
        # anyway (a service on another node would take every worker with it)
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.handle = (
            ray.remote(EvalService)
            .options(num_cpus=0, max_concurrency=100_000, scheduling_strategy=here)
            .remote(
                files=task_files(self.task.root),
                concurrency=self.concurrency_wanted,
                isolate=self.isolate,
            )
        )
        self._info = await wait_ready(self.handle, self.start_timeout)
        self._refresh = asyncio.ensure_future(self._refreshing())

    async def _refreshing(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_every)
            await self.refresh()

    async def refresh(self) -> None:
        """Read the service's counters now (a :class:`~aster_nb.run.Run` does at each
        round's end, so ``stats`` after ``await run.step()`` count the whole round: the
        background reads alone can be up to :attr:`refresh_every` seconds behind it)."""
        if self.handle is None or self._closed:
            return
        with contextlib.suppress(Exception):  # a missed read keeps the last counters
            self._info = await self.handle.info.remote()

    async def close(self) -> None:
        """Stop the worker actors, then the service and its node sandboxes; leave Ray as
        it was found."""
        if self._closed:
            return
        self._closed = True
        if self._refresh is not None:
            self._refresh.cancel()
        for stop in self.on_close:
            with contextlib.suppress(Exception):  # one actor's end must not keep the rest
                result = stop()
                if asyncio.iscoroutine(result):
                    await result
        if self.handle is not None:
            import ray

            from ..sandbox.rayconnect import disconnect

            with contextlib.suppress(Exception):  # a dead service has nothing left to close
                await asyncio.wait_for(self.handle.close.remote(), 30)
            ray.kill(self.handle)
            if self._session is not None:
                disconnect(self._session)

    @property
    def stats(self) -> dict[str, Any]:
        """The service executor's counters (:attr:`RayExecutor.stats
        <aster_nb.sandbox.cluster.RayExecutor.stats>`), at most :attr:`refresh_every`
        seconds old, and read afresh at each round's end (:meth:`refresh`)."""
        return dict(self._info.get("stats", {}))

    @property
    def server_info(self) -> dict[str, Any]:
        return dict(self._info.get("server_info", {}))

    @property
    def isolation_warning(self) -> str | None:
        return self._info.get("isolation_warning")

    @property
    def concurrency(self) -> int:
        return int(self._info.get("concurrency", 0))

    @property
    def network(self) -> bool:
        return self.task.network

    @property
    def pid(self) -> int | None:
        """The service actor's process id (once started)."""
        return self._info.get("pid")
