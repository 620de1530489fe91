"""The Ray executor: evaluations on a Ray cluster's nodes, each in the same sandbox as locally.

:class:`RayExecutor` is a drop-in for :class:`~aster_nb.sandbox.local.LocalExecutor`
behind the executor protocol the workers use (``await executor.submit(code)``), with the
same result cache (:class:`~aster_nb.sandbox.cache.Cached`): identical code is evaluated
once, concurrent identical submissions share one evaluation, and results that say nothing
about the program (``lost``, cancelled) are never kept.

What runs where
---------------
* **The driver** (the notebook or ``python -m aster_nb run``): planners, workers, agents,
  archives, the store (its only writer) and this executor's cache and scheduling.
* **Every node that fits one evaluation** (by the task's ``[resources]``): one actor
  (:class:`~aster_nb.sandbox.raynode.NodeSandbox`) reserving the resources of as many
  evaluations as fit there, holding one warm sandbox server, started from a copy of the
  task folder shipped from the driver. Its isolation is what that node allows: ``stats``
  reports the weakest node's (``isolation``) and each node's (``nodes``), and
  :attr:`RayExecutor.isolation_warning` names the nodes that are not fully isolated.
* **Each evaluation** is sent to the least busy node and forked by that node's server; it
  sees the GPUs Ray gave it in ``CUDA_VISIBLE_DEVICES`` (and none when it asked for none).

Faults: a server that dies under an evaluation is restarted on its node and the
evaluation run again once, as locally; a node or actor that dies under one is dropped and
the evaluation sent once to another node; either second death gives ``lost`` (never
cached, counted as failed, never the program's fault). See
:mod:`aster_nb.sandbox.raypool`.

Requires Ray (``pip install 'aster_nb[ray]'``) on the driver and the nodes, the same Python
and aster_nb on every node. Ray is imported only when the executor starts.
"""

from __future__ import annotations

from typing import Any

from ..task import Limits, Task
from .cache import Cached
from .raynode import NodeSpec
from .raypool import RayPool
from .rayshape import task_files

__all__ = ["RayExecutor"]


class RayExecutor(Cached):
    """Evaluates a task's programs on the nodes of a Ray cluster.

    Use as ``async with RayExecutor(task=task) as ex: result = await ex.submit(code)``, or
    choose it for a run with ``Run.create(task, executor="ray", ray_address=...)`` or
    ``python -m aster_nb run TASK --executor ray --ray-address HOST:PORT``.

    Args:
        task: the task whose programs are evaluated: its folder is copied to every node,
            its ``[resources]`` say what one evaluation needs of a node.
        address: the cluster's address (``ray start --head`` prints it); default
            ``RAY_ADDRESS``, else a private Ray started on this machine for the executor
            and stopped when it closes. A Ray already initialized in this process is used
            as it is (and left running).
        concurrency: most evaluations at once over the cluster; default: as many as fit.
        limits: limits of one evaluation instead of the task's.
        isolate: see :class:`~aster_nb.sandbox.local.LocalExecutor` (tests only).

    Raises:
        TypeError, ValueError: an argument has the wrong type or value.
        UserInputError: the task folder is too large to ship to the nodes.
    """

    #: results kept for identical code; the oldest go first
    cache_size: int = 4096

    def __init__(
        self,
        *,
        task: Task,
        address: str | None = None,
        concurrency: int | None = None,
        limits: Limits | None = None,
        isolate: bool | str | None = None,
    ) -> None:
        if not isinstance(task, Task):
            raise TypeError(f"task must be an aster_nb.task.Task, got {type(task).__name__}")
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(f"limits must be an aster_nb.task.Limits, got {type(limits).__name__}")
        self.task = task
        spec = NodeSpec(
            files=task_files(task.root),
            evaluator=task.evaluator_path.relative_to(task.root).as_posix(),
            limits=task.limits if limits is None else limits,
            preload=task.preload,
            network=task.network,
            env=task.env,
            isolate=isolate,
            gpus=task.resources.gpus,
        )
        self.pool = RayPool(
            spec=spec, resources=task.resources, concurrency=concurrency, address=address
        )
        super().__init__(self.pool, size=self.cache_size, noisy=task.evaluation.noisy)

    @classmethod
    def from_task(
        cls,
        task: Task,
        *,
        concurrency: int | None = None,
        limits: Limits | None = None,
        address: str | None = None,
    ) -> RayExecutor:
        """An executor for ``task`` (the same call as ``LocalExecutor.from_task``)."""
        return cls(task=task, address=address, concurrency=concurrency, limits=limits)

    @property
    def concurrency(self) -> int:
        """Evaluations the nodes run at once (0 before the executor started)."""
        return self.pool.slots

    @property
    def network(self) -> bool:
        return self.task.network

    @property
    def server_info(self) -> dict[str, Any]:
        """A node's sandbox hello (a node whose evaluator or preload failed, if any): what
        :func:`~aster_nb.task.check_evaluator` reads."""
        infos = [a.info.get("server_info", {}) for a in self.pool.actors]
        failed = [i for i in infos if i.get("evaluator_error") or i.get("preload_errors")]
        return dict((failed or infos or [{}])[0])

    @property
    def stats(self) -> dict[str, Any]:
        """Counters over the cluster: what :attr:`LocalExecutor.stats
        <aster_nb.sandbox.local.LocalExecutor.stats>` has (``server_deaths``, ``restarts``
        and the sandbox's facts summed or taken from the nodes; ``isolation`` the weakest
        node's; ``concurrency`` the slots of all nodes; ``reruns`` and ``lost`` count both
        server and node deaths), plus ``actor_deaths`` (node sandboxes that died) and
        ``nodes`` (per node id: host, pid, slots, busy, evaluations, gpu_ids, isolation;
        evaluations count all the node's sandboxes, so they sum to ``evaluations``, and a
        node that ran some and has no sandbox now is kept with 0 slots) and ``unplaced``
        (per node id without a sandbox: why, such as how its sandbox died)."""
        return super().stats

    @property
    def isolation_warning(self) -> str | None:
        """What the nodes' sandboxes do not isolate, each warning once with the hosts it
        applies to; None when every node is fully isolated (or none has started)."""
        hosts: dict[str, list[str]] = {}
        for a in self.pool.actors:
            warning = a.info.get("isolation_warning")
            if warning:
                hosts.setdefault(warning, []).append(str(a.info.get("host", a.node_id[:8])))
        if not hosts:
            return None
        return " ".join(f"[nodes on {', '.join(h)}] {w}" for w, h in hosts.items())
