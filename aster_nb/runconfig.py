"""What a run is made of: its configuration, its models and its planner tree.

:class:`RunConfig` is everything needed to rebuild a run (stored in its file),
:class:`RunStatus` a snapshot of one, :class:`Models` the run's models behind one failure
watch and one spending ledger, and :func:`build` the planner tree of a configuration
(P planners x W workers x K agents, sharing one :class:`~aster_nb.agents.context.Context`).
:mod:`aster_nb.run` drives them.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any

from .agents.context import Budget, Context, Executor
from .agents.planner import Planner
from .agents.worker import Worker
from .control import Control
from .events import EventBus
from .llm import FailureWatch, Model, Spend, Watched, aclose, make_model, preflight
from .store import Store
from .task import Task

#: where a run's evaluations can run (:attr:`RunConfig.executor`)
EXECUTORS = ("local", "ray")


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything needed to rebuild a run; stored in the run's file.

    Attributes:
        task: the task folder (or built-in name).
        planners: planners under the root (1: the root plans for the workers itself).
        workers: workers per planner.
        agents: concurrent agents per worker.
        archive: ``cluster``, ``grid`` or ``greedy``.
        seed: seeds every worker and the model.
        model: model name for the agents (``offline``, the default, needs no key).
        planner_model: model name for planners (defaults to ``model``).
        latency: the offline model's simulated latency, seconds.
        evaluations_per_round: evaluations each worker spends per round (so a round of
            W workers under P planners spends ``P * W`` times this, plus merges); the
            command line's ``--budget`` is the total over all workers and rounds. Called
            ``evaluations`` before: ``Run.create(evaluations=...)`` and stores written
            then still work.
        seconds: wall seconds each worker may spend per round (optional).
        concurrency: parallel evaluations (default: cores).
        merges: merge candidates per planner per round.
        agent: ``edit`` (one reply with SEARCH/REPLACE blocks) or ``tools`` (a tool session).
        max_usd: the run's spending cap in dollars (no new model call starts past it).
        max_tokens: the run's cap in tokens.
        max_model_failures: model calls failing in a row (any model of the run, any
            purpose) that end the run ``failed``; ``None`` never ends it.
        executor: where evaluations run: ``local`` (this machine's sandbox, the default)
            or ``ray`` (the nodes of a Ray cluster, see
            :class:`~aster_nb.sandbox.cluster.RayExecutor`).
        ray_address: the Ray cluster's address for ``executor="ray"``; default
            ``RAY_ADDRESS``, else a private Ray started for the run.
        worker_actors: run each worker (its agents, archive and memories) in a Ray actor
            of its own, spread over the cluster, with ``executor="ray"``; the driver keeps
            the planners and the store (see :mod:`aster_nb.actors`).
    """

    task: str
    planners: int = 1
    workers: int = 2
    agents: int = 4
    archive: str = "cluster"
    seed: int = 0
    model: str = "offline"
    planner_model: str | None = None
    latency: float = 0.0
    evaluations_per_round: int | None = 50
    seconds: float | None = None
    concurrency: int | None = None
    merges: int = 2
    agent: str = "edit"
    max_usd: float | None = None
    max_tokens: int | None = None
    max_model_failures: int | None = 20
    executor: str = "local"
    ray_address: str | None = None
    worker_actors: bool = False

    def __post_init__(self) -> None:
        if self.agent not in ("edit", "tools"):
            raise ValueError(f"agent must be 'edit' or 'tools', got {self.agent!r}")
        for name in ("planners", "workers", "agents"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.evaluations_per_round is None and self.seconds is None:
            raise ValueError("a round needs evaluations and/or seconds per worker; got neither")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.ray_address is not None and self.executor != "ray":
            raise ValueError(
                f"ray_address={self.ray_address!r} needs executor='ray', got {self.executor!r}"
            )
        if self.worker_actors and self.executor != "ray":
            raise ValueError(
                f"worker_actors=True needs executor='ray' (the workers run on Ray), got "
                f"{self.executor!r}"
            )
        if self.max_model_failures is not None and self.max_model_failures < 1:
            raise ValueError(
                f"max_model_failures must be >= 1 or None, got {self.max_model_failures}"
            )

    @property
    def budget(self) -> Budget:
        """What each worker may spend in one round."""
        return Budget(evaluations=self.evaluations_per_round, seconds=self.seconds)

    @staticmethod
    def renamed(config: dict[str, Any], *, warn: bool) -> dict[str, Any]:
        """``config`` with the old name ``evaluations`` as ``evaluations_per_round``.

        Raises:
            TypeError: both names are given.
        """
        if "evaluations" not in config:
            return config
        config = dict(config)
        if "evaluations_per_round" in config:
            raise TypeError(
                "give evaluations_per_round (evaluations each worker spends per round), "
                "not also its old name evaluations"
            )
        if warn:
            warnings.warn(
                "evaluations= is now evaluations_per_round= (evaluations each worker spends "
                "per round, not the run's total)",
                DeprecationWarning,
                stacklevel=3,
            )
        config["evaluations_per_round"] = config.pop("evaluations")
        return config


@dataclass(frozen=True, slots=True)
class RunStatus:
    """A snapshot of a run.

    Attributes:
        state: ``idle``, ``running``, ``paused``, ``stopped``, ``finished`` or ``failed``.
        round: rounds finished.
        evaluations: the run's evaluations (:meth:`Store.evaluations
            <aster_nb.store.Store.evaluations>`: programs stored, the initial one, the
            workers' and the merges, identical code once), over every session.
        attempts_per_s: this session's evaluations per second of running time.
        best_score: the current best's score.
        error: why the run failed, when it did.
        reason: why it stopped by itself (a spending cap), when it did.
        usd: dollars the run's model calls cost, over every session (kept in the store).
        tokens: tokens they used, over every session (``Run.spent()`` has them per model).
        model_failures: model calls that failed in this session (every purpose).
    """

    state: str
    round: int
    evaluations: int
    attempts_per_s: float
    best_score: float | None
    error: str | None = None
    reason: str = ""
    usd: float = 0.0
    tokens: int = 0
    model_failures: int = 0


@dataclass(slots=True)
class Models:
    """A run's models, every call reported to one failure watch and one spending ledger."""

    agents: Model
    planners: Model
    spend: Spend
    watch: FailureWatch

    @classmethod
    async def ready(cls, cfg: RunConfig, undo: contextlib.AsyncExitStack) -> Models:
        """Make the models of ``cfg`` and check them (key, address) before a run starts.

        Raises:
            UserInputError: an unknown model name, a missing key, an unreachable API.
        """
        spend = Spend(max_usd=cfg.max_usd, max_tokens=cfg.max_tokens)
        watch = FailureWatch(limit=cfg.max_model_failures)
        agents: Model = Watched(
            make_model(cfg.model, seed=cfg.seed, latency=cfg.latency, spend=spend), watch
        )
        undo.push_async_callback(aclose, agents)
        planners = agents
        if cfg.planner_model:
            planners = Watched(make_model(cfg.planner_model, seed=cfg.seed, spend=spend), watch)
            undo.push_async_callback(aclose, planners)
        await preflight(agents)
        if planners is not agents:
            await preflight(planners)
        return cls(agents, planners, spend, watch)

    async def aclose(self) -> None:
        await aclose(self.agents)
        if self.planners is not self.agents:
            await aclose(self.planners)


def build(
    cfg: RunConfig,
    *,
    task: Task,
    executor: Executor,
    store: Store,
    bus: EventBus,
    control: Control,
    model: Model | None = None,
    planner_model: Model | None = None,
    spend: Spend | None = None,
    watch: FailureWatch | None = None,
) -> Planner:
    """The planner tree of a configuration: P planners x W workers x K agents."""
    ctx = Context(task=task, store=store, executor=executor, bus=bus, control=control, spend=spend)
    model = model or make_model(cfg.model, seed=cfg.seed, latency=cfg.latency, spend=spend)
    pmodel = planner_model or (
        make_model(cfg.planner_model, seed=cfg.seed, spend=spend) if cfg.planner_model else model
    )

    def workers(prefix: str) -> list[Worker]:
        common = dict(context=ctx, model=model, agents=cfg.agents, archive=cfg.archive)
        if not cfg.worker_actors:
            return [
                Worker(name=f"{prefix}.w{i}", seed=cfg.seed, agent=cfg.agent, **common)
                for i in range(cfg.workers)
            ]
        from .actors import RemoteWorker, ServiceExecutor

        assert isinstance(executor, ServiceExecutor), "worker actors need the service executor"
        return [
            RemoteWorker(
                name=f"{prefix}.w{i}",
                seed=cfg.seed,
                agent=cfg.agent,
                service=executor,
                model_name=cfg.model,
                model_seed=cfg.seed,
                latency=cfg.latency,
                max_usd=cfg.max_usd,
                max_tokens=cfg.max_tokens,
                watch=watch,
                **common,
            )
            for i in range(cfg.workers)
        ]

    def planner(name: str, children: list[Any]) -> Planner:
        return Planner(name=name, context=ctx, model=pmodel, children=children, merges=cfg.merges)

    if cfg.planners == 1:
        return planner("p0", workers("p0"))
    return planner("root", [planner(f"p{j}", workers(f"p{j}")) for j in range(cfg.planners)])
