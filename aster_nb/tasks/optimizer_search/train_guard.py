"""The seccomp filter ``optimizer_search``'s training child loads: no ``open``, ``openat``,
``openat2``, ``creat`` (``EACCES``), ``execve``, ``fork``, ``vfork``, ``clone`` (so no thread
either), ``socket``, ``ptrace``, ``process_vm_readv`` and the calls that turn a handle or a
mount into a file descriptor (``EPERM``; ``clone3`` answers ``ENOSYS``).

The same filter as ``protein_scoring``'s ``protein_guard`` (kept in step with it; a task
folder is shipped to a Ray node alone, so it cannot import a sibling task's module): there
the child answers once, here it streams training losses while it runs (``evaluator.py``).
A machine where the filter cannot be loaded makes :func:`filter_program` or :func:`install`
raise :class:`GuardUnavailable`: the program is not run unguarded.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import signal
import struct

_EACCES = ("open", "openat", "openat2", "creat")
_EPERM = (
    "execve", "execveat", "fork", "vfork", "clone", "socket", "socketpair", "ptrace",
    "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd",
    "open_by_handle_at", "name_to_handle_at", "open_tree", "fsopen", "fspick", "uselib",
    "io_uring_setup", "bpf", "userfaultfd", "memfd_create",
)  # fmt: skip
# syscall numbers: arch/x86/entry/syscalls/syscall_64.tbl; include/uapi/asm-generic/unistd.h
_X86_64 = {
    "open": 2, "openat": 257, "openat2": 437, "creat": 85, "execve": 59, "execveat": 322,
    "fork": 57, "vfork": 58, "clone": 56, "clone3": 435, "socket": 41, "socketpair": 53,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_open": 434,
    "pidfd_getfd": 438, "open_by_handle_at": 304, "name_to_handle_at": 303, "open_tree": 428,
    "fsopen": 430, "fspick": 433, "uselib": 134, "io_uring_setup": 425, "bpf": 321,
    "userfaultfd": 323, "memfd_create": 319,
}  # fmt: skip
_AARCH64 = {
    "openat": 56, "openat2": 437, "execve": 221, "execveat": 281, "clone": 220,
    "clone3": 435, "socket": 198, "socketpair": 199, "ptrace": 117, "process_vm_readv": 270,
    "process_vm_writev": 271, "pidfd_open": 434, "pidfd_getfd": 438,
    "open_by_handle_at": 265, "name_to_handle_at": 264, "open_tree": 428, "fsopen": 430,
    "fspick": 433, "io_uring_setup": 425, "bpf": 280, "userfaultfd": 282, "memfd_create": 279,
}  # fmt: skip
_ARCHES = {"x86_64": (0xC000003E, _X86_64, True), "aarch64": (0xC00000B7, _AARCH64, False)}


class GuardUnavailable(RuntimeError):
    """The seccomp filter cannot be loaded here."""


def filter_program() -> bytes:
    """The BPF program of the filter, for this machine's architecture."""
    machine = platform.machine()
    if machine not in _ARCHES:
        raise GuardUnavailable(f"no syscall table for {machine!r}; known: {sorted(_ARCHES)}")
    arch, table, x32 = _ARCHES[machine]
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    code: list[tuple[int, int, int, int]] = [(ld, 0, 0, 4)]  # seccomp_data.arch
    rules = [(table[n], 0x00050000 | errno.EACCES) for n in _EACCES if n in table]
    rules += [(table[n], 0x00050000 | errno.EPERM) for n in _EPERM if n in table]
    rules.append((table["clone3"], 0x00050000 | errno.ENOSYS))
    tail = 2 * len(rules) + (2 if x32 else 1)  # instructions from after the arch check to "kill"
    code.append((jeq, 0, tail + 1, arch))
    code.append((ld, 0, 0, 0))  # seccomp_data.nr
    if x32:
        code.append((jge, 2 * len(rules) + 1, 0, 0x40000000))
    for nr, action in rules:
        code.append((jeq, 0, 1, nr))
        code.append((ret, 0, 0, action))
    code.append((ret, 0, 0, 0x7FFF0000))  # allow
    code.append((ret, 0, 0, 0x80000000))  # kill the process: another ABI
    return b"".join(struct.pack("=HBBI", op, jt, jf, k) for op, jt, jf, k in code)


def install(program: bytes) -> None:
    """Set ``no_new_privs`` and load ``program`` into this process (for good)."""

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(program, len(program))
    prog = Prog(len(program) // 8, ctypes.addressof(buf))
    ul = ctypes.c_ulong
    if libc.prctl(38, ul(1), ul(0), ul(0), ul(0)) != 0:  # PR_SET_NO_NEW_PRIVS
        raise GuardUnavailable(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
    if libc.prctl(22, ul(2), ctypes.byref(prog), ul(0), ul(0)) != 0:  # PR_SET_SECCOMP, FILTER
        raise GuardUnavailable(f"seccomp filter: {os.strerror(ctypes.get_errno())}")


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies (a timed-out evaluation)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)  # PDEATHSIG
