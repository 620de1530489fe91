"""Thin ctypes wrappers over the Linux calls the confinement needs (Python 3.11's ``os``
has no ``unshare``, ``setns``, ``mount`` or capability calls)."""

from __future__ import annotations

import ctypes
import functools
import os
import platform

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

_PR_CAPBSET_DROP = 24
_PR_SET_SECUREBITS = 28
_PR_SET_DUMPABLE = 4
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
# NOROOT, NO_SETUID_FIXUP and KEEP_CAPS, each with its lock: uid 0 gains nothing by exec
_SECUREBITS_LOCKED = 0x01 | 0x02 | 0x04 | 0x08 | 0x20
_CAPABILITY_VERSION_3 = 0x20080522
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}


class LinuxError(OSError):
    """A confinement step the kernel refused; the message names the step."""


@functools.cache
def libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise LinuxError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    check(libc().unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def setns(fd: int, nstype: int) -> None:
    check(libc().setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns({nstype:#x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    enc = [None if s is None else s.encode() for s in (source, target, fstype)]
    check(
        libc().mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), data.encode() or None),
        f"mount {target}",
    )


def remount_readonly(path: str) -> None:
    """Make the mount at ``path`` read-only, keeping the flags the kernel locked on it
    (a mount inherited from a more privileged namespace keeps nosuid/nodev/noexec)."""
    st = os.statvfs(path)
    kept = st.f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)


def bind_readonly(path: str) -> None:
    mount(path, path, None, MS_BIND | MS_REC)
    remount_readonly(path)


def set_dumpable(on: bool) -> None:
    check(libc().prctl(_PR_SET_DUMPABLE, ctypes.c_ulong(int(on)), 0, 0, 0), "dumpable")


def _permitted_capabilities() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapPrm:"):
                return int(line.split()[1], 16)
    return -1


@functools.cache
def last_capability() -> int:
    """The highest capability number this kernel knows (read once, before any fork)."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def drop_capabilities() -> None:
    """Leave this process with no capabilities and no way to get any back by ``exec``:
    locked securebits, an empty bounding set, no ambient, permitted, effective or
    inheritable capabilities."""
    lib, ulong = libc(), ctypes.c_ulong
    if lib.prctl(_PR_SET_SECUREBITS, ulong(_SECUREBITS_LOCKED), 0, 0, 0) == 0:
        for cap in range(last_capability() + 1):
            check(lib.prctl(_PR_CAPBSET_DROP, ulong(cap), 0, 0, 0), f"drop capability {cap}")
    elif _permitted_capabilities() != 0:
        check(-1, "securebits")
    # else: an ordinary user's process, with nothing to drop; no_new_privs (set with the
    # seccomp filter) keeps setuid programs from granting any
    check(lib.prctl(_PR_CAP_AMBIENT, ulong(_PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0), "ambient")
    header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable; two 32-bit words
    number = _SYS_CAPSET.get(platform.machine())
    if number is None:
        raise LinuxError(f"no capset syscall number for {platform.machine()!r}")
    check(lib.syscall(ctypes.c_long(number), header, data), "capset")
