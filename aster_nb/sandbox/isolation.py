"""How the sandbox server is started: under bubblewrap where it works, else in a bare PID
namespace (``unshare``), else as a plain process, and what to tell the user about it.

bubblewrap (Debian's ``bubblewrap``, what Flatpak uses) gives the server, and so every
evaluation it forks, a world of its own in one ~5 ms launch: the host's filesystem
read-only, private ``/tmp``, ``/dev`` and ``/proc``, no network unless the task asks for
it, and its own user, PID, IPC and UTS namespaces. The server keeps capabilities only
inside that user namespace, to give each evaluation its own namespaces in turn
(:mod:`aster_nb.sandbox.confine`); the evaluation then drops them all. Writable inside:
the private ``/tmp``, the ``pids`` cgroup mounts (the server caps each evaluation's
processes there; evaluations see them read-only) and the cgroup lock directory.

The environment is scrubbed before bubblewrap starts (a variable in its own environment
would be readable from its ``/proc/1/environ``).

This module runs in the executor's process, never in the sandbox.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Launcher", "choose_launcher", "warning_for"]

LOCK_DIR_INSIDE = "/tmp/aster_nb-cgroups"
_UNSHARE_FLAGS = ("--pid", "--fork", "--mount-proc", "--kill-child")
_probed: dict[tuple[str, ...], bool] = {}  # per interpreter: a prefix and whether it ran


@dataclass(frozen=True, slots=True)
class Launcher:
    """A command prefix that starts the sandbox server, and what it isolates.

    Attributes:
        kind: ``bubblewrap``, ``unshare`` (PID and mount namespace only) or ``none``.
        prefix: the command to put before the server's own.
        network: whether evaluations can reach the network.
        work_root: where the server keeps per-evaluation directories, as it sees them.
        detail: why a stronger launcher was not used, if it was not.
    """

    kind: str
    prefix: tuple[str, ...]
    network: bool
    work_root: str
    detail: str = ""


def _cgroup_mounts() -> list[str]:
    """The host's cgroup mounts that hold a ``pids`` controller (v1) or are cgroup2."""
    out = []
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        fstype, point, options = parts[2], parts[1], parts[3].split(",")
        if (fstype == "cgroup" and "pids" in options) or fstype == "cgroup2":
            out.append(point)
    return out


def bubblewrap_command(
    exe: str,
    *,
    network: bool,
    lock_dir: Path | None,
    readable: Sequence[str] = (),
    writable: Sequence[str] = (),
) -> tuple[str, ...]:
    """bubblewrap's arguments for the sandbox server (see the module's docs).

    Args:
        exe: the ``bwrap`` binary.
        network: keep the host's network (else only a loopback of its own).
        lock_dir: the host's cgroup lock directory, bound read-write.
        readable: paths the server must read that the private ``/tmp`` would hide (the
            evaluator's folder, this package, the interpreter, when they live in /tmp).
        writable: paths bound read-write (a task's declared output folders).
    """
    args = [
        exe,
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        *([] if network else ["--unshare-net"]),
        "--die-with-parent",
        "--as-pid-1",
        "--new-session",
        "--ro-bind", "/", "/",
        "--tmpfs", "/tmp",
        "--proc", "/proc",
        "--dev", "/dev",
    ]  # fmt: skip
    for point in _cgroup_mounts():
        args += ["--bind", point, point]
    for path in _under_tmp(readable):
        args += ["--ro-bind", path, path]
    if lock_dir is not None:
        args += ["--bind", str(lock_dir), LOCK_DIR_INSIDE]
    for path in writable:
        args += ["--bind", path, path]
    # capabilities live in bubblewrap's user namespace only: the server needs them to give
    # each evaluation its own namespaces; evaluations drop them (aster_nb.sandbox.confine)
    args += ["--cap-add", "ALL", "--chdir", "/tmp", "--setenv", "TMPDIR", "/tmp", "--"]
    return tuple(args)


def _under_tmp(paths: Sequence[str]) -> list[str]:
    """The paths the private /tmp would hide, outermost first, without duplicates."""
    out: list[str] = []
    for path in sorted({os.path.realpath(p) for p in paths}):
        hidden = (path + "/").startswith("/tmp/") and path != "/tmp"
        if hidden and not any((path + "/").startswith(o + "/") for o in out):
            out.append(path)
    return out


async def _runs(prefix: tuple[str, ...]) -> bool:
    if prefix not in _probed:
        try:
            proc = await asyncio.create_subprocess_exec(
                *prefix,
                "true",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            _probed[prefix] = await asyncio.wait_for(proc.wait(), 10) == 0
        except (OSError, TimeoutError):
            _probed[prefix] = False
    return _probed[prefix]


async def choose_launcher(
    *,
    isolate: bool | str | None,
    network: bool,
    lock_dir: Path | None,
    host_tmp: str,
    readable: Sequence[str] = (),
) -> Launcher:
    """The strongest launcher that runs here.

    Args:
        isolate: ``None``: the strongest available; ``True``: bubblewrap or nothing;
            ``False``: a plain process; ``"pid-namespace"``: ``unshare`` only (the
            isolation of earlier versions). The last two are for tests that show what
            full isolation prevents.
        network: the task asked for network access.
        lock_dir: the host's cgroup lock directory, shared with the server.
        host_tmp: the host's temp dir (the work root without bubblewrap).
        readable: paths the server must be able to read (see :func:`bubblewrap_command`).

    Raises:
        RuntimeError: ``isolate=True`` and bubblewrap does not work here.
    """
    if isolate is False:
        return Launcher("none", (), True, host_tmp, "isolation turned off (isolate=False)")
    unshare = shutil.which("unshare")
    if isolate == "pid-namespace":
        if unshare is None or not await _runs(prefix := (unshare, *_UNSHARE_FLAGS)):
            raise RuntimeError("sandbox server did not start: no working `unshare --pid`")
        return Launcher("unshare", prefix, True, host_tmp, "PID namespace only (requested)")
    notes = []
    exe = shutil.which("bwrap")
    if exe is None:
        notes.append("bubblewrap is not installed (Debian: apt-get install bubblewrap)")
    else:
        prefix = bubblewrap_command(exe, network=network, lock_dir=lock_dir, readable=readable)
        if await _runs(prefix):
            return Launcher("bubblewrap", prefix, network, "/tmp")
        notes.append("bubblewrap could not start here (no user namespaces?)")
    if isolate:
        raise RuntimeError(f"sandbox server did not start: isolate=True but {notes[0]}")
    if unshare is not None and await _runs(prefix := (unshare, *_UNSHARE_FLAGS)):
        notes.append("using a PID namespace only: the filesystem and network stay open")
        return Launcher("unshare", prefix, True, host_tmp, "; ".join(notes))
    notes.append("no PID namespace either: programs see this machine's processes")
    return Launcher("none", (), True, host_tmp, "; ".join(notes))


def warning_for(launcher: Launcher, confinement: dict[str, object] | None) -> str | None:
    """One loud sentence when evaluations are less isolated than they should be, else None."""
    missing = []
    if launcher.kind != "bubblewrap":
        missing.append(launcher.detail or "no bubblewrap")
    conf = confinement or {}
    steps = [s for s in ("pid_ns", "mount_ns", "user_ns", "caps", "seccomp") if not conf.get(s)]
    if steps:
        why = conf.get("detail") or "not supported here"
        missing.append(f"per-evaluation {', '.join(steps)} off ({why})")
    if launcher.kind == "bubblewrap" and launcher.network:
        missing.append("evaluations have network access (the task asked for it)")
    if not missing:
        return None
    return (
        "WARNING: the sandbox is not fully isolated, so a hostile program could reach this "
        "machine's files, network or processes: " + "; ".join(missing)
    )


def ensure_lock_dir(path: Path) -> Path | None:
    """Create the host's cgroup lock directory (shared with every server); None if it
    cannot be made."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None
