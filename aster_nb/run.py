"""A run: planners, workers, a store, an executor and an event bus you can drive from cells.

``await run.step()`` runs one round; ``run.start()`` runs rounds as a background task on the
running loop, so notebook cells stay free; ``pause()``, ``resume()``, ``await stop()``;
``run.steer(worker, goal, areas=[...])`` (or ``run.goals[worker] = goal``, keeping the
areas; :attr:`Run.goals` covers every worker under every planner) changes a goal and the
surface areas its agents edit at that worker's next attempt.
``Run.open(path)`` rebuilds everything from the store and continues with the next round.

Before a run spends anything, ``Run.create`` checks that the sandbox imported the evaluator
and that the initial program evaluates without crashing (:func:`aster_nb.task.check_start`);
``Run.open`` checks the store file without writing to it (:func:`aster_nb.store.check_run_store`)
and the evaluator. Either raises a one-line :class:`~aster_nb.errors.UserInputError`
(``TaskError``, ``StoreError``) and leaves no process behind, nor the store file of a create.

This module drives and reads a run; making one (create, open, and undoing either when it
fails) is :mod:`aster_nb.runmake`, its configuration and planner tree
:mod:`aster_nb.runconfig`, its goals :mod:`aster_nb.rungoals`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import runfork, runmake
from .agents.planner import Planner
from .agents.worker import Worker
from .archive import Archive
from .control import Control
from .events import Event, EventBus, HandoffReceived, RoundFinished, RunStateChanged
from .llm import FailureWatch, ModelsFailing, Spend
from .records import EvalResult, Program, RoundResult
from .runconfig import Models, RunConfig, RunStatus, build
from .runfork import ForkOrigin
from .rungoals import RunGoals
from .runspend import RunSpend, Spent
from .store import Store
from .task import Task

if TYPE_CHECKING:
    import pandas as pd

    from .sandbox.cluster import RayExecutor
    from .sandbox.local import LocalExecutor

__all__ = ["Run", "RunConfig", "RunGoals", "RunStatus", "build", "settle"]

log = logging.getLogger(__name__)

# every run made in this interpreter, so a notebook harness can settle them (see settle())
_LIVE: weakref.WeakSet[Run] = weakref.WeakSet()


class Run:
    """A research run. Make one with :meth:`create` or :meth:`open`, inside a running loop."""

    def __init__(
        self,
        *,
        cfg: RunConfig,
        task: Task,
        store: Store,
        executor: LocalExecutor | RayExecutor,
        planner: Planner,
        bus: EventBus,
        control: Control,
        models: Models | None = None,
    ) -> None:
        self.cfg, self.task, self.store, self.executor = cfg, task, store, executor
        self.planner, self.bus, self.control = planner, bus, control
        self._state = "idle"
        # The initial program's first evaluation, checked by create (None for an opened run):
        # ``invalid`` is accepted for the agents to repair.
        self.initial_result: EvalResult | None = None
        # the ledger every model of the run reports to, and their failures in a row
        self.spend: Spend | None = None if models is None else models.spend
        self.watch = FailureWatch(limit=None) if models is None else models.watch
        self._models = models
        self.error: BaseException | None = None
        self._runner: asyncio.Task[None] | None = None
        # the rate's base: the store's evaluations when this session began
        self._evaluations_before = store.evaluations()
        self._busy_seconds = 0.0
        self._round_started: float | None = None
        self.rounds_done = planner.round_no
        self.best_round: int | None = None  # the last round that improved the current best
        self._spent = RunSpend(store, self.spend)  # earlier sessions' spend plus this one's
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
        # renamed here, so the warning names the caller's line
        return await runmake.create(cls, task, path, **RunConfig.renamed(config, warn=True))

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
        return await runmake.open_stored(cls, path, concurrency)

    async def fork(
        self, program_id: str, *, path: str | Path | None = None, **overrides: Any
    ) -> Run:
        """A new run starting from this run's stored program ``program_id``, with the same
        task and settings but for ``overrides`` (any :class:`RunConfig` field but ``task``:
        ``workers=4``, ``evaluations_per_round=20``, ``seed=1``, ...). This run is left
        untouched; the new one has its own store (``path``, default beside this one's)
        whose :attr:`parent` names this run and the program.

        Raises:
            UserInputError: no stored program has that id (``run.history()['id']`` lists
                them), or an override is no setting.
            FileExistsError, TaskError: as :meth:`create`.
        """
        return await runfork.fork(self, program_id, path=path, **overrides)

    @property
    def parent(self) -> ForkOrigin | None:
        """Where a forked run comes from (parent store, program, its code), else ``None``."""
        return runfork.origin(self.store)

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
        refresh = getattr(self.executor, "refresh", None)  # counters read from elsewhere
        if refresh is not None:
            await refresh()
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

    def steer(
        self, worker: str, goal: str, *, areas: Sequence[str] | None = None, pin: bool = True
    ) -> None:
        """Give ``worker`` a new goal from its next attempt on, recorded as the researcher's.

        ``areas`` are the surface areas its agents may edit from then on (the prompt's
        focus); omitted, the worker keeps the areas it has (every area, for a worker that
        never had any chosen). The goal's text selects no area: "keep `layout` as is"
        leaves the areas alone. ``run.goals.info(worker)`` shows the resolved areas and who
        chose them.

        ``worker`` may also name a planner under the root (its goal and areas are split over
        its own workers at its next round).

        Raises:
            KeyError: no worker or planner has that name.
            AreaError: ``areas`` is empty or names an area the task lacks (the message
                lists the task's areas).
        """
        self.goals.owner(worker).goals.set(worker, goal, by="researcher", pinned=pin, areas=areas)

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
        self._spent.save()
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
        evaluations = self.store.evaluations()  # the one definition, see Store.evaluations
        spent = self._spent.total()
        return RunStatus(
            state=self._state,
            round=self.rounds_done,
            evaluations=evaluations,
            attempts_per_s=(evaluations - self._evaluations_before) / self._busy_seconds
            if self._busy_seconds
            else 0.0,
            best_score=best.score if best is not None and best.ok else None,
            error=None if self.error is None else f"{type(self.error).__name__}: {self.error}",
            reason=self.control.reason,
            usd=spent.usd,
            tokens=spent.tokens,
            model_failures=self.watch.failures,
        )

    def spent(self) -> Spent:
        """What the run's model calls cost over every session (kept in the store), in all
        and per model: ``run.spent().by_model["offline"].tokens``."""
        return self._spent.total()

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
        if isinstance(e, HandoffReceived | RoundFinished):
            self._spent.save()  # so a reopened (or killed) run still shows what it spent
        if isinstance(e, RoundFinished) and e.planner == self.planner.name and e.improved:
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
