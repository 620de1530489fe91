"""Process plumbing shared by the server and its children: prctl, /proc scans, full writes."""

from __future__ import annotations

import ctypes
import functools
import os
import signal

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def prctl(option: int, arg: int) -> bool:
    """``prctl(option, arg)``; False if it failed or libc has no prctl."""
    libc = _libc()
    if libc is None or not hasattr(libc, "prctl"):
        return False
    ulong = ctypes.c_ulong
    return int(libc.prctl(ctypes.c_int(option), ulong(arg), ulong(0), ulong(0), ulong(0))) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def children_of(ppid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is ``ppid``.

    Scans /proc: ``/proc/PID/task/TID/children`` needs CONFIG_PROC_CHILDREN, often absent.
    """
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces and parentheses, so split after its last ')'
        fields = stat.rsplit(b")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == ppid and fields[0] != b"Z":
            out.append(int(entry.name))
    return out


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the blocking ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
