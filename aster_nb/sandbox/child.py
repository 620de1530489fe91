"""The forked evaluation process: isolate and limit it, run ``evaluate()``, send the result.

Runs in the child right after ``fork()`` and never returns to the server's code: it always
ends in ``os._exit``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from ..task import Limits
from . import confine
from .outcome import MAX_RESULT_BYTES, error_result, format_exception, run_evaluate
from .proc import PR_SET_PDEATHSIG, prctl, write_all
from .report import Reporter

EXIT_SETUP_FAILED = 70


def run_child(
    evaluate: Callable[[str], Any],
    *,
    code: str,
    confinement: confine.Confinement,
    server_pid: int,
    workdir: Path,
    cgroup: Path | None,
    nproc: int | None,
    limits: Limits,
    env: Mapping[str, str],
    write_ends: tuple[int, int, int, int],
    server_fds: set[int],
    seed: int | None = None,
) -> NoReturn:
    """Evaluate ``workdir/program.py`` in this (forked) process, then exit.

    Args:
        evaluate: the task's evaluator.
        code: the program's source (also in ``workdir/program.py``).
        confinement: the steps that make this process a stranger to everything else.
        server_pid: the server's pid (this process dies if it is no longer its parent).
        workdir: the evaluation's private working directory, holding ``program.py``.
        cgroup: the pids cgroup to join, if any.
        nproc: the ``RLIMIT_NPROC`` to set, if any.
        limits: the evaluation's limits.
        env: device variables for this evaluation (the GPUs a scheduler gave it).
        write_ends: this process's ends of the stdout, stderr, result and report pipes
            (the last -1 when ``evaluate`` takes no ``report``).
        server_fds: the server's fds, closed here (the result pipe's write end excepted).
        seed: passed as ``evaluate(..., seed=seed)`` (only when given: the server sends
            one only to an evaluator that takes it).
    """
    me = os.getpid()
    status = EXIT_SETUP_FAILED
    res_w = write_ends[2]
    try:
        try:
            workdir = _setup(
                code,
                confinement,
                server_pid,
                workdir,
                cgroup,
                nproc,
                limits,
                env,
                write_ends,
                server_fds,
            )
        except BaseException as e:
            payload = error_result(
                f"sandbox setup failed in the evaluation process:\n{format_exception(e)}"
            )
        else:
            keywords: dict[str, Any] = {} if seed is None else {"seed": seed}
            if write_ends[3] >= 0:
                os.set_blocking(write_ends[3], False)  # a report never stalls the evaluation
                keywords["report"] = Reporter(write_ends[3])
            payload = run_evaluate(evaluate, str(workdir / "program.py"), **keywords)
        # a process the program forked may return through evaluate(); only the
        # evaluation process itself may answer
        if os.getpid() == me:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(BaseException):
                    stream.flush()
            data = json.dumps(payload, allow_nan=False).encode()
            if len(data) > MAX_RESULT_BYTES:
                data = json.dumps(error_result(f"result too large ({len(data)} bytes)")).encode()
            write_all(res_w, data)
            status = 0
    except BaseException:
        status = EXIT_SETUP_FAILED + 1
    finally:
        os._exit(status)


def _setup(
    code: str,
    conf: confine.Confinement,
    server_pid: int,
    workdir: Path,
    cgroup: Path | None,
    nproc: int | None,
    limits: Limits,
    env: Mapping[str, str],
    write_ends: tuple[int, int, int, int],
    server_fds: set[int],
) -> Path:
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()
    # if the server dies, this process must not outlive it (its descendants are swept
    # by the executor through the cgroup)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # in its own PID namespace the parent is outside it: getppid() is 0
    if os.getppid() != (0 if conf.pid_ns else server_pid):
        os._exit(EXIT_SETUP_FAILED)
    if cgroup is not None:
        (cgroup / "cgroup.procs").write_text("0")  # 0: this process, in any PID namespace
    _redirect_fds(write_ends, server_fds)
    if conf.mount_ns or conf.user_ns or conf.caps or conf.seccomp:
        # the private /tmp gets a copy of program.py; the server's copy is out of sight
        tmp_mb = max(64, 4 * limits.max_file_mb)
        workdir = confine.apply(conf, code=code.encode("utf-8"), tmp_mb=tmp_mb) or workdir
    os.chdir(workdir)
    os.environ.update(env)
    for var in ("HOME", "TMPDIR", "PWD"):
        os.environ[var] = str(workdir)
    tempfile.tempdir = None
    sys.path.insert(0, str(workdir))
    _set_limits(limits, nproc)
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    return workdir


def _redirect_fds(write_ends: tuple[int, int, int, int], server_fds: set[int]) -> None:
    out_w, err_w, res_w, rep_w = write_ends
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    # close the server's fds (response channel, selector, every evaluation's pipes) so
    # the program cannot answer for the server or read another evaluation's result;
    # res_w (and rep_w) stay, close-on-exec, so programs it execs do not get them either
    for fd in {devnull, out_w, err_w, *server_fds} - {0, 1, 2, res_w, rep_w}:
        with contextlib.suppress(OSError):
            os.close(fd)


def _set_limits(limits: Limits, nproc: int | None) -> None:
    mib = 1024 * 1024
    cpu = max(1, math.ceil(limits.cpu))
    wanted = [
        (resource.RLIMIT_AS, limits.memory_mb * mib, limits.memory_mb * mib),
        # SIGXCPU at the soft limit, SIGKILL one second later if it is caught
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_FSIZE, limits.max_file_mb * mib, limits.max_file_mb * mib),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if nproc is not None:
        wanted.append((resource.RLIMIT_NPROC, nproc, nproc))
    for which, soft, hard in wanted:
        _, cur_hard = resource.getrlimit(which)
        if cur_hard != resource.RLIM_INFINITY:
            hard = min(hard, cur_hard)
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))
