"""Per-evaluation confinement: what a forked evaluation does to itself before the program
runs, so that even as root it cannot undo its sandbox.

Two layers, because each is good at one thing:

* **bubblewrap around the server** (:mod:`aster_nb.sandbox.isolation`) builds the world once
  per server: the host's filesystem read-only, a private ``/tmp``, ``/dev`` and ``/proc``,
  no network (unless the task opts in), its own user, PID, IPC and UTS namespaces. It is the
  tool Flatpak relies on, audited and small; redoing its mount setup per evaluation would
  cost far more than the 15 ms an evaluation may spend on overhead.
* **the kernel's own calls in each forked child** (this module) make every evaluation a
  stranger to its neighbours and to the server, at about a millisecond: its own PID
  namespace (made by the server just before ``fork``, so the child is its PID 1: when it
  exits the kernel kills everything it started, and ``kill -9 -1`` reaches only its own
  processes), its own mount and IPC namespaces with a fresh ``/tmp`` (its working
  directory; nothing survives to the next evaluation) and a fresh ``/proc`` showing only
  itself, the cgroup hierarchy read-only, its own user namespace, then no capabilities in
  any set, locked securebits, ``no_new_privs`` and a seccomp filter
  (:mod:`aster_nb.sandbox.seccomp`) that refuses ``mount``, ``umount2``, ``unshare``,
  ``setns``, ``ptrace`` and the rest. A child that cannot complete a step it was asked for
  fails its evaluation instead of running unconfined.

Which steps a server can apply is probed once at start (:func:`probe`), by a child that
applies them and then tries to unmount ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from . import linux, seccomp

#: mounts that stay read-only under the fresh /proc (they change the host, not the process)
_PROC_READONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")
_CGROUP_ROOT = "/sys/fs/cgroup"
_TMP = "/tmp"


@dataclass(frozen=True, slots=True)
class Confinement:
    """The confinement steps a server applies to each evaluation.

    Attributes:
        pid_ns: the evaluation is PID 1 of its own PID namespace.
        mount_ns: own mount and IPC namespaces, a fresh ``/tmp`` and ``/proc``, cgroups
            read-only.
        user_ns: own user namespace.
        caps: every capability dropped, securebits locked.
        seccomp: ``no_new_privs`` and the seccomp filter.
        detail: why a step is off, if one is.
    """

    pid_ns: bool = False
    mount_ns: bool = False
    user_ns: bool = False
    caps: bool = False
    seccomp: bool = False
    detail: str = ""

    @property
    def complete(self) -> bool:
        return self.pid_ns and self.mount_ns and self.user_ns and self.caps and self.seccomp

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


NONE = Confinement(detail="confinement disabled")


def apply(conf: Confinement, *, code: bytes, tmp_mb: int) -> Path | None:
    """Confine this (freshly forked) process as ``conf`` says; returns its new working
    directory (None without a mount namespace: the server's stays). Irreversible; raises :class:`~aster_nb.sandbox.linux.LinuxError` on the
    first step the kernel refuses.

    Args:
        conf: the steps to apply.
        code: the program's source, written to ``program.py`` in the new working directory.
        tmp_mb: size of the private ``/tmp`` (memory-backed), MiB.
    """
    workdir = None
    if conf.mount_ns:
        workdir = Path(_TMP)
        linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWIPC)
        # nothing mounted here may propagate back to the server's view
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        # what the server reads from under /tmp (a checkout or a task folder there) is
        # bound again on top of the fresh /tmp, read-only
        kept = [(path, os.open(path, os.O_PATH | os.O_CLOEXEC)) for path in _tmp_mounts()]
        for point in (_TMP, "/dev/shm"):  # nothing written survives to the next evaluation
            if point == _TMP or os.path.isdir(point):
                linux.mount(
                    "tmpfs",
                    point,
                    "tmpfs",
                    linux.MS_NOSUID | linux.MS_NODEV,
                    f"size={tmp_mb}m,mode=1777",
                )
        for path, fd in kept:
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.makedirs(path, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                open(path, "ab").close()
            linux.mount(f"/proc/self/fd/{fd}", path, None, linux.MS_BIND | linux.MS_REC)
            linux.remount_readonly(path)
            os.close(fd)
        if conf.pid_ns:
            linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
            for path in _PROC_READONLY:
                if os.path.exists(path):
                    linux.bind_readonly(path)
        for mount_point in _cgroup_mounts():
            linux.remount_readonly(mount_point)
        (workdir / "program.py").write_bytes(code)
    if conf.user_ns:
        linux.unshare(linux.CLONE_NEWUSER)
    if conf.caps:
        linux.drop_capabilities()
    if conf.seccomp:
        seccomp.install(_filter())
    with contextlib.suppress(OSError):
        linux.set_dumpable(False)  # /proc/<pid>/mem and environ: owner-only, no ptrace
    return workdir


_FILTER: bytes | None = None


def _filter() -> bytes:
    global _FILTER
    if _FILTER is None:
        _FILTER = seccomp.filter_program()
    return _FILTER


_CGROUP_MOUNTS: list[str] | None = None
_TMP_MOUNTS: list[str] | None = None
#: the server's cgroup lock directory: bound under /tmp for the server, never for evaluations
_LOCK_DIR = "/tmp/aster_nb-cgroups"


def _mount_table() -> list[list[str]]:
    with open("/proc/self/mounts") as f:
        return [line.split() for line in f]


def _tmp_mounts() -> list[str]:
    """Mounts below /tmp, outermost first (read once, before the first fork)."""
    global _TMP_MOUNTS
    if _TMP_MOUNTS is None:
        points = sorted({r[1] for r in _mount_table() if len(r) >= 2})
        _TMP_MOUNTS = [
            p
            for p in points
            if p.startswith(_TMP + "/") and not (p + "/").startswith(_LOCK_DIR + "/")
        ]
    return _TMP_MOUNTS


def _cgroup_mounts() -> list[str]:
    """Writable cgroup mounts: the server needs them, the evaluation must not have them
    (read once, before the first fork: a child's mount table starts as a copy)."""
    global _CGROUP_MOUNTS
    if _CGROUP_MOUNTS is None:
        rows = _mount_table()
        _CGROUP_MOUNTS = [
            r[1]
            for r in rows
            if len(r) >= 4
            and r[2] in ("cgroup", "cgroup2")
            and r[1].startswith(_CGROUP_ROOT)
            and "rw" in r[3].split(",")
        ]
    return _CGROUP_MOUNTS


def prepare() -> None:
    """Compute what children need before the first fork (the filter, the capability
    count), so each child does not."""
    _filter()
    _cgroup_mounts()
    _tmp_mounts()
    linux.last_capability()


def probe(want: Confinement) -> Confinement:
    """The strongest part of ``want`` this server can apply: children try it, then try to
    mount something (which must fail). Without the privilege for namespaces (an ordinary
    user with no bubblewrap) the capability drop and the seccomp filter still hold; the
    reason for each step given up is in ``detail``."""
    fallbacks = [
        want,
        replace(want, user_ns=False),  # some kernels refuse nested user namespaces
        replace(want, pid_ns=False, mount_ns=False, user_ns=False),
    ]
    notes: list[str] = []
    for conf in dict.fromkeys(fallbacks):
        if not (conf.pid_ns or conf.mount_ns or conf.user_ns or conf.caps or conf.seccomp):
            continue
        error = _try(conf)
        if error is None:
            return replace(conf, detail="; ".join(notes))
        notes.append(f"{_describe(conf)} failed: {error}")
    return Confinement(detail="; ".join(notes) or "nothing to apply")


def _describe(conf: Confinement) -> str:
    steps = [s for s in ("pid_ns", "mount_ns", "user_ns", "caps", "seccomp") if getattr(conf, s)]
    return "+".join(steps)


def _try(conf: Confinement) -> str | None:
    """Apply ``conf`` in a throwaway child; None if it held, else what went wrong."""
    r, w = os.pipe()
    pid = -1
    pidns_fd = None
    try:
        pidns_fd = enter_pid_namespace() if conf.pid_ns else None
        pid = os.fork()
    except OSError as e:
        os.close(r)
        os.close(w)
        return str(e)
    finally:
        if pidns_fd is not None and pid != 0:
            leave_pid_namespace(pidns_fd)
    if pid == 0:  # pragma: no cover - runs in the forked child
        if pidns_fd is not None:
            os.close(pidns_fd)
        os.close(r)
        msg = b""
        try:
            apply(conf, code=b"", tmp_mb=1)
            if conf.caps or conf.seccomp:
                try:
                    linux.mount(None, "/proc", None, 0)  # any mount call must now fail
                    msg = b"mount still allowed after confinement"
                except OSError:
                    pass
        except BaseException as e:
            msg = str(e).encode()[:500] or repr(e).encode()[:500]
        os.write(w, msg)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode("utf-8", "replace")
    os.waitpid(pid, 0)
    return msg or None


def enter_pid_namespace() -> int:
    """Make this process's next child PID 1 of a new PID namespace; returns the fd that
    :func:`leave_pid_namespace` needs to put later children back in ours."""
    fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.unshare(linux.CLONE_NEWPID)
    except OSError:
        os.close(fd)
        raise
    return fd


def leave_pid_namespace(fd: int) -> None:
    try:
        linux.setns(fd, 0)
    finally:
        os.close(fd)
