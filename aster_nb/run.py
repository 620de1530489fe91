"""A run: planners, workers, a store, an executor and an event bus you can drive from cells.

``await run.step()`` runs one round; ``run.start()`` runs rounds as a background task on the
running loop, so notebook cells stay free; ``pause()``, ``resume()``, ``await stop()``;
``run.steer(worker, goal)`` (or ``run.goals[worker] = goal``; :attr:`Run.goals` covers every
worker under every planner) changes a goal at that worker's next attempt.
``Run.open(path)`` rebuilds everything from the store and continues with the next round.

Before a run spends anything, ``Run.create`` checks that the sandbox imported the evaluator
and that the initial program evaluates without crashing (:func:`aster_nb.task.check_start`);
``Run.open`` checks the store file without writing to it (:func:`aster_nb.store.check_run_store`)
and the evaluator. Either raises a one-line :class:`~aster_nb.errors.UserInputError`
(``TaskError``, ``StoreError``) and leaves no process behind, nor the store file of a create.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .agents.planner import Planner
from .agents.worker import Worker
from .archive import Archive
from .control import Control
from .events import Event, EventBus, ProgramEvaluated, RoundFinished, RunStateChanged
from .llm import FailureWatch, ModelsFailing, Spend
from .records import EvalResult, Program, RoundResult, code_hash
from .runconfig import Models, RunConfig, RunStatus, build
from .rungoals import RunGoals
from .sandbox.local import LocalExecutor
from .store import Store, StoreError, check_run_store
from .task import Task, TaskError, check_evaluator, check_start

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Run", "RunConfig", "RunGoals", "RunStatus", "build", "settle"]

log = logging.getLogger(__name__)

# every run made in this interpreter, so a notebook harness can settle them (see settle())
_LIVE: weakref.WeakSet[Run] = weakref.WeakSet()


def _remove_store(path: Path) -> None:
    """Delete a store file made by a create that failed (with SQLite's side files)."""
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        f.unlink(missing_ok=True)


class Run:
    """A research run. Make one with :meth:`create` or :meth:`open`, inside a running loop."""

    def __init__(
        self,
        *,
        cfg: RunConfig,
        task: Task,
        store: Store,
        executor: LocalExecutor,
        planner: Planner,
        bus: EventBus,
        control: Control,
    ) -> None:
        self.cfg, self.task, self.store, self.executor = cfg, task, store, executor
        self.planner, self.bus, self.control = planner, bus, control
        self._state = "idle"
        # The initial program's first evaluation, checked by create (None for an opened run):
        # ``invalid`` is accepted for the agents to repair.
        self.initial_result: EvalResult | None = None
        self.spend: Spend | None = None  # the ledger every model of the run reports to
        self.watch = FailureWatch(limit=None)  # model failures in a row (set by _assemble)
        self._models: Models | None = None
        self.error: BaseException | None = None
        self._runner: asyncio.Task[None] | None = None
        self._evaluations = store.count()
        self._busy_seconds = 0.0
        self._round_started: float | None = None
        self.rounds_done = planner.round_no
        self.best_round: int | None = None  # the last round that improved the current best
        self._evaluations_this_session = 0  # for the rate: evaluations since this process began
        bus.subscribe(self._on_event)
        _LIVE.add(self)

    # -- making and opening --------------------------------------------------------------

    @classmethod
    async def create(
        cls, task: str | Path | Task, *, path: str | Path | None = None, **config: Any
    ) -> Run:
        """A new run of ``task`` stored at ``path`` (a new file in ``runs/`` by default).

        ``config`` takes the fields of :class:`RunConfig` (``planners``, ``workers``,
        ``agents``, ``archive``, ``seed``, ``evaluations_per_round``, ...). The old name
        ``evaluations`` still works, with a ``DeprecationWarning``.

        The initial program is evaluated once before this returns; its result is
        :attr:`initial_result` (``invalid`` is accepted: the first agents repair it).

        Raises:
            FileExistsError: ``path`` exists.
            TaskError: the task does not load, the sandbox cannot import the evaluator or a
                ``preload`` module, or the initial program raises, times out, runs out of
                memory or returns the wrong number of features (see
                :func:`aster_nb.task.check_start`).
            UserInputError: a model name, key or API address is wrong.

        A create that fails leaves no sandbox process and no store file behind.
        """
        t = task if isinstance(task, Task) else Task.load(task)
        cfg = RunConfig(task=str(t.root), **RunConfig.renamed(config, warn=True))
        if path is None:
            path = (
                Path("runs")
                / f"{t.name}-{time.strftime('%Y%m%d-%H%M%S')}-{id(cfg) & 0xFFFF:04x}.sqlite"
            )
        path = Path(path)
        if path.exists():
            raise FileExistsError(
                f"{path} exists: open it with Run.open({str(path)!r}) to continue it"
            )
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
            run = await cls._assemble(cfg, t, store, models, undo)
            # Evaluated through the executor's cache: round 0 reuses the result.
            run.initial_result = await check_start(t, run.executor)
            run.planner.best = Program(code=t.initial_code)
            if t.surface_areas:
                run.planner.assign_goals()  # else the planner's model proposes goals in round 0
            undo.pop_all()
        return run

    @classmethod
    async def open(cls, path: str | Path, *, concurrency: int | None = None) -> Run:
        """Reopen a stored run: archives, memories, goals and the current best are rebuilt.

        Raises:
            StoreError: ``path`` is missing, not a run store, damaged, or written by another
                aster_nb version; the file is left as it was (checked read-only first).
            TaskError: the run's task no longer loads, or the sandbox cannot import its
                evaluator (it may have changed since).
            UserInputError: a model name, key or API address is wrong.

        An open that fails leaves no sandbox process behind and the store closed.
        """
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
            run = await cls._assemble(cfg, task, store, models, undo)
            check_evaluator(task, run.executor)  # the evaluator may have changed since
            run._restore()
            undo.pop_all()
        return run

    @classmethod
    async def _assemble(
        cls,
        cfg: RunConfig,
        task: Task,
        store: Store,
        models: Models,
        undo: contextlib.AsyncExitStack,
    ) -> Run:
        executor = LocalExecutor.from_task(task, concurrency=cfg.concurrency)
        undo.push_async_callback(executor.close)
        await executor.start()
        bus, control = EventBus(), Control()
        # Too many failed model calls in a row: start no new attempt (the round ends and
        # the run fails, see _round). No stop reason: that is for stops that last (a
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
        )
        run = cls(
            cfg=cfg,
            task=task,
            store=store,
            executor=executor,
            planner=planner,
            bus=bus,
            control=control,
        )
        run.spend, run.watch, run._models = models.spend, models.watch, models
        return run

    def _restore(self) -> None:
        for w in self.planner.workers().values():
            w.restore()
        planners = [
            self.planner,
            *(c for c in self.planner.children.values() if isinstance(c, Planner)),
        ]
        current = self.store.current_goals()
        for p in planners:
            for child in p.children:
                if child in current:
                    text, by, pinned = current[child]
                    p.goals.load(child, text, set_by=by, pinned=pinned)
        for p in planners[1:]:
            p.goal = self.planner.goals.get(p.name, "")
        last = self.store.last_round(self.planner.name)
        best = self.store.get(last["best_id"]) if last is not None else None
        if best is None:
            best = self.store.get(code_hash(self.task.initial_code)) or Program(
                code=self.task.initial_code
            )
        self.planner.best = best
        self.planner.round_no = self.rounds_done = 0 if last is None else last["round"] + 1
        rounds = self.store.rounds()
        gains = rounds[(rounds["planner"] == self.planner.name) & (rounds["improved"] == 1)]
        self.best_round = int(gains["round"].max()) if len(gains) else None
        if not self.planner.goals and self.task.surface_areas:
            self.planner.assign_goals()

    # -- driving -------------------------------------------------------------------------

    async def step(self) -> RoundResult:
        """Run one round and return what it did."""
        if self._runner is not None and not self._runner.done():
            raise RuntimeError(
                "rounds are running in the background (run.start()); pause, stop or await it"
            )
        return await self._round(final_state="idle")

    def start(self, rounds: int | None = None) -> asyncio.Task[None]:
        """Run ``rounds`` rounds (forever if ``None``) as a background task; returns it.

        Calling it again while it runs returns the same task: re-running a cell never makes
        a second runner.
        """
        if self._runner is not None and not self._runner.done():
            return self._runner
        if rounds is not None and rounds < 1:
            raise ValueError(f"rounds must be >= 1 or None, got {rounds}")
        self._reset_control()
        self._runner = asyncio.get_running_loop().create_task(
            self._loop(rounds), name="aster_nb-run"
        )
        self._runner.add_done_callback(self._runner_done)
        return self._runner

    async def _loop(self, rounds: int | None) -> None:
        i = 0
        while (rounds is None or i < rounds) and not self.control.stopping:
            await self._round(final_state="running")
            i += 1
        self._set_state("stopped" if self.control.stopping else "finished", self.control.reason)

    async def _round(self, *, final_state: str) -> RoundResult:
        self._reset_control()
        if self._state not in ("paused",):
            self._set_state("running")
        t0 = time.monotonic()
        try:
            result = await self.planner.round(self.cfg.budget)
            self.rounds_done = self.planner.round_no
            if self.watch.tripped:
                # The round ended early and what it did is stored; the run failed all the same.
                raise ModelsFailing(self.watch.reason)
        except BaseException as e:
            self._fail(e)
            raise
        finally:
            self._busy_seconds += time.monotonic() - t0
        self.rounds_done = self.planner.round_no
        if self.control.stopping and self.control.reason:
            self._set_state("stopped", self.control.reason)  # e.g. the spending cap was reached
        elif final_state == "idle" and self._state == "running":
            self._set_state("idle")
        return result

    @property
    def running(self) -> bool:
        """Whether rounds are running in the background (:meth:`start`)."""
        return self._runner is not None and not self._runner.done()

    async def wait(self) -> None:
        """Wait for the background rounds to end; re-raises the exception that failed them."""
        if self._runner is not None:
            await asyncio.shield(self._runner)

    def pause(self) -> None:
        """Start no new attempt until :meth:`resume`; attempts under way finish and are kept."""
        self.control.pause()
        self._set_state("paused")

    def resume(self) -> None:
        self.control.resume()
        running = self._runner is not None and not self._runner.done()
        self._set_state("running" if running else "idle")

    async def stop(self) -> None:
        """Start no new attempt; wait for the ones under way and the round's end."""
        self.control.stop()
        if self._runner is not None and not self._runner.done():
            with contextlib.suppress(Exception):  # a failure is already in status and events
                await self._runner
        if self._state != "failed":
            self._set_state("stopped")

    def steer(self, worker: str, goal: str, *, pin: bool = True) -> None:
        """Give ``worker`` a new goal from its next attempt on, recorded as the researcher's.

        ``worker`` may also name a planner under the root (its goal is split over its own
        workers at its next round).

        Raises:
            KeyError: no worker or planner has that name.
        """
        self.goals.owner(worker).goals.set(worker, goal, by="researcher", pinned=pin)

    @property
    def goals(self) -> RunGoals:
        """Every worker's goal (and every planner's under the root), whichever planner owns it.

        ``run.goals["p1.w0"] = text`` is :meth:`steer` (pinned); ``run.goals.info(name)`` is
        the full :class:`~aster_nb.records.Goal` record.
        """
        return RunGoals(self.planner)

    async def close(self) -> None:
        """Stop, then release the sandbox server and the store."""
        if self._runner is not None and not self._runner.done():
            await self.stop()
        async with contextlib.AsyncExitStack() as stack:  # each is released if another fails
            stack.callback(self.store.close)
            if self._models is not None:
                stack.push_async_callback(self._models.aclose)
            await self.executor.close()

    async def __aenter__(self) -> Run:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- reading -------------------------------------------------------------------------

    @property
    def status(self) -> RunStatus:
        best = self.best
        return RunStatus(
            state=self._state,
            round=self.rounds_done,
            evaluations=self._evaluations,
            attempts_per_s=self._evaluations_this_session / self._busy_seconds
            if self._busy_seconds
            else 0.0,
            best_score=best.score if best is not None and best.ok else None,
            error=None if self.error is None else f"{type(self.error).__name__}: {self.error}",
            reason=self.control.reason,
            usd=self.spend.usd if self.spend is not None else 0.0,
            tokens=self.spend.tokens if self.spend is not None else 0,
            model_failures=self.watch.failures,
        )

    @property
    def best(self) -> Program | None:
        """The current best program."""
        return self.planner.best

    @property
    def workers(self) -> dict[str, Worker]:
        return self.planner.workers()

    @property
    def archives(self) -> dict[str, Archive | None]:
        """Each worker's archive."""
        return {n: w.archive for n, w in self.workers.items()}

    def history(self) -> pd.DataFrame:
        """Every program, in evaluation order (see :meth:`Store.history`)."""
        return self.store.history()

    def handoffs(self) -> pd.DataFrame:
        return self.store.handoffs()

    # -- internals -----------------------------------------------------------------------

    def _on_event(self, e: Event) -> None:
        if isinstance(e, ProgramEvaluated):
            self._evaluations += 1
            self._evaluations_this_session += 1
        elif isinstance(e, RoundFinished) and e.planner == self.planner.name and e.improved:
            self.best_round = e.round

    def _reset_control(self) -> None:
        if self.watch.tripped:
            # Asking for another round after the model failures ended one tries again: the
            # cause (a network, a gateway, a key) may have been fixed meanwhile.
            self.watch.reset()
        if self.control.stopping and not self.control.reason:  # a spending cap stays reached
            self.control.stopping = False
            self.control.resume()

    def _set_state(self, state: str, reason: str = "") -> None:
        if state != self._state:
            self._state = state
            self.bus.emit(RunStateChanged(state=state, reason=reason))

    def _fail(self, e: BaseException) -> None:
        if isinstance(e, asyncio.CancelledError):
            self._set_state("stopped", "cancelled")
            return
        self.error = e
        log.error("aster_nb run failed: %s: %s", type(e).__name__, e)
        self._set_state("failed", f"{type(e).__name__}: {e}")

    def _runner_done(self, task: asyncio.Task[None]) -> None:
        # The exception stays on the task (and in status/events); fetch it so asyncio does
        # not also log "exception was never retrieved".
        if not task.cancelled():
            task.exception()


async def settle() -> list[str]:
    """Stop the background rounds of every run in this interpreter and return the errors of
    the runs that failed (``"<store>: <error>"``), so a notebook harness can check that
    nothing failed out of sight after the last cell."""
    errors = []
    for run in list(_LIVE):
        if run.running:
            await run.stop()
        if run.error is not None:
            errors.append(f"{run.store.path}: {type(run.error).__name__}: {run.error}")
    return errors
