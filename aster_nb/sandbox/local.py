"""The default executor: untrusted programs evaluated in a local sandbox, from asyncio code.

:class:`LocalExecutor` is a :class:`~aster_nb.sandbox.client.SandboxClient` (one warm
**sandbox server**, ``python -m aster_nb.sandbox``, that imports the task's ``preload``
modules and evaluator once and then forks one child per evaluation) behind the result
cache :class:`~aster_nb.sandbox.cache.Cached`. :func:`evaluate_cold` does the same with a
fresh server per evaluation (the baseline the fork server is measured against).

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
  bubblewrap starts (:mod:`aster_nb.sandbox.env`). BLAS/OpenMP thread counts are pinned to 1.
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
* Results are cached per (code hash, limits, seed), including ``timeout`` results, which
  can depend on machine load. Server deaths, ``lost``, cancellations and runs ``stopped``
  early are not cached, nor is a noisy task's evaluation without a seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..program import EvalResult
from ..task import Limits, Task
from .cache import Cached
from .client import SandboxClient

__all__ = ["LocalExecutor", "evaluate_cold"]

_DEFAULT_LIMITS = Limits()


class LocalExecutor(Cached):
    """Evaluates programs in a warm fork server on this machine.

    Use as ``async with LocalExecutor(evaluator=...) as ex: result = await ex.submit(code)``.
    Identical code (same :func:`~aster_nb.program.code_hash` and limits) is evaluated once:
    later submissions get the cached result, concurrent ones share the evaluation.

    Args:
        evaluator: path of the task's evaluator module, which defines
            ``evaluate(program_path: str) -> dict`` (with ``seed=`` and ``report=``
            keywords if it takes them; see :mod:`aster_nb.task`).
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
        noisy: the task's score is a sample (``task.evaluation.noisy``): results are
            cached per seed, and not at all without one (see :mod:`~aster_nb.sandbox.cache`).

    Raises:
        FileNotFoundError: ``evaluator`` is not a file.
        TypeError, ValueError: an argument has the wrong type or value.
    """

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
        noisy: bool = False,
    ) -> None:
        self.client = SandboxClient(
            evaluator=evaluator,
            limits=limits,
            preload=preload,
            concurrency=concurrency,
            isolate=isolate,
            network=network,
            env=env,
        )
        super().__init__(self.client, size=self.cache_size, noisy=noisy)

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
            noisy=task.evaluation.noisy,
        )

    # -- what the client knows ---------------------------------------------------------

    @property
    def evaluator(self) -> Path:
        """The evaluator module's resolved path."""
        return self.client.evaluator

    @property
    def preload(self) -> tuple[str, ...]:
        return self.client.preload

    @property
    def concurrency(self) -> int:
        """Most evaluations running at once."""
        return self.client.concurrency

    @property
    def network(self) -> bool:
        return self.client.network

    @property
    def server_pid(self) -> int | None:
        """Pid of the running server, if any, as this process sees it (inside its PID
        namespace the server is pid 1)."""
        return self.client.server_pid

    @property
    def server_info(self) -> dict[str, Any]:
        """The running server's hello: pid, fork_limit, preload timings, evaluator_error."""
        return self.client.server_info

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: evaluations (run by the server), cache_hits, cached, in_flight,
        oldest_seconds (age of the oldest evaluation running, None when none is), waiting,
        restarts, server_deaths, reruns (evaluations run again because the server
        died), lost (died twice), fork_limit (``cgroup-v1``/``cgroup-v2``/``nproc``/
        ``none``, or None before the server started), isolation (``full``, ``partial`` or
        ``none``; None before the server started), launcher (``bubblewrap``, ``unshare``
        or ``none``), confinement (the per-evaluation steps applied), network,
        concurrency."""
        return super().stats

    @property
    def isolation_warning(self) -> str | None:
        """One sentence saying what the sandbox does not isolate here, or None when it is
        fully isolated (or not started yet). Say it loudly, once, at start."""
        return self.client.isolation_warning


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
