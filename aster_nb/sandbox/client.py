"""Executors: evaluate untrusted programs in a sandbox, from asyncio code.

:class:`LocalExecutor` starts one warm **sandbox server** (``python -m aster_nb.sandbox``,
see :mod:`aster_nb.sandbox`) that imports the task's ``preload`` modules and evaluator once
and then forks one child per evaluation. :func:`evaluate_cold` does the same with a fresh
server per evaluation (the baseline the fork server is measured against).

What is contained, and how
--------------------------
The candidate is assumed hostile and root. Where the machine allows it
(``stats["isolation"] == "full"``; checked at start, and :attr:`LocalExecutor.isolation_warning`
says what is missing otherwise):

* **bubblewrap around the server** (:mod:`aster_nb.sandbox.isolation`): the host's
  filesystem read-only, private ``/tmp``, ``/dev`` and ``/proc``, no network (a task opts
  in with ``network = true``), its own user, PID, IPC and UTS namespaces.
* **each evaluation a stranger** (:mod:`aster_nb.sandbox.confine`): PID 1 of its own PID
  namespace (``kill -9 -1`` reaches only its own processes; when it exits the kernel kills
  everything it started, wherever that went), its own mount, IPC and user namespaces, a
  fresh ``/tmp`` (its working directory, also ``HOME`` and ``TMPDIR``) and ``/dev/shm``
  that nothing else sees and that vanish with it, a fresh ``/proc`` that shows only
  itself, the cgroup hierarchy read-only; then no capabilities, locked securebits,
  ``no_new_privs`` and a seccomp filter (:mod:`aster_nb.sandbox.seccomp`) that refuses
  ``mount``, ``umount2``, ``unshare``, ``setns``, ``ptrace`` and the rest.
* **Secrets in the environment**: the server gets an allowlisted environment (``PATH``,
  ``LANG``, ``LC_*``, ``TZ``, ``TMPDIR``, ``PYTHONHASHSEED``, ``OPENBLAS_CORETYPE``,
  ``OPENBLAS_L2_SIZE``, and the names a task lists in ``env``), minus anything that looks
  like a credential (:func:`aster_nb.errors.looks_like_credential`), scrubbed before
  bubblewrap starts. BLAS/OpenMP thread counts are pinned to 1.
* **Runaway time**: the server SIGKILLs the evaluation at ``limits.timeout`` (``timeout``);
  ``RLIMIT_CPU`` = ``limits.cpu`` also gives ``timeout``, with "CPU limit" in the error.
* **Memory**: ``RLIMIT_AS`` = ``limits.memory_mb``; a ``MemoryError`` gives ``memory``.
* **Fork bombs**: a ``pids`` cgroup per evaluation with ``pids.max =
  limits.max_processes`` (as root or wherever cgroups are writable; evaluations cannot
  leave it, the hierarchy is read-only to them). Without cgroups, ``RLIMIT_NPROC`` for
  non-root users.
* **Disk and output**: ``RLIMIT_FSIZE`` = ``limits.max_file_mb`` per file, the private
  ``/tmp`` capped at ``4 * max_file_mb`` (at least 64 MiB); stdout/stderr are drained
  continuously and the first ``limits.max_output_bytes`` of each kept.
* **Neighbours are not blamed**: if the server dies under an evaluation (killed, out of
  memory), the evaluation runs again once on a fresh server; a second death gives
  ``lost``, never cached, never the program's ``error``.

Where a layer is missing (no bubblewrap: the PID namespace of ``unshare`` or nothing; no
user namespaces), the run still goes on and the warning says so, once, at start.

What is *not* contained
-----------------------
* **Reading** the host's files: the filesystem is read-only, not hidden, so a program can
  read what the user running it can (an API key kept in a file, the run's store). Keep
  keys in the environment, not in files under the sandbox's view.
* The program runs in the evaluator's process, so it can tamper with its own score (patch
  the evaluator, write a forged result). The sandbox protects the host, not the score.
* With ``network = true`` the program reaches whatever this machine reaches.
* ``memory_mb`` is per process: an evaluation with ``max_processes`` processes can map up
  to ``max_processes * memory_mb`` (a memory cgroup would cap the total; not used).
* CPU shares and kernel resources such as inotify watches are not limited; the kernel
  itself is shared (a kernel exploit reachable through the allowed system calls escapes).
* Modules the server preloads must not start threads (forking a threaded process is unsafe).
* Results are cached per (code hash, limits), including ``timeout`` results, which can
  depend on machine load. Server deaths, ``lost`` and cancellations are not cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import UserInputError, looks_like_credential
from .program import EvalResult, Status, code_hash
from .sandbox import release_cgroup_root
from .sandbox.forklimit import LOCK_DIR
from .sandbox.isolation import Launcher, choose_launcher, ensure_lock_dir, warning_for
from .task import Limits, Task

__all__ = ["LocalExecutor", "evaluate_cold", "sandbox_env"]

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent
_DEFAULT_LIMITS = Limits()
_STREAM_LIMIT = 256 * 1024 * 1024  # one response line may carry two capped outputs, escaped
_STDERR_TAIL = 16 * 1024
_ENV_KEEP = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "PYTHONHASHSEED",
        "OPENBLAS_CORETYPE",
        "OPENBLAS_L2_SIZE",
    }
)
_THREADS_ONE = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}


def sandbox_env(
    base: Mapping[str, str] | None = None, passthrough: Sequence[str] = ()
) -> dict[str, str]:
    """The environment the sandbox server gets: an allowlist of ``base`` (default
    ``os.environ``) plus the ``passthrough`` names a task asked for, minus anything that
    looks like a credential, plus single-threaded BLAS and a ``PYTHONPATH`` that finds
    this package.

    Raises:
        UserInputError: a ``passthrough`` name looks like a credential.
    """
    base = os.environ if base is None else base
    _check_passthrough(passthrough)
    wanted = _ENV_KEEP | set(passthrough)
    env = {
        k: v
        for k, v in base.items()
        if (k in wanted or k.startswith("LC_")) and not looks_like_credential(k)
    }
    env.update(_THREADS_ONE)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    paths = [str(_PACKAGE_PARENT), *filter(None, base.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _check_passthrough(names: Sequence[str]) -> None:
    if isinstance(names, str):
        raise UserInputError(f"env must be a list of variable names, got the string {names!r}")
    for name in names:
        if not isinstance(name, str) or not name or "=" in name:
            raise UserInputError(f"env names variables to pass to the sandbox; got {name!r}")
        if looks_like_credential(name):
            raise UserInputError(
                f"env asks to pass {name!r} to the sandbox, but it looks like a credential "
                "(*KEY*, *TOKEN*, *SECRET*, ANTHROPIC_*, ...); credentials never reach "
                "model-written code"
            )


class _ServerDied(Exception):
    pass


@dataclass(eq=False)
class _Server:
    """One running sandbox server process and the requests waiting on it."""

    proc: asyncio.subprocess.Process
    hello: asyncio.Future[dict[str, Any]]
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    stderr_tail: bytearray = field(default_factory=bytearray)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    host_pid: int | None = None  # the server's own pid as seen from here (not the wrapper's)
    launcher: Launcher | None = None
    dead: str | None = None
    closing: bool = False


@dataclass(eq=False)
class _Shared:
    """An evaluation in progress that several identical submissions wait on."""

    task: asyncio.Task[EvalResult] | None = None
    waiters: int = 0


class LocalExecutor:
    """Evaluates programs in a warm fork server on this machine.

    Use as ``async with LocalExecutor(evaluator=...) as ex: result = await ex.submit(code)``.
    Identical code (same :func:`~aster_nb.program.code_hash` and limits) is evaluated once:
    later submissions get the cached result, concurrent ones share the evaluation.

    Args:
        evaluator: path of the task's evaluator module, which defines
            ``evaluate(program_path: str) -> dict``.
        limits: default limits of one evaluation; :meth:`submit` can override them.
        preload: modules the server imports once before forking (e.g. ``["numpy"]``), so
            evaluations do not pay for importing them. Must not start threads.
        concurrency: most evaluations running at once (more submissions wait); default
            ``os.cpu_count()``.
        isolate: how hard to isolate (see :mod:`aster_nb.sandbox.isolation` and
            :mod:`aster_nb.sandbox.confine`). ``None`` (default): the strongest this
            machine allows, with :attr:`isolation_warning` saying what is missing;
            ``True``: bubblewrap or fail to start; ``False``: none at all (a plain
            process); ``"pid-namespace"``: only a PID and mount namespace, as earlier
            versions did. The last two exist for tests that show what isolation prevents.
        network: let evaluations reach the network (default: no network; only where
            bubblewrap runs can it be taken away).
        env: names of environment variables to pass to evaluations (e.g. a data path or
            ``CUDA_VISIBLE_DEVICES``); a name that looks like a credential is an error.

    Raises:
        FileNotFoundError: ``evaluator`` is not a file.
        TypeError, ValueError: an argument has the wrong type or value.
    """

    hello_timeout: float = 120.0  # a heavy preload (torch) can take a while to import
    close_timeout: float = 5.0
    #: results kept for identical code; the oldest go first (each holds up to two outputs)
    cache_size: int = 4096

    def __init__(
        self,
        *,
        evaluator: str | Path,
        limits: Limits = _DEFAULT_LIMITS,
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
        self.evaluator = path
        self.limits = limits
        self.preload = tuple(preload)
        if isolate not in (None, True, False, "pid-namespace"):
            raise TypeError(
                f"isolate must be None, True, False or 'pid-namespace', got {isolate!r}"
            )
        if not isinstance(network, bool):
            raise TypeError(f"network must be True or False, got {network!r}")
        _check_passthrough(env)
        self.concurrency = concurrency
        self.isolate = isolate
        self.network = network
        self.env = tuple(env)
        self._server: _Server | None = None
        self._starting: asyncio.Task[_Server] | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._cache: dict[tuple[str, Limits], EvalResult] = {}
        self._shared: dict[tuple[str, Limits], _Shared] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._counts = {
            "evaluations": 0,
            "cache_hits": 0,
            "starts": 0,
            "server_deaths": 0,
            "reruns": 0,
            "lost": 0,
        }
        self._in_flight = 0

    @classmethod
    def from_task(
        cls, task: Task, *, concurrency: int | None = None, limits: Limits | None = None
    ) -> LocalExecutor:
        """An executor for ``task``: its evaluator, preload and limits.

        Args:
            task: the loaded task.
            concurrency: see the class; default ``os.cpu_count()``.
            limits: overrides ``task.limits`` if given.
        """
        if not isinstance(task, Task):
            raise TypeError(f"task must be an aster_nb.task.Task, got {type(task).__name__}")
        return cls(
            evaluator=task.evaluator_path,
            limits=task.limits if limits is None else limits,
            preload=task.preload,
            concurrency=concurrency,
            network=bool(getattr(task, "network", False)),
            env=tuple(getattr(task, "env", ())),
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the server now (otherwise the first :meth:`submit` does).

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
            await self._stop_server(self._server)
        shared = [s.task for s in self._shared.values() if s.task is not None]
        await asyncio.gather(*shared, return_exceptions=True)

    async def __aenter__(self) -> LocalExecutor:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- evaluation --------------------------------------------------------------------

    async def submit(self, code: str, *, limits: Limits | None = None) -> EvalResult:
        """Evaluate ``code`` (or return the cached result of identical code).

        Args:
            code: the program's full source; written to ``program.py`` in a temp dir and
                passed to ``evaluate``.
            limits: limits for this evaluation instead of the executor's.

        Returns:
            The result. Failures of the program are results (``error``, ``timeout``,
            ``memory``, ``invalid``), not exceptions.

        Raises:
            RuntimeError: the executor was closed.
        """
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, got {type(code).__name__}")
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(
                f"limits must be an aster_nb.task.Limits or None, got {type(limits).__name__}"
            )
        if self._closed:
            raise RuntimeError("this executor is closed; create a new one")
        key = (code_hash(code), limits or self.limits)
        cached = self._cache.pop(key, None)
        if cached is not None:
            self._cache[key] = cached  # most recently used goes last
            self._counts["cache_hits"] += 1
            return cached
        shared = self._shared.get(key)
        if shared is None:
            shared = self._shared[key] = _Shared()
            shared.task = asyncio.ensure_future(self._evaluate_shared(key, code, shared))
        else:
            self._counts["cache_hits"] += 1
        assert shared.task is not None
        shared.waiters += 1
        try:
            return await asyncio.shield(shared.task)
        finally:
            shared.waiters -= 1
            if shared.waiters == 0 and not shared.task.done():
                # everyone who wanted this result is gone: kill the evaluation
                if self._shared.get(key) is shared:
                    del self._shared[key]
                shared.task.cancel()

    async def _evaluate_shared(
        self, key: tuple[str, Limits], code: str, shared: _Shared
    ) -> EvalResult:
        try:
            result, cacheable = await self._run_once(code, key[1])
            if cacheable:
                self._cache[key] = result
                while len(self._cache) > self.cache_size:
                    del self._cache[next(iter(self._cache))]
            return result
        finally:
            if self._shared.get(key) is shared:
                del self._shared[key]

    async def _run_once(self, code: str, limits: Limits) -> tuple[EvalResult, bool]:
        """Evaluate on the server; returns the result and whether to cache it.

        If the server dies under the evaluation (killed by a neighbour, by the OOM killer,
        by hand), it is run again once on a fresh server; a second death gives ``lost``,
        which is never cached and never blamed on the program.
        """
        async with self._slots:
            first: str | None = None
            for _ in range(2):
                if self._closed:
                    return EvalResult(Status.ERROR, error="executor closed"), False
                try:
                    server = await self._ensure_server()
                except RuntimeError as e:
                    return EvalResult(Status.ERROR, error=str(e)), False
                try:
                    return await self._on(server, code, limits)
                except _ServerDied as e:
                    if self._closed or server.closing:
                        return EvalResult(Status.ERROR, error=str(e)), False
                    if first is not None:
                        self._counts["lost"] += 1
                        return EvalResult(
                            Status.LOST,
                            error=f"the sandbox server died twice under this evaluation; "
                            f"first: {first}; then: {e}",
                        ), False
                    first = str(e)
                    self._counts["reruns"] += 1
            raise AssertionError("unreachable")

    async def _on(self, server: _Server, code: str, limits: Limits) -> tuple[EvalResult, bool]:
        rid = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        server.pending[rid] = future
        self._in_flight += 1
        try:
            return await self._round_trip(server, rid, future, code, limits)
        except asyncio.CancelledError:
            server.pending.pop(rid, None)
            self._send_quietly(server, {"op": "cancel", "id": rid})
            raise
        finally:
            self._in_flight -= 1

    async def _round_trip(
        self,
        server: _Server,
        rid: int,
        future: asyncio.Future[dict[str, Any]],
        code: str,
        limits: Limits,
    ) -> tuple[EvalResult, bool]:
        request = {"id": rid, "code": code, "limits": dataclasses.asdict(limits)}
        if server.dead is not None:
            raise _ServerDied(server.dead)
        assert server.proc.stdin is not None
        server.proc.stdin.write((json.dumps(request) + "\n").encode())
        with contextlib.suppress(ConnectionError):
            # if the pipe broke, the reader notices the death and fails `future`
            await server.proc.stdin.drain()
        message = await future  # raises _ServerDied
        self._counts["evaluations"] += 1
        try:
            result = EvalResult.from_dict(message["result"])
        except (KeyError, TypeError, ValueError) as e:
            return EvalResult(
                Status.ERROR, error=f"malformed response from the sandbox server: {e}"
            ), False
        return result, not message.get("transient", False)

    @staticmethod
    def _send_quietly(server: _Server, message: dict[str, Any]) -> None:
        if server.dead is None and server.proc.stdin is not None:
            with contextlib.suppress(Exception):
                server.proc.stdin.write((json.dumps(message) + "\n").encode())

    # -- the server process ------------------------------------------------------------

    async def _ensure_server(self) -> _Server:
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

    async def _spawn(self) -> _Server:
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
        prefix = launcher.prefix
        try:
            proc = await self._launch([*prefix, *args], self.env)
        except OSError as e:
            raise RuntimeError(f"sandbox server did not start: {e}") from e
        self._counts["starts"] += 1
        server = _Server(proc, asyncio.get_running_loop().create_future(), launcher=launcher)
        server.tasks = [
            asyncio.ensure_future(self._read_responses(server)),
            asyncio.ensure_future(self._read_stderr(server)),
        ]
        try:
            server.info = await asyncio.wait_for(asyncio.shield(server.hello), self.hello_timeout)
            server.host_pid = _server_host_pid(proc.pid) if prefix else proc.pid
        except (TimeoutError, _ServerDied) as e:
            await self._stop_server(server)
            raise RuntimeError(
                f"sandbox server did not start: {e or 'no hello within the timeout'}; "
                f"stderr: {_tail_text(server)}"
            ) from None
        self._server = server
        return server

    def _needed_paths(self) -> list[str]:
        """What the server reads: the evaluator's folder, this package, the interpreter
        and every ``PYTHONPATH`` entry."""
        paths = [str(self.evaluator.parent), str(_PACKAGE_PARENT), sys.prefix, sys.base_prefix]
        paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        return [p for p in paths if os.path.exists(p)]

    @staticmethod
    async def _launch(args: list[str], env: Sequence[str]) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=sandbox_env(passthrough=env),
            cwd=tempfile.gettempdir(),
            start_new_session=True,  # a Ctrl-C in the terminal is not meant for the server
            limit=_STREAM_LIMIT,
        )

    async def _read_responses(self, server: _Server) -> None:
        assert server.proc.stdout is not None
        try:
            while line := await server.proc.stdout.readline():
                self._dispatch(server, line)
        except (ValueError, asyncio.LimitOverrunError) as e:
            # the channel is out of sync; a fresh server is the only way back
            server.dead = f"protocol error: {e}"
            with contextlib.suppress(ProcessLookupError):
                server.proc.kill()
        finally:
            await self._server_gone(server)

    def _dispatch(self, server: _Server, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "hello" and not server.hello.done():
            server.hello.set_result(message)
        elif kind in ("result", "error"):
            future = server.pending.pop(message.get("id"), None)
            if kind == "error":  # the server could not parse our request
                message = {
                    "result": {"status": "error", "error": message.get("error")},
                    "transient": True,
                }
            if future is not None and not future.done():
                future.set_result(message)

    async def _read_stderr(self, server: _Server) -> None:
        # drained so the server never blocks on a full pipe; the tail explains a crash
        assert server.proc.stderr is not None
        while chunk := await server.proc.stderr.read(65536):
            server.stderr_tail += chunk
            del server.stderr_tail[:-_STDERR_TAIL]

    async def _server_gone(self, server: _Server) -> None:
        returncode = await server.proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(server.tasks[1]), 1.0)
        if server.closing:
            reason = "executor closed"
        else:
            self._counts["server_deaths"] += 1
            how = (
                f"killed by {signal.Signals(-returncode).name}"
                if returncode < 0 and -returncode in signal.valid_signals()
                else f"exit code {returncode}"
            )
            reason = f"sandbox server died: {server.dead or how}; stderr: {_tail_text(server)}"
        server.dead = reason
        for future in server.pending.values():
            if not future.done():
                future.set_exception(_ServerDied(reason))
        server.pending.clear()
        if not server.hello.done():
            server.hello.set_exception(_ServerDied(reason))
        _cleanup_after(server.info)

    async def _stop_server(self, server: _Server) -> None:
        server.closing = True
        if server.proc.returncode is None:
            if server.proc.stdin is not None:
                server.proc.stdin.close()  # end of input: the server kills its children and exits
            try:
                await asyncio.wait_for(server.proc.wait(), self.close_timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    server.proc.kill()
                await server.proc.wait()
        await asyncio.gather(*server.tasks, return_exceptions=True)

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
        """Counters: evaluations (run by the server), cache_hits, cached, in_flight,
        waiting, restarts, server_deaths, fork_limit (``cgroup-v1``/``cgroup-v2``/``nproc``/
        ``none``, or None before the server started), isolation (``full``, ``partial`` or
        ``none``; None before the server started), launcher (``bubblewrap``, ``unshare``
        or ``none``), confinement (the per-evaluation steps applied), network,
        reruns (evaluations run again because the server died), lost (died twice),
        concurrency."""
        waiting = max(len(self._shared) - self._in_flight, 0)
        return {
            "evaluations": self._counts["evaluations"],
            "cache_hits": self._counts["cache_hits"],
            "cached": len(self._cache),
            "in_flight": self._in_flight,
            "waiting": waiting,
            "restarts": max(self._counts["starts"] - 1, 0),
            "server_deaths": self._counts["server_deaths"],
            "reruns": self._counts["reruns"],
            "lost": self._counts["lost"],
            "fork_limit": self.server_info.get("fork_limit"),
            "isolation": self.server_info.get("isolation"),
            "launcher": self.server_info.get("launcher"),
            "confinement": self.server_info.get("confinement"),
            "network": self.server_info.get("network"),
            "concurrency": self.concurrency,
        }

    @property
    def isolation_warning(self) -> str | None:
        """One sentence saying what the sandbox does not isolate here, or None when it is
        fully isolated (or not started yet). Say it loudly, once, at start."""
        server = self._server
        if server is None or server.launcher is None or not server.info:
            return None
        return warning_for(server.launcher, server.info.get("confinement"))


def _retrieve(task: asyncio.Task[Any]) -> None:
    # marks a failure as seen when every caller waiting on the task was cancelled
    if not task.cancelled():
        task.exception()


def _server_host_pid(wrapper: int) -> int | None:
    # `unshare --fork` has exactly one child: the server
    try:
        children = Path(f"/proc/{wrapper}/task/{wrapper}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _tail_text(server: _Server, lines: int = 15) -> str:
    text = server.stderr_tail.decode("utf-8", "replace").strip()
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def _cleanup_after(info: Mapping[str, Any]) -> None:
    """Kill what a dead server's evaluations left and remove its directories (a server
    that exits normally has done this itself, so this is then a no-op)."""
    if info.get("cgroup_root"):
        release_cgroup_root(Path(info["cgroup_root"]), wait=0.5)
    if info.get("work_root"):
        shutil.rmtree(info["work_root"], ignore_errors=True)


async def evaluate_cold(
    code: str,
    *,
    evaluator: str | Path,
    limits: Limits = _DEFAULT_LIMITS,
    preload: Sequence[str] = (),
) -> EvalResult:
    """Evaluate ``code`` in a fresh interpreter, with the same containment as
    :class:`LocalExecutor` (a one-shot server that imports ``preload`` and the evaluator).

    Args:
        code: the program's source.
        evaluator: path of the evaluator module.
        limits: limits of the evaluation.
        preload: modules to import before the evaluation (as a cold start would).
    """
    executor = LocalExecutor(evaluator=evaluator, limits=limits, preload=preload, concurrency=1)
    try:
        return await executor.submit(code)  # a server that fails to start gives `error`
    finally:
        await executor.close()
