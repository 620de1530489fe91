"""Making a run: a new one (:meth:`Run.create <aster_nb.run.Run.create>`) or a stored one
reopened (:meth:`Run.open <aster_nb.run.Run.open>`).

Why apart from :mod:`aster_nb.run`: making a run is the part that can fail on the
researcher's input (a model name, a key, a task, a store file) and must then undo what it
started, in order: the models, the store file of a create, the sandbox server. Each step
registers its undo on one :class:`contextlib.AsyncExitStack`, so a failed create leaves no
process and no file behind, and a failed open leaves the store as it was. Driving and
reading a run that exists is :class:`~aster_nb.run.Run`'s job.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .actors.service import ServiceExecutor  # imports no Ray until it starts
from .agents.planner import Planner
from .control import Control
from .events import EventBus
from .records import Program, code_hash
from .runconfig import Models, RunConfig, build
from .runfork import task_of
from .sandbox.cluster import RayExecutor  # imports no Ray until it starts
from .sandbox.local import LocalExecutor
from .store import Store, StoreError, check_run_store
from .task import Task, TaskError, check_evaluator, check_start

if TYPE_CHECKING:
    from .run import Run


async def create(
    cls: type[Run],
    task: str | Path | Task,
    path: str | Path | None,
    *,
    meta: dict[str, Any] | None = None,
    **config: Any,
) -> Run:
    """A new run of ``task`` stored at ``path``; see :meth:`Run.create <aster_nb.run.Run.create>`.

    ``meta`` is stored in the new store's meta table beside the configuration (a fork's
    link to its parent, see :mod:`aster_nb.runfork`).
    """
    t = task if isinstance(task, Task) else Task.load(task)
    cfg = RunConfig(task=str(t.root), **config)  # Run.create renamed old names
    if path is None:
        path = (
            Path("runs")
            / f"{t.name}-{time.strftime('%Y%m%d-%H%M%S')}-{id(cfg) & 0xFFFF:04x}.sqlite"
        )
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: open it with Run.open({str(path)!r}) to continue it")
    # Whatever fails below undoes what was started before it (models, store file,
    # sandbox server): a failed create leaves no process and no file behind.
    async with contextlib.AsyncExitStack() as undo:
        # The models first: a typo'd name, a missing key or an unreachable API is
        # reported before a store or a sandbox server exists.
        models = await Models.ready(cfg, undo)
        store = Store(path)
        undo.callback(_remove_store, path)  # after the close below (last in, first out)
        undo.callback(store.close)
        store.set_meta("run", asdict(cfg))
        for key, value in (meta or {}).items():
            store.set_meta(key, value)
        run = await _assemble(cls, cfg, t, store, models, undo)
        # Evaluated through the executor's cache: round 0 reuses the result.
        run.initial_result = await check_start(t, run.executor)
        run.planner.best = Program(code=t.initial_code)
        if t.surface_areas:
            run.planner.assign_goals()  # else the planner's model proposes goals in round 0
        undo.pop_all()
    return run


async def open_stored(cls: type[Run], path: str | Path, concurrency: int | None) -> Run:
    """The run stored at ``path``, rebuilt; see :meth:`Run.open <aster_nb.run.Run.open>`."""
    path = Path(path)
    # read-only: a file that is no run stays as it was; a store written before the
    # per-round budget had its name keeps working
    raw = RunConfig.renamed(check_run_store(path), warn=False)
    unknown = sorted(set(raw) - {f.name for f in fields(RunConfig)})
    if unknown:
        raise StoreError(
            f"{path} was written by another aster_nb version: unknown run settings "
            f"{unknown}; expected a run made by this version"
        )
    if concurrency is not None:
        raw["concurrency"] = concurrency
    cfg = RunConfig(**raw)
    try:
        task = Task.load(cfg.task)
    except TaskError as e:
        raise TaskError(f"{path}: cannot load the run's task: {e}") from e
    async with contextlib.AsyncExitStack() as undo:
        # The models first: a missing key is reported before the store is opened for
        # writing or a sandbox server exists.
        models = await Models.ready(cfg, undo)
        store = Store(path)
        undo.callback(store.close)
        task = task_of(task, store)  # a fork starts from its parent's program
        run = await _assemble(cls, cfg, task, store, models, undo)
        check_evaluator(task, run.executor)  # the evaluator may have changed since
        restore(run)
        undo.pop_all()
    return run


async def _assemble(
    cls: type[Run],
    cfg: RunConfig,
    task: Task,
    store: Store,
    models: Models,
    undo: contextlib.AsyncExitStack,
) -> Run:
    """The sandbox server, the bus, the switch and the planner tree around ``store``."""
    executor: LocalExecutor | RayExecutor | ServiceExecutor
    if cfg.worker_actors:
        executor = ServiceExecutor(task=task, concurrency=cfg.concurrency, address=cfg.ray_address)
    elif cfg.executor == "ray":
        executor = RayExecutor.from_task(task, concurrency=cfg.concurrency, address=cfg.ray_address)
    else:
        executor = LocalExecutor.from_task(task, concurrency=cfg.concurrency)
    undo.push_async_callback(executor.close)
    await executor.start()
    bus, control = EventBus(), Control()
    # Too many failed model calls in a row: start no new attempt (the round ends and
    # the run fails, see Run._round). No stop reason: that is for stops that last (a
    # spending cap), and the next step or start tries the model again.
    models.watch.on_trip = lambda _reason: control.stop()
    planner = build(
        cfg,
        task=task,
        executor=executor,
        store=store,
        bus=bus,
        control=control,
        model=models.agents,
        planner_model=models.planners,
        spend=models.spend,
        watch=models.watch,
    )
    return cls(
        cfg=cfg,
        task=task,
        store=store,
        executor=executor,
        planner=planner,
        bus=bus,
        control=control,
        models=models,
    )


def restore(run: Run) -> None:
    """Rebuild ``run``'s workers, goals, current best and round count from its store."""
    for w in run.planner.workers().values():
        w.restore()
    planners = [
        run.planner,
        *(c for c in run.planner.children.values() if isinstance(c, Planner)),
    ]
    current = run.store.current_goals()
    for p in planners:
        for child in p.children:
            if child in current:
                text, by, pinned, areas, areas_by = current[child]
                p.goals.load(child, text, set_by=by, pinned=pinned, areas=areas, areas_by=areas_by)
    for p in planners[1:]:
        p.goal = run.planner.goals.get(p.name, "")
        if p.name in run.planner.goals:
            g = run.planner.goals.info(p.name)
            p.goal_areas = g.areas if g.areas_by != "default" else None
    last = run.store.last_round(run.planner.name)
    best = run.store.get(last["best_id"]) if last is not None else None
    if best is None:
        best = run.store.get(code_hash(run.task.initial_code)) or Program(
            code=run.task.initial_code
        )
    run.planner.best = best
    run.planner.round_no = run.rounds_done = 0 if last is None else last["round"] + 1
    rounds = run.store.rounds()
    gains = rounds[(rounds["planner"] == run.planner.name) & (rounds["improved"] == 1)]
    run.best_round = int(gains["round"].max()) if len(gains) else None
    if not run.planner.goals and run.task.surface_areas:
        run.planner.assign_goals()


def _remove_store(path: Path) -> None:
    """Delete a store file made by a create that failed (with SQLite's side files)."""
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        f.unlink(missing_ok=True)
