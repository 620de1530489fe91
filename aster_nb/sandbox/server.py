"""The fork server: one selector loop, the JSON-lines protocol and each evaluation's life.

The loop watches stdin (requests), every child's stdout/stderr/result pipes, a SIGCHLD
wake-up pipe and the deadlines. Children are detected with ``waitid(WNOWAIT)`` so the
process group is killed while its leader is still a zombie (its pid cannot be reused yet),
then reaped. As a child subreaper the server also collects, and kills, processes that
escaped an evaluation by double-forking.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import json
import os
import resource
import selectors
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..program import EvalResult, Status
from ..task import Limits, TaskError
from . import confine
from .child import run_child
from .forklimit import (
    ForkLimit,
    cgroup_procs,
    kill_cgroup,
    release_cgroup_root,
    remove_cgroup_tree,
)
from .job import Capture, Job
from .outcome import KILL_MESSAGES, MAX_RESULT_BYTES, build_result, format_exception
from .proc import PR_SET_CHILD_SUBREAPER, children_of, prctl, signal_name, write_all

PROTOCOL_VERSION = 1
EXIT_GRACE = 1.0  # a killed leftover may hold a pipe a moment after the child is gone
LEAK_GRACE = 5.0  # give up waiting for a cgroup to empty (reported as leaked)
TICK = 0.25
DRAIN_TICK = 0.01
ORPHAN_WATCH = 2.0  # keep looking for reparented orphans this long after an evaluation


class SandboxServer:
    """The fork server's state and event loop (one per ``python -m aster_nb.sandbox``).

    Args:
        evaluator: path of the evaluator module.
        preload: modules to import before the first fork.
        fork_limit: the process-count mechanism (see
            :func:`~aster_nb.sandbox.forklimit.detect_fork_limit`).
        work_root: directory that holds one temporary working directory per evaluation.
        out_fd: fd of the private response channel.
        confinement: the per-evaluation confinement to apply where it works
            (:mod:`~aster_nb.sandbox.confine`; probed in :meth:`load`).
        launcher: what started this server (``bubblewrap``, ``unshare`` or ``none``),
            reported in the hello.
        network: whether evaluations can reach the network (reported in the hello).
    """

    def __init__(
        self,
        *,
        evaluator: Path,
        preload: Sequence[str],
        fork_limit: ForkLimit,
        work_root: Path,
        out_fd: int,
        confinement: confine.Confinement = confine.NONE,
        launcher: str = "none",
        network: bool = True,
    ) -> None:
        self.evaluator_path = evaluator
        self.preload = list(preload)
        self.fork_limit = fork_limit
        self.work_root = work_root
        self.out_fd = out_fd
        self.confinement = confinement
        self.launcher = launcher
        self.network = network
        self.pid = os.getpid()
        self.subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1)
        self._evaluate: Callable[[str], Any] | None = None
        self._import_error: str | None = None
        self._timings: dict[str, float] = {}
        self._preload_errors: dict[str, str] = {}
        self._jobs: dict[int | str, Job] = {}
        self._by_pid: dict[int, Job] = {}
        self._leftover: list[Path] = []
        self._stop: str | None = None
        self._stdin_buf = bytearray()
        self._seq = 0
        self._orphan_watch_until = 0.0
        self._next_orphan_scan = 0.0
        self._counts = {"evaluations": 0, "timeouts": 0, "orphans_killed": 0, "leaked_cgroups": 0}
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- startup -----------------------------------------------------------------------

    def load(self) -> None:
        """Import the preload modules and the evaluator (errors are reported, not raised)."""
        for name in self.preload:
            t0 = time.perf_counter()
            try:
                importlib.import_module(name)
            except BaseException as e:  # a preload may sys.exit or worse; keep serving
                self._preload_errors[name] = format_exception(e, 8)
            self._timings[name] = round(time.perf_counter() - t0, 4)
        t0 = time.perf_counter()
        try:
            self._evaluate = _import_evaluator(self.evaluator_path)
        except BaseException as e:
            self._import_error = (
                f"the evaluator {self.evaluator_path} failed to import:\n{format_exception(e)}"
            )
        self._timings["<evaluator>"] = round(time.perf_counter() - t0, 4)
        if self.confinement != confine.NONE:
            t0 = time.perf_counter()
            try:
                confine.prepare()
                self.confinement = confine.probe(self.confinement)
            except OSError as e:  # not Linux, or no /proc: run, and say why unconfined
                self.confinement = confine.Confinement(detail=f"not available here: {e}")
            self._timings["<confinement probe>"] = round(time.perf_counter() - t0, 4)
        # children then share these objects copy-on-write: the GC never touches them again
        gc.collect()
        gc.freeze()

    def hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "pid": self.pid,
            "python": sys.version.split()[0],
            "fork_limit": self.fork_limit.kind,
            "fork_limit_detail": self.fork_limit.detail,
            "cgroup_root": str(self.fork_limit.root) if self.fork_limit.root else None,
            "work_root": str(self.work_root),
            "subreaper": self.subreaper,
            "launcher": self.launcher,
            "network": self.network,
            "confinement": self.confinement.to_dict(),
            "isolation": self._isolation(),
            "evaluator": str(self.evaluator_path),
            "evaluator_error": self._import_error,
            "preload": self._timings,
            "preload_errors": self._preload_errors,
        }

    def _isolation(self) -> str:
        """``full`` (bubblewrap and every per-evaluation step), ``partial`` or ``none``."""
        if self.launcher == "bubblewrap" and self.confinement.complete:
            return "full"
        if self.launcher != "none" or self.confinement.pid_ns or self.confinement.seccomp:
            return "partial"
        return "none"

    # -- loop --------------------------------------------------------------------------

    def serve(self) -> None:
        """Run until stdin closes (or SIGTERM), then kill what is left."""
        self._install_signals()
        os.set_blocking(0, False)
        self._sel.register(0, selectors.EVENT_READ, self._on_stdin)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self._send(self.hello())
        while True:
            if self._stop:
                for job in self._jobs.values():
                    job.kill("shutdown")
                if not self._jobs:
                    break
            for key, _ in self._sel.select(self._timeout()):
                key.data()
            self._reap()
            now = time.monotonic()
            for job in list(self._jobs.values()):
                self._advance(job, now)
            if now < self._orphan_watch_until and now >= self._next_orphan_scan:
                self._next_orphan_scan = now + TICK
                self._kill_orphans()
            self._retry_leftovers()

    def cleanup(self) -> None:
        """Remove the server's cgroup and working directories (after :meth:`serve`)."""
        for job in list(self._jobs.values()):
            job.kill("shutdown")
        self._kill_orphans()
        if self.fork_limit.root is not None:
            release_cgroup_root(self.fork_limit.root)
        _remove_tree(self.work_root)

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the selector
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        self._stop = signal_name(signum)

    def _timeout(self) -> float | None:
        now = time.monotonic()
        if any(j.wait_status is not None for j in self._jobs.values()):
            return DRAIN_TICK
        if not self._jobs and not self._leftover and now >= self._orphan_watch_until:
            return None
        timeout = TICK
        for job in self._jobs.values():
            if job.killed is None:
                timeout = min(timeout, job.deadline - now)
        return max(timeout, 0.0)

    def _on_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def _send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        try:
            write_all(self.out_fd, data)
        except OSError:
            self._stop = "client gone"  # nobody reads the results any more

    # -- requests ----------------------------------------------------------------------

    def _on_stdin(self) -> None:
        try:
            chunk = os.read(0, 1 << 20)
        except BlockingIOError:
            return
        if not chunk:
            self._sel.unregister(0)
            self._stop = self._stop or "stdin closed"
            return
        self._stdin_buf += chunk
        while (nl := self._stdin_buf.find(b"\n")) >= 0:
            line = bytes(self._stdin_buf[:nl])
            del self._stdin_buf[: nl + 1]
            if line.strip():
                self._handle(line)

    def _handle(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("a request must be a JSON object")
        except ValueError as e:
            self._send({"type": "error", "error": f"bad request line: {e}"})
            return
        try:
            self._dispatch(msg)
        except Exception as e:  # one bad request must not take the server down
            self._send({"type": "error", "id": msg.get("id"), "error": format_exception(e, 6)})

    def _dispatch(self, msg: dict[str, Any]) -> None:
        op = msg.get("op", "eval")
        if op == "eval":
            self._start(msg)
        elif op == "cancel":
            job = self._jobs.get(msg.get("id"))  # type: ignore[arg-type]
            if job is not None:
                job.kill("cancelled")
        elif op == "stats":
            self._send(
                {
                    "type": "stats",
                    "in_flight": len(self._jobs),
                    **self._counts,
                    "fork_limit": self.fork_limit.kind,
                }
            )
        elif op == "shutdown":
            self._stop = "shutdown requested"
        else:
            self._send(
                {
                    "type": "error",
                    "error": f"unknown op {op!r}; expected eval, cancel, stats or shutdown",
                }
            )

    def _reply(self, rid: Any, result: EvalResult, *, transient: bool = False) -> None:
        self._send(
            {"type": "result", "id": rid, "result": result.to_dict(), "transient": transient}
        )

    def _start(self, msg: dict[str, Any]) -> None:
        rid = msg.get("id")
        if not isinstance(rid, int | str) or isinstance(rid, bool) or rid in self._jobs:
            self._send(
                {"type": "error", "id": rid, "error": "request needs a unique int or str 'id'"}
            )
            return
        code = msg.get("code")
        if not isinstance(code, str):
            self._reply(
                rid,
                EvalResult(Status.ERROR, error="request 'code' must be a string"),
                transient=True,
            )
            return
        try:
            limits = Limits(**(msg.get("limits") or {}))
        except (TypeError, TaskError) as e:
            self._reply(rid, EvalResult(Status.ERROR, error=f"bad limits: {e}"), transient=True)
            return
        if self._import_error is not None or self._evaluate is None:
            self._reply(rid, EvalResult(Status.ERROR, error=self._import_error or "no evaluator"))
            return
        if self._stop:
            self._reply(
                rid, EvalResult(Status.ERROR, error=KILL_MESSAGES["shutdown"]), transient=True
            )
            return
        try:
            self._spawn(rid, code, limits, self._evaluate)
        except (OSError, ValueError) as e:  # ValueError: code that is not valid UTF-8
            self._reply(
                rid,
                EvalResult(Status.ERROR, error=f"sandbox could not start the evaluation: {e}"),
                transient=True,
            )

    # -- lifecycle of a job ------------------------------------------------------------

    def _spawn(
        self, rid: int | str, code: str, limits: Limits, evaluate: Callable[[str], Any]
    ) -> None:
        self._seq += 1
        workdir = Path(tempfile.mkdtemp(prefix=f"e{self._seq}-", dir=self.work_root))
        cgroup: Path | None = None
        pipes: list[int] = []
        try:
            (workdir / "program.py").write_text(code, encoding="utf-8")
            cgroup = self.fork_limit.evaluation_cgroup(f"e{self._seq}", limits.max_processes)
            nproc = self.fork_limit.nproc(limits.max_processes)
            for _ in range(3):
                pipes.extend(os.pipe2(os.O_CLOEXEC))
            out_r, out_w, err_r, err_w, res_r, res_w = pipes
            # what the child must close: the response channel, the selector, the wake-up
            # pipe and every evaluation's pipes
            server_fds = {out_r, err_r, res_r, self.out_fd, self._wake_r, self._wake_w}
            server_fds.add(self._sel.fileno())
            for other in self._jobs.values():
                server_fds |= other.fds
            # unflushed server output would otherwise be written twice, once by the child
            for stream in (sys.stderr, sys.__stdout__, sys.__stderr__):
                if stream is not None:
                    stream.flush()
            pid = self._fork()
        except (OSError, ValueError):
            for fd in pipes:
                os.close(fd)
            if cgroup is not None:
                with contextlib.suppress(OSError):
                    cgroup.rmdir()
            _remove_tree(workdir)
            raise
        if pid == 0:
            run_child(
                evaluate,
                code=code,
                confinement=self.confinement,
                server_pid=self.pid,
                workdir=workdir,
                cgroup=cgroup,
                nproc=nproc,
                limits=limits,
                write_ends=(out_w, err_w, res_w),
                server_fds=server_fds,
            )
        for fd in (out_w, err_w, res_w):
            os.close(fd)
        job = Job(
            rid,
            pid,
            limits,
            workdir,
            cgroup,
            started=time.monotonic(),
            out=Capture(limits.max_output_bytes),
            err=Capture(limits.max_output_bytes),
            result=Capture(MAX_RESULT_BYTES),
        )
        for fd, sink in ((out_r, job.out.feed), (err_r, job.err.feed), (res_r, job.result.feed)):
            os.set_blocking(fd, False)
            job.fds.add(fd)
            self._sel.register(fd, selectors.EVENT_READ, self._reader(job, fd, sink))
        self._jobs[rid] = job
        self._by_pid[pid] = job

    def _fork(self) -> int:
        """``fork()``; with PID namespaces on, the child is PID 1 of a new one (so killing
        it kills everything it started, and it sees nothing else)."""
        if not self.confinement.pid_ns:
            return os.fork()
        pidns_fd = confine.enter_pid_namespace()
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pid == 0:
                os.close(pidns_fd)
            else:
                confine.leave_pid_namespace(pidns_fd)
        return pid

    def _reader(self, job: Job, fd: int, sink: Callable[[bytes], None]) -> Callable[[], None]:
        def on_readable() -> None:
            # a few chunks per wake-up: a program printing 50 MB should not cost 800 selects
            for _ in range(16):
                try:
                    chunk = os.read(fd, 1 << 16)
                except BlockingIOError:
                    return
                except OSError:
                    chunk = b""
                if not chunk:
                    self._close_fd(job, fd)
                    return
                sink(chunk)

        return on_readable

    def _close_fd(self, job: Job, fd: int) -> None:
        if fd in job.fds:
            job.fds.discard(fd)
            self._sel.unregister(fd)
            os.close(fd)

    def _reap(self) -> None:
        now = time.monotonic()
        for job in list(self._jobs.values()):
            if job.wait_status is not None:
                continue
            try:
                info = os.waitid(os.P_PID, job.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
            if info is None:
                continue
            # still a zombie here: kill what it left behind before its pid can be reused
            job.kill()
            _, status, usage = os.wait4(job.pid, 0)
            self._record_exit(job, status, usage, now)
        self._reap_orphans(now)

    def _reap_orphans(self, now: float) -> None:
        """Collect exited descendants that were reparented to us (we are a subreaper)."""
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self._by_pid.get(pid)
            if job is not None and job.wait_status is None:
                self._record_exit(job, status, usage, now)

    def _record_exit(
        self, job: Job, status: int, usage: resource.struct_rusage, now: float
    ) -> None:
        job.wait_status = status
        job.cpu_used = usage.ru_utime + usage.ru_stime
        job.exited_at = now
        self._by_pid.pop(job.pid, None)
        self._orphan_watch_until = now + ORPHAN_WATCH
        self._kill_orphans()

    def _kill_orphans(self) -> None:
        """SIGKILL our children that are not evaluation processes (setsid/double-fork
        escapees reparented to us), except those inside a running evaluation's cgroup."""
        protected = set(self._by_pid)
        for job in self._jobs.values():
            if job.cgroup is not None and job.wait_status is None:
                protected.update(cgroup_procs(job.cgroup))
        for pid in children_of(self.pid):
            if pid not in protected:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    self._counts["orphans_killed"] += 1

    def _advance(self, job: Job, now: float) -> None:
        if job.wait_status is None:
            if job.killed is None and now >= job.deadline:
                self._counts["timeouts"] += 1
                job.kill("timeout")
            return
        assert job.exited_at is not None
        empty = job.cgroup is None or kill_cgroup(job.cgroup, rounds=2)
        if job.fds and now < job.exited_at + EXIT_GRACE:
            return
        if not empty and now < job.exited_at + LEAK_GRACE:
            return
        self._finish(job, now)

    def _finish(self, job: Job, now: float) -> None:
        for fd in list(job.fds):
            self._close_fd(job, fd)
        if job.cgroup is not None:
            try:
                job.cgroup.rmdir()
            except OSError:
                self._counts["leaked_cgroups"] += 1
                self._leftover.append(job.cgroup)
        _remove_tree(job.workdir)
        del self._jobs[job.rid]
        self._counts["evaluations"] += 1
        result = build_result(job, now)
        self._reply(job.rid, result, transient=job.killed in KILL_MESSAGES)

    def _retry_leftovers(self) -> None:
        self._leftover = [cg for cg in self._leftover if not remove_cgroup_tree(cg, wait=0.0)]


def _import_evaluator(path: Path) -> Callable[[str], Any]:
    # the evaluator may import helpers that sit next to it
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("aster_nb_task_evaluator", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    evaluate = getattr(module, "evaluate", None)
    if not callable(evaluate):
        raise AttributeError(f"{path} defines no callable evaluate(program_path) -> dict")
    return evaluate


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, onerror=_force_remove)


def _force_remove(func: Callable[..., Any], path: str, _exc: Any) -> None:
    """rmtree error hook: a program may leave read-only directories behind."""
    with contextlib.suppress(OSError):
        os.chmod(os.path.dirname(path) or ".", 0o700)
        os.chmod(path, 0o700)
        func(path)
