"""The fork server: one selector loop that takes requests and answers them.

The loop watches stdin (requests, :mod:`~aster_nb.sandbox.protocol`), every running
evaluation's pipes (:mod:`~aster_nb.sandbox.evaluations`, which owns each evaluation's
life), a SIGCHLD wake-up pipe and the deadlines. What it loads before the first fork is in
:mod:`~aster_nb.sandbox.loader`.
"""

from __future__ import annotations

import contextlib
import gc
import os
import selectors
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..program import EvalResult, Status
from ..task import Limits, TaskError
from . import confine
from .evaluations import Evaluations, remove_tree
from .forklimit import ForkLimit, release_cgroup_root
from .loader import Loaded, load
from .outcome import KILL_MESSAGES, format_exception
from .proc import PR_SET_CHILD_SUBREAPER, prctl, signal_name, write_all
from .protocol import (
    PROTOCOL_VERSION,
    Kind,
    Op,
    check_device_env,
    check_seed,
    decode,
    encode,
    error_message,
    result_message,
)


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
        self.launcher = launcher
        self.network = network
        self.pid = os.getpid()
        self.subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1)
        self.loaded = Loaded(confinement=confinement)
        self._stop: str | None = None
        self._stdin_buf = bytearray()
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.jobs = Evaluations(
            selector=self._sel,
            fork_limit=fork_limit,
            work_root=work_root,
            confinement=confinement,
            server_pid=self.pid,
            server_fds=(out_fd, self._wake_r, self._wake_w, self._sel.fileno()),
            answer=self._answer,
            on_report=self._report,
        )

    @property
    def confinement(self) -> confine.Confinement:
        """What each evaluation gets (what was asked for until :meth:`load` probes it)."""
        return self.jobs.confinement

    # -- startup -----------------------------------------------------------------------

    def load(self) -> None:
        """Import the preload modules and the evaluator (errors are reported, not raised)."""
        self.loaded = load(self.evaluator_path, self.preload, self.confinement)
        self.jobs.confinement = self.loaded.confinement
        # children then share these objects copy-on-write: the GC never touches them again
        gc.collect()
        gc.freeze()

    def hello(self) -> dict[str, Any]:
        return {
            "type": Kind.HELLO,
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
            "evaluator_error": self.loaded.import_error,
            "evaluator_accepts": sorted(self.loaded.accepts),
            "preload": self.loaded.timings,
            "preload_errors": self.loaded.preload_errors,
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
                self.jobs.kill_all("shutdown")
                if not self.jobs:
                    break
            for key, _ in self._sel.select(self.jobs.timeout()):
                key.data()
            self.jobs.step()

    def cleanup(self) -> None:
        """Remove the server's cgroup and working directories (after :meth:`serve`)."""
        self.jobs.kill_all("shutdown")
        self.jobs.kill_orphans()
        if self.fork_limit.root is not None:
            release_cgroup_root(self.fork_limit.root)
        remove_tree(self.work_root)

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the selector
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        self._stop = signal_name(signum)

    def _on_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def _send(self, message: dict[str, Any]) -> None:
        try:
            write_all(self.out_fd, encode(message))
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
            msg = decode(line)
        except ValueError as e:
            self._send(error_message(f"bad request line: {e}"))
            return
        try:
            self._dispatch(msg)
        except Exception as e:  # one bad request must not take the server down
            self._send(error_message(format_exception(e, 6), id=msg.get("id")))

    def _dispatch(self, msg: dict[str, Any]) -> None:
        op = msg.get("op", Op.EVAL)
        if op == Op.EVAL:
            self._start(msg)
        elif op in (Op.CANCEL, Op.STOP):
            job = self.jobs.get(msg.get("id"))
            # a stop that comes after the run ended changes nothing
            if job is not None and (op == Op.CANCEL or job.wait_status is None):
                job.kill("cancelled" if op == Op.CANCEL else "stopped")
        elif op == Op.STATS:
            self._send(
                {
                    "type": Kind.STATS,
                    "in_flight": len(self.jobs),
                    **self.jobs.counts,
                    "fork_limit": self.fork_limit.kind,
                }
            )
        elif op == Op.SHUTDOWN:
            self._stop = "shutdown requested"
        else:
            *first, last = (o.value for o in Op)
            expected = f"{', '.join(first)} or {last}"
            self._send(error_message(f"unknown op {op!r}; expected {expected}"))

    def _answer(self, rid: int | str, result: EvalResult, transient: bool) -> None:
        self._send(result_message(rid, result, transient=transient))

    def _report(self, rid: int | str, step: int, values: dict[str, float]) -> None:
        self._send({"type": Kind.PROGRESS, "id": rid, "step": step, "values": values})

    def _start(self, msg: dict[str, Any]) -> None:
        rid = msg.get("id")
        if not isinstance(rid, int | str) or isinstance(rid, bool) or rid in self.jobs:
            self._send(error_message("request needs a unique int or str 'id'", id=rid))
            return
        code = msg.get("code")
        if not isinstance(code, str):
            self._answer(
                rid, EvalResult(Status.ERROR, error="request 'code' must be a string"), True
            )
            return
        try:
            limits = Limits(**(msg.get("limits") or {}))
        except (TypeError, TaskError) as e:
            self._answer(rid, EvalResult(Status.ERROR, error=f"bad limits: {e}"), True)
            return
        try:
            env = check_device_env(msg.get("env"))
            seed = check_seed(msg.get("seed"))
        except ValueError as e:
            self._answer(rid, EvalResult(Status.ERROR, error=f"bad request: {e}"), True)
            return
        evaluate, import_error = self.loaded.evaluate, self.loaded.import_error
        if import_error is not None or evaluate is None:
            self._answer(rid, EvalResult(Status.ERROR, error=import_error or "no evaluator"), False)
            return
        if self._stop:
            self._answer(rid, EvalResult(Status.ERROR, error=KILL_MESSAGES["shutdown"]), True)
            return
        try:
            accepts = self.loaded.accepts
            self.jobs.spawn(
                rid,
                code,
                limits,
                evaluate,
                env,
                seed=seed if "seed" in accepts else None,
                report="report" in accepts,
                forward=msg.get("progress") is True,
            )
        except (OSError, ValueError) as e:  # ValueError: code that is not valid UTF-8
            error = f"sandbox could not start the evaluation: {e}"
            self._answer(rid, EvalResult(Status.ERROR, error=error), True)
