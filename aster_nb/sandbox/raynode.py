"""One Ray node's sandbox: the body of the actor that :mod:`aster_nb.sandbox.raypool` places
on each node, holding a warm sandbox server there.

A :class:`NodeSandbox` is made by Ray on the node it was placed on (with the resources of
``slots`` evaluations reserved for it), writes the task folder it was shipped into a
private directory, and starts a :class:`~aster_nb.sandbox.client.SandboxClient` on it: the
same server, launcher and per-evaluation confinement as on the driver's machine, so a
node's isolation is what that node allows (:meth:`NodeSandbox.start` reports it). It keeps
no cache (the driver's :class:`~aster_nb.sandbox.cache.Cached` does) and retries nothing
across nodes (the driver does); a server that dies under an evaluation is restarted here
and the evaluation run again once, as locally.

**Devices.** Ray gives the actor the GPUs of all its slots; each evaluation gets its share
of them in ``CUDA_VISIBLE_DEVICES`` (set in the evaluation's process only, see
:data:`~aster_nb.sandbox.protocol.DEVICE_VARIABLES`) and gives it back when it ends. An
evaluation that asked for no GPU gets ``CUDA_VISIBLE_DEVICES=""``: it sees no device.

Why the module imports no Ray: it is importable (and testable) without Ray installed;
Ray is looked up lazily, only inside the actor.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..task import Limits
from .cache import Evaluation
from .client import SandboxClient
from .rayshape import unpack_task
from .raywatch import stream_reports

__all__ = ["NodeSandbox", "NodeSpec", "gpu_tokens"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSpec:
    """What every node's sandbox is built from (sent once to each actor).

    Attributes:
        files: the task folder, relative path to contents (see
            :func:`aster_nb.sandbox.rayshape.task_files`).
        evaluator: the evaluator's path relative to the task folder.
        limits: default limits of one evaluation.
        preload: modules the server imports once.
        network: whether evaluations may reach the network.
        env: names of variables passed through to evaluations.
        isolate: see :class:`~aster_nb.sandbox.local.LocalExecutor`.
        gpus: GPUs one evaluation gets (0, a fraction up to 1, or whole GPUs).
    """

    files: Mapping[str, bytes]
    evaluator: str
    limits: Limits
    preload: tuple[str, ...] = ()
    network: bool = False
    env: tuple[str, ...] = ()
    isolate: bool | str | None = None
    gpus: float = 0.0


def gpu_tokens(ids: Sequence[str], per_evaluation: float) -> list[str]:
    """The device ids an actor hands out, one token per share: a GPU shared by
    ``1 / per_evaluation`` evaluations appears that many times (Ray's fractional GPUs),
    the GPUs in turn, so evaluations spread over them before they share one."""
    if per_evaluation <= 0:
        return []
    share = max(1, math.floor(1 / per_evaluation + 1e-9)) if per_evaluation < 1 else 1
    return [i for _ in range(share) for i in ids]


class NodeSandbox:
    """A warm sandbox server on this node, for ``slots`` evaluations at once.

    Made by Ray (``ray.remote(NodeSandbox).options(...).remote(spec=..., slots=...)``);
    its methods are coroutines, so one actor serves all its slots on one event loop.
    """

    def __init__(self, *, spec: NodeSpec, slots: int) -> None:
        self.spec = spec
        self.slots = slots
        self.root = unpack_task(spec.files)
        self.client = SandboxClient(
            evaluator=self.root / spec.evaluator,
            limits=spec.limits,
            preload=spec.preload,
            concurrency=slots,
            isolate=spec.isolate,
            network=spec.network,
            env=spec.env,
        )
        self._free: list[str] = []
        self._returned = asyncio.Condition()
        self._watching: set[str] = set()  # keys of watched evaluations running
        self._stopping: set[str] = set()  # of those, the ones the driver stopped

    async def start(self) -> dict[str, Any]:
        """Start the server; what the driver needs to know about this node.

        Returns:
            ``node_id``, ``host``, ``pid`` (of this actor), ``gpu_ids`` (what Ray gave
            it), ``server_info`` (the server's hello), ``stats`` and ``isolation_warning``.
        """
        import ray  # only ever runs inside a Ray actor

        ctx = ray.get_runtime_context()
        ids = [str(i) for i in ctx.get_accelerator_ids().get("GPU", [])]
        self._free = gpu_tokens(ids, self.spec.gpus)
        await self.client.start()
        return {
            "node_id": ctx.get_node_id(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "gpu_ids": ids,
            "server_info": self.client.server_info,
            "stats": self.client.stats,
            "isolation_warning": self.client.isolation_warning,
        }

    async def evaluate(
        self, code: str, limits: Limits, seed: int | None = None
    ) -> tuple[Evaluation, dict[str, Any]]:
        """Evaluate ``code`` on this node's server with this evaluation's share of the GPUs
        (and ``seed`` for the evaluator).

        Returns:
            The evaluation and this node's counters after it (server deaths, reruns,
            lost, restarts), so the driver's stats need no extra call.
        """
        evaluation = await self._run(code, limits, seed, None)
        return evaluation, self._counters()

    async def evaluate_watched(
        self,
        code: str,
        limits: Limits,
        seed: int | None = None,
        decide: Callable[[int, dict[str, float]], bool] | None = None,
        key: str = "",
    ) -> AsyncIterator[tuple[Any, ...]]:
        """:meth:`evaluate` that streams the evaluation's reports (a Ray generator):
        ``("report", step, values)`` as they come, then ``("done", evaluation, counters)``.

        ``decide(step, values)`` (a picklable rule from the driver) stops the evaluation at
        the report it says so, here, with no round trip; without one the driver's
        :meth:`stop` of ``key`` does, at the next report.
        """
        self._watching.add(key)
        try:
            async for item in stream_reports(
                lambda listen: self._run(code, limits, seed, listen),
                decide,
                lambda: key in self._stopping,
            ):
                yield (*item, self._counters()) if item[0] == "done" else item
        finally:
            self._watching.discard(key)
            self._stopping.discard(key)

    async def stop(self, key: str) -> None:
        """Stop the watched evaluation ``key`` at its next report (one that has ended is
        not remembered)."""
        if key in self._watching:
            self._stopping.add(key)

    async def _run(
        self,
        code: str,
        limits: Limits,
        seed: int | None,
        listener: Callable[[int, dict[str, float]], bool] | None,
    ) -> Evaluation:
        devices = await self._take()
        try:
            env = {"CUDA_VISIBLE_DEVICES": ",".join(dict.fromkeys(devices))}
            return await self.client.evaluate(code, limits, env=env, seed=seed, listener=listener)
        finally:
            await self._give(devices)

    def _counters(self) -> dict[str, Any]:
        stats = self.client.stats
        return {k: stats[k] for k in ("server_deaths", "reruns", "lost", "restarts")}

    async def close(self) -> None:
        """Stop the server and remove the task folder's copy."""
        try:
            await self.client.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- this node's GPU shares ----------------------------------------------------------

    def _wanted(self) -> int:
        """Tokens one evaluation takes: one share of a GPU, or whole GPUs."""
        gpus = self.spec.gpus
        return 0 if gpus <= 0 else (1 if gpus < 1 else int(gpus))

    async def _take(self) -> list[str]:
        wanted = self._wanted()
        async with self._returned:
            # the driver sends at most `slots` evaluations, so this waits only if a
            # caller bypassed it; never hand out a device twice all the same
            await self._returned.wait_for(lambda: len(self._free) >= wanted)
            taken, self._free = self._free[:wanted], self._free[wanted:]
        return taken

    async def _give(self, devices: list[str]) -> None:
        if devices:
            async with self._returned:
                self._free.extend(devices)
                self._returned.notify_all()
