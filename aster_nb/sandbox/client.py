"""The sandbox client: evaluations on a warm fork server, from asyncio code.

:class:`SandboxClient` starts one sandbox server (``python -m aster_nb.sandbox``, under
the strongest launcher this machine allows, :mod:`~aster_nb.sandbox.isolation`), keeps at
most ``concurrency`` evaluations on it at once and, when the server dies under an
evaluation, starts a fresh one and runs the evaluation again, once: a second death gives
``lost``, never blamed on the program. It does not cache:
:class:`~aster_nb.sandbox.local.LocalExecutor` puts it behind
:class:`~aster_nb.sandbox.cache.Cached`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..program import EvalResult, Status
from ..task import Limits
from .cache import Evaluation
from .connection import Connection, Listener, ServerDied
from .env import PACKAGE_PARENT, check_passthrough
from .forklimit import LOCK_DIR
from .isolation import choose_launcher, ensure_lock_dir, warning_for
from .protocol import check_device_env, check_seed, result_of

__all__ = ["SandboxClient"]


class SandboxClient:
    """Evaluates programs on a warm fork server on this machine, uncached.

    Args:
        evaluator: path of the task's evaluator module, which defines
            ``evaluate(program_path: str) -> dict`` (with ``seed=`` and ``report=``
            keywords if it takes them; see :mod:`aster_nb.task`).
        limits: default limits of one evaluation; :meth:`submit` can override them.
        preload: modules the server imports once before forking (e.g. ``["numpy"]``).
        concurrency: most evaluations running at once; default ``os.cpu_count()``.
        isolate: ``None`` (the strongest this machine allows), ``True`` (bubblewrap or
            fail), ``False`` (none) or ``"pid-namespace"``; see
            :class:`~aster_nb.sandbox.local.LocalExecutor`.
        network: let evaluations reach the network.
        env: names of environment variables to pass to evaluations.

    Raises:
        FileNotFoundError: ``evaluator`` is not a file.
        TypeError, ValueError: an argument has the wrong type or value.
        UserInputError: an ``env`` name looks like a credential.
    """

    hello_timeout: float = 120.0  # a heavy preload (torch) can take a while to import
    close_timeout: float = 5.0

    def __init__(
        self,
        *,
        evaluator: str | Path,
        limits: Limits,
        preload: Sequence[str] = (),
        concurrency: int | None = None,
        isolate: bool | str | None = None,
        network: bool = False,
        env: Sequence[str] = (),
    ) -> None:
        if not isinstance(evaluator, str | Path):
            raise TypeError(
                f"evaluator must be a path (str or Path), got {type(evaluator).__name__}"
            )
        path = Path(evaluator).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(
                f"evaluator must be an existing Python file, got {str(evaluator)!r}"
            )
        if not isinstance(limits, Limits):
            raise TypeError(f"limits must be an aster_nb.task.Limits, got {type(limits).__name__}")
        if isinstance(preload, str) or not all(isinstance(m, str) and m for m in preload):
            raise TypeError(
                f"preload must be a sequence of module names, e.g. ['numpy'], got {preload!r}"
            )
        if concurrency is None:
            concurrency = os.cpu_count() or 1
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive int or None, got {concurrency!r}")
        if isolate not in (None, True, False, "pid-namespace"):
            raise TypeError(
                f"isolate must be None, True, False or 'pid-namespace', got {isolate!r}"
            )
        if not isinstance(network, bool):
            raise TypeError(f"network must be True or False, got {network!r}")
        check_passthrough(env)
        self.evaluator = path
        self.limits = limits
        self.preload = tuple(preload)
        self.concurrency = concurrency
        self.isolate = isolate
        self.network = network
        self.env = tuple(env)
        self._server: Connection | None = None
        self._starting: asyncio.Task[Connection] | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._ids = itertools.count(1)
        self._closed = False
        self._counts = dict.fromkeys(
            ("evaluations", "starts", "server_deaths", "reruns", "lost"), 0
        )
        self._in_flight = 0
        self._started: dict[int, float] = {}  # monotonic start of each evaluation running

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the server now (otherwise the first evaluation does).

        Raises:
            RuntimeError: the server did not come up (the message has its stderr tail).
        """
        await self._ensure_server()

    async def close(self) -> None:
        """Stop the server, killing running evaluations (they return ``error``)."""
        self._closed = True
        if self._starting is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._starting)
        if self._server is not None:
            await self._server.stop(self.close_timeout)

    # -- evaluation --------------------------------------------------------------------

    async def submit(
        self,
        code: str,
        *,
        limits: Limits | None = None,
        seed: int | None = None,
        listener: Listener | None = None,
    ) -> EvalResult:
        """Evaluate ``code`` (every time: this client keeps no cache)."""
        evaluation = await self.evaluate(code, limits or self.limits, seed=seed, listener=listener)
        return evaluation.result

    async def evaluate(
        self,
        code: str,
        limits: Limits,
        *,
        env: Mapping[str, str] | None = None,
        seed: int | None = None,
        listener: Listener | None = None,
    ) -> Evaluation:
        """Evaluate ``code`` on the server, saying whether the result may be cached.

        If the server dies under the evaluation (killed by a neighbour, by the OOM killer,
        by hand), it is run again once on a fresh server; a second death gives ``lost``,
        which is never cached and never blamed on the program.

        Args:
            code: the program's source.
            limits: the evaluation's limits.
            env: device variables for this evaluation only (the GPUs a scheduler gave
                it; names from :data:`~aster_nb.sandbox.protocol.DEVICE_VARIABLES`).
            seed: passed as ``evaluate(..., seed=)`` when the evaluator takes it.
            listener: gets each ``report(step, values)`` as it comes; returning True
                stops the evaluation (its result is ``stopped``, never cached).

        Raises:
            ValueError: ``env`` sets a variable that is not a device variable, or
                ``seed`` is not an int.
        """
        env = check_device_env(env)
        seed = check_seed(seed)
        async with self._slots:
            first: str | None = None
            for _ in range(2):
                if self._closed:
                    return Evaluation(EvalResult(Status.ERROR, error="executor closed"), False)
                try:
                    server = await self._ensure_server()
                except RuntimeError as e:
                    return Evaluation(EvalResult(Status.ERROR, error=str(e)), False)
                try:
                    return await self._on(server, code, limits, env, seed, listener)
                except ServerDied as e:
                    if self._closed or server.closing:
                        return Evaluation(EvalResult(Status.ERROR, error=str(e)), False)
                    if first is not None:
                        self._counts["lost"] += 1
                        error = (
                            f"the sandbox server died twice under this evaluation; "
                            f"first: {first}; then: {e}"
                        )
                        return Evaluation(EvalResult(Status.LOST, error=error), False)
                    first = str(e)
                    self._counts["reruns"] += 1
            raise AssertionError("unreachable")

    async def _on(
        self,
        server: Connection,
        code: str,
        limits: Limits,
        env: Mapping[str, str],
        seed: int | None,
        listener: Listener | None,
    ) -> Evaluation:
        rid = next(self._ids)
        self._in_flight += 1
        self._started[rid] = time.monotonic()
        try:
            message = await server.request(
                rid, code, limits, env, seed=seed, listener=listener
            )  # ServerDied
        finally:
            self._in_flight -= 1
            self._started.pop(rid, None)
        self._counts["evaluations"] += 1
        try:
            return Evaluation(*result_of(message))
        except (KeyError, TypeError, ValueError) as e:
            error = f"malformed response from the sandbox server: {e}"
            return Evaluation(EvalResult(Status.ERROR, error=error), False)

    # -- the server process ------------------------------------------------------------

    async def _ensure_server(self) -> Connection:
        if self._closed:
            raise RuntimeError("executor closed")
        server = self._server
        if server is not None and server.dead is None:
            return server
        if self._starting is None or self._starting.done():
            # a task of its own, shielded: a cancelled caller must not leave a
            # half-started server behind that nobody will close
            self._starting = asyncio.ensure_future(self._spawn())
            self._starting.add_done_callback(_retrieve)
        return await asyncio.shield(self._starting)

    async def _spawn(self) -> Connection:
        launcher = await choose_launcher(
            isolate=self.isolate,
            network=self.network,
            lock_dir=ensure_lock_dir(LOCK_DIR),
            host_tmp=tempfile.gettempdir(),
            readable=self._needed_paths(),
        )
        args = [sys.executable, "-P", "-m", "aster_nb.sandbox", "--evaluator", str(self.evaluator)]
        for module in self.preload:
            args += ["--preload", module]
        args += ["--work-root", launcher.work_root, "--launcher", launcher.kind]
        if not launcher.network:
            args.append("--no-network")
        if self.isolate in (False, "pid-namespace"):
            args += ["--confine", "off"]
        server = await Connection.launch(
            [*launcher.prefix, *args],
            launcher=launcher,
            passthrough=self.env,
            on_death=self._count_death,
        )
        self._counts["starts"] += 1
        await server.handshake(self.hello_timeout, close_timeout=self.close_timeout)
        self._server = server
        return server

    def _count_death(self) -> None:
        self._counts["server_deaths"] += 1

    def _needed_paths(self) -> list[str]:
        """What the server reads: the evaluator's folder, this package, the interpreter
        and every ``PYTHONPATH`` entry."""
        paths = [str(self.evaluator.parent), str(PACKAGE_PARENT), sys.prefix, sys.base_prefix]
        paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        return [p for p in paths if os.path.exists(p)]

    # -- introspection -----------------------------------------------------------------

    @property
    def server_pid(self) -> int | None:
        """Pid of the running server, if any, as this process sees it (inside its PID
        namespace the server is pid 1)."""
        server = self._server
        return server.host_pid if server is not None and server.dead is None else None

    @property
    def server_info(self) -> dict[str, Any]:
        """The running server's hello: pid, fork_limit, preload timings, evaluator_error."""
        return dict(self._server.info) if self._server is not None else {}

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: evaluations (run by the server), in_flight, oldest_seconds (age of the
        oldest evaluation running), restarts, server_deaths,
        reruns (evaluations run again because the server died), lost (died twice),
        fork_limit (``cgroup-v1``/``cgroup-v2``/``nproc``/``none``), isolation (``full``,
        ``partial`` or ``none``), launcher (``bubblewrap``, ``unshare`` or ``none``),
        confinement (the per-evaluation steps applied), network (the last five None before
        the server started), concurrency."""
        info = self.server_info
        started = min(self._started.values(), default=None)
        return {
            "evaluations": self._counts["evaluations"],
            "in_flight": self._in_flight,
            # how long the oldest evaluation running has run (None when none is)
            "oldest_seconds": None if started is None else time.monotonic() - started,
            "restarts": max(self._counts["starts"] - 1, 0),
            "server_deaths": self._counts["server_deaths"],
            "reruns": self._counts["reruns"],
            "lost": self._counts["lost"],
            "fork_limit": info.get("fork_limit"),
            "isolation": info.get("isolation"),
            "launcher": info.get("launcher"),
            "confinement": info.get("confinement"),
            "network": info.get("network"),
            "concurrency": self.concurrency,
        }

    @property
    def isolation_warning(self) -> str | None:
        """One sentence saying what the sandbox does not isolate here, or None when it is
        fully isolated (or not started yet)."""
        server = self._server
        if server is None or not server.info:
            return None
        return warning_for(server.launcher, server.info.get("confinement"))


def _retrieve(task: asyncio.Task[Any]) -> None:
    # marks a failure as seen when every caller waiting on the task was cancelled
    if not task.cancelled():
        task.exception()
