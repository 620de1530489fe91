"""The evaluations a fork server is running: each one's life from fork to answer.

:class:`Evaluations` forks a child per evaluation (PID 1 of its own PID namespace where
confinement allows), reads its pipes from the server's selector, kills it at its deadline,
detects its exit with ``waitid(WNOWAIT)`` so the process group is killed while its leader
is still a zombie (its pid cannot be reused yet), then reaps it, empties and removes its
cgroup and working directory, and hands the result to the server. As a child subreaper the
server also collects, and kills, processes that escaped an evaluation by double-forking.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import selectors
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from ..program import EvalResult
from ..task import Limits
from . import confine
from .child import run_child
from .forklimit import ForkLimit, cgroup_procs, kill_cgroup, remove_cgroup_tree
from .job import Capture, Job
from .outcome import MAX_RESULT_BYTES, TRANSIENT, build_result
from .proc import children_of

__all__ = ["Evaluations", "remove_tree"]

EXIT_GRACE = 1.0  # a killed leftover may hold a pipe a moment after the child is gone
LEAK_GRACE = 5.0  # give up waiting for a cgroup to empty (reported as leaked)
TICK = 0.25
DRAIN_TICK = 0.01
REPORT_PIPE_BYTES = 1 << 20  # the default most a user may set (/proc/sys/fs/pipe-max-size)
ORPHAN_WATCH = 2.0  # keep looking for reparented orphans this long after an evaluation

#: called with an evaluation's request id, its result and whether it is transient
Answer = Callable[[int | str, EvalResult, bool], None]
#: called with an evaluation's request id and one checked report, ``(step, values)``
OnReport = Callable[[int | str, int, dict[str, float]], None]


class Evaluations:
    """The running evaluations of one server, by request id.

    Args:
        selector: the server's selector; each child's pipes are registered there with a
            callable as their data, which the server's loop calls when they are readable.
        fork_limit: caps each evaluation's processes.
        work_root: holds one temporary working directory per evaluation.
        confinement: what each evaluation gets (:mod:`~aster_nb.sandbox.confine`).
        server_pid: the server's pid (orphans are its children).
        server_fds: the server's own fds a child must close (response channel, selector,
            wake-up pipe); every evaluation's pipes are added to them.
        answer: where finished evaluations go.
        on_report: where the reports of evaluations that forward them go.
    """

    def __init__(
        self,
        *,
        selector: selectors.BaseSelector,
        fork_limit: ForkLimit,
        work_root: Path,
        confinement: confine.Confinement,
        server_pid: int,
        server_fds: Collection[int],
        answer: Answer,
        on_report: OnReport | None = None,
    ) -> None:
        self.confinement = confinement
        self.counts = {"evaluations": 0, "timeouts": 0, "orphans_killed": 0, "leaked_cgroups": 0}
        self._sel = selector
        self._fork_limit = fork_limit
        self._work_root = work_root
        self._server_pid = server_pid
        self._server_fds = frozenset(server_fds)
        self._answer = answer
        self._on_report = on_report
        self._jobs: dict[int | str, Job] = {}
        self._by_pid: dict[int, Job] = {}
        self._leftover: list[Path] = []
        self._seq = 0
        self._orphan_watch_until = 0.0
        self._next_orphan_scan = 0.0

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, rid: object) -> bool:
        return rid in self._jobs

    def get(self, rid: Any) -> Job | None:
        return self._jobs.get(rid)

    def kill_all(self, reason: str) -> None:
        for job in self._jobs.values():
            job.kill(reason)

    def timeout(self) -> float | None:
        """How long the server's selector may sleep: None when nothing needs watching."""
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

    def step(self) -> None:
        """Reap, enforce deadlines, answer finished evaluations, sweep orphans and leftover
        cgroups (once per turn of the server's loop)."""
        self._reap()
        now = time.monotonic()
        for job in list(self._jobs.values()):
            self._advance(job, now)
        if now < self._orphan_watch_until and now >= self._next_orphan_scan:
            self._next_orphan_scan = now + TICK
            self.kill_orphans()
        self._leftover = [cg for cg in self._leftover if not remove_cgroup_tree(cg, wait=0.0)]

    # -- start -------------------------------------------------------------------------

    def spawn(
        self,
        rid: int | str,
        code: str,
        limits: Limits,
        evaluate: Callable[..., Any],
        env: Mapping[str, str] | None = None,
        *,
        seed: int | None = None,
        report: bool = False,
        forward: bool = False,
    ) -> None:
        """Fork the evaluation of ``code`` as request ``rid`` (``env``: device variables
        set in its process only; ``seed`` passed to ``evaluate``; ``report``: give it a
        ``report`` function, whose reports go to ``on_report`` when ``forward``).

        Raises:
            OSError: no fork, pipe, directory or cgroup; ValueError: ``code`` is not valid
                UTF-8. Nothing is left behind.
        """
        self._seq += 1
        workdir = Path(tempfile.mkdtemp(prefix=f"e{self._seq}-", dir=self._work_root))
        cgroup: Path | None = None
        pipes: list[int] = []
        try:
            (workdir / "program.py").write_text(code, encoding="utf-8")
            cgroup = self._fork_limit.evaluation_cgroup(f"e{self._seq}", limits.max_processes)
            nproc = self._fork_limit.nproc(limits.max_processes)
            for _ in range(4 if report else 3):
                pipes.extend(os.pipe2(os.O_CLOEXEC))
            out_r, out_w, err_r, err_w, res_r, res_w, *rep = pipes
            rep_r, rep_w = rep or (-1, -1)
            if rep:
                # room for a burst of reports while the server is busy: a full pipe drops them
                with contextlib.suppress(OSError):
                    fcntl.fcntl(rep_w, fcntl.F_SETPIPE_SZ, REPORT_PIPE_BYTES)
            # what the child must close: the server's own fds and every evaluation's pipes
            server_fds = {out_r, err_r, res_r, *self._server_fds} | ({rep_r} if rep else set())
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
            remove_tree(workdir)
            raise
        if pid == 0:
            run_child(
                evaluate,
                code=code,
                confinement=self.confinement,
                server_pid=self._server_pid,
                workdir=workdir,
                cgroup=cgroup,
                nproc=nproc,
                limits=limits,
                env=env or {},
                write_ends=(out_w, err_w, res_w, rep_w),
                server_fds=server_fds,
                seed=seed,
            )
        for fd in (out_w, err_w, res_w, rep_w):
            if fd >= 0:
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
            forward=forward,
        )
        sinks = [(out_r, job.out.feed), (err_r, job.err.feed), (res_r, job.result.feed)]
        if rep:
            sinks.append((rep_r, lambda chunk: self._reports(job, chunk)))
        for fd, sink in sinks:
            os.set_blocking(fd, False)
            job.fds.add(fd)
            self._sel.register(fd, selectors.EVENT_READ, self._reader(job, fd, sink))
        self._jobs[rid] = job
        self._by_pid[pid] = job

    def _reports(self, job: Job, chunk: bytes) -> None:
        for step, values in job.reports.feed(chunk):
            if job.forward and self._on_report is not None and job.killed is None:
                self._on_report(job.rid, step, values)

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

    # -- exit --------------------------------------------------------------------------

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
        self.kill_orphans()

    def kill_orphans(self) -> None:
        """SIGKILL the server's children that are not evaluation processes (setsid or
        double-fork escapees reparented to it), except those inside a running evaluation's
        cgroup."""
        protected = set(self._by_pid)
        for job in self._jobs.values():
            if job.cgroup is not None and job.wait_status is None:
                protected.update(cgroup_procs(job.cgroup))
        for pid in children_of(self._server_pid):
            if pid not in protected:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    self.counts["orphans_killed"] += 1

    def _advance(self, job: Job, now: float) -> None:
        if job.wait_status is None:
            if job.killed is None and now >= job.deadline:
                self.counts["timeouts"] += 1
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
                self.counts["leaked_cgroups"] += 1
                self._leftover.append(job.cgroup)
        remove_tree(job.workdir)
        del self._jobs[job.rid]
        self.counts["evaluations"] += 1
        result = build_result(job, now)
        # a stopped run's result is about its curve against one parent; a run that
        # finished before the stop reached it is an ordinary (cacheable) result
        transient = job.killed in TRANSIENT and (job.killed != "stopped" or not result.ok)
        self._answer(job.rid, result, transient)


def remove_tree(path: Path) -> None:
    """``shutil.rmtree`` that also removes what a program left read-only."""
    shutil.rmtree(path, onerror=_force_remove)


def _force_remove(func: Callable[..., Any], path: str, _exc: Any) -> None:
    """rmtree error hook: a program may leave read-only directories behind."""
    with contextlib.suppress(OSError):
        os.chmod(os.path.dirname(path) or ".", 0o700)
        os.chmod(path, 0o700)
        func(path)
