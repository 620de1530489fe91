"""Run a function in a forked process that can open no file and start no process, and take
back only arrays of numbers.

The protein program runs in the evaluator's process, inside the sandbox, where the host's
filesystem is readable: without more, it could open the assay files and read the labels.
:func:`run_guarded` forks; the child closes every file descriptor but stdout, stderr and
its answer pipe, sets ``no_new_privs`` and loads a seccomp filter that refuses ``open``,
``openat``, ``openat2``, ``creat`` (``EACCES``), ``execve``, ``execveat``, ``fork``,
``vfork``, ``clone``, ``socket``, ``ptrace``, ``process_vm_readv`` and the calls that turn a
handle or a mount into a file descriptor (``EPERM``; ``clone3`` answers ``ENOSYS``, so libc
falls back to ``clone``); then it calls the function. Whatever the function does, it can only
use what is already in its memory (the evaluator puts no labels there) and write to the
pipe. The parent reads a bounded answer: a JSON header and raw float64 bytes, never a
pickle, so nothing the child sends can run code in the parent.

A machine where the filter cannot be loaded (not Linux, an unknown architecture, seccomp
off) makes :func:`run_guarded` raise: the program is not run unguarded.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import platform
import resource
import signal
import struct
import sys
import traceback
from collections.abc import Callable

import numpy as np

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
_MAX_HEADER = 1 << 20


class GuardUnavailable(RuntimeError):
    """The seccomp filter cannot be loaded here."""


def _filter() -> bytes:
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


def _install(program: bytes) -> None:
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


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)  # PDEATHSIG


def _send(fd: int, header: dict, payload: bytes = b"") -> None:
    head = json.dumps(header).encode()
    data = struct.pack("=Q", len(head)) + head + payload
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _child(fn: Callable[[], list[np.ndarray]], w: int, program: bytes) -> None:
    _die_with_parent()
    os.closerange(3, w)  # everything but stdin (/dev/null), stdout, stderr and the answer
    top = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    os.closerange(w + 1, top if 0 < top <= 1 << 20 else 1 << 20)
    _install(program)
    try:
        out = [np.ascontiguousarray(a, dtype=np.float64).ravel() for a in fn()]
    except BaseException:
        _flush()
        _send(w, {"ok": False, "error": traceback.format_exc(limit=-8)[-6000:]})
        return
    _flush()
    _send(w, {"ok": True, "sizes": [a.size for a in out]}, b"".join(a.tobytes() for a in out))


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()


def run_guarded(fn: Callable[[], list[np.ndarray]], max_values: int) -> list[np.ndarray]:
    """Call ``fn`` in a guarded child (see the module) and return its arrays (float64).

    Raises:
        GuardUnavailable: the filter cannot be loaded here (nothing was run).
        RuntimeError: ``fn`` raised (with its traceback), or the child died or answered
            something that is not a well-formed answer of at most ``max_values`` numbers.
    """
    program = _filter()
    r, w = os.pipe()
    try:
        pid = os.fork()
    except BaseException:
        os.close(r)
        os.close(w)
        raise
    if pid == 0:  # the child: never returns
        status = 0
        try:
            os.close(r)
            _child(fn, w, program)
        except GuardUnavailable as e:
            with contextlib.suppress(BaseException):
                _send(w, {"ok": False, "guard": str(e)})
            status = 3
        except BaseException:
            status = 4
        finally:
            os._exit(status)
    os.close(w)
    try:
        data = _read_all(r, 8 + _MAX_HEADER + 8 * max_values)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    return _decode(data, status, max_values)


def _read_all(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise RuntimeError(f"the program's process sent more than {limit} bytes")
    return b"".join(chunks)


def _decode(data: bytes, status: int, max_values: int) -> list[np.ndarray]:
    if len(data) < 8:
        how = (
            f"was killed by signal {os.WTERMSIG(status)}"
            if os.WIFSIGNALED(status)
            else f"exited with status {os.waitstatus_to_exitcode(status)}"
        )
        raise RuntimeError(f"the program's process {how} before answering")
    (n,) = struct.unpack("=Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise RuntimeError("the program's process sent a malformed answer")
    header = json.loads(data[8 : 8 + n])
    if not isinstance(header, dict):
        raise RuntimeError("the program's process sent a malformed answer")
    if "guard" in header:
        raise GuardUnavailable(str(header["guard"]))
    if not header.get("ok"):
        raise RuntimeError(f"the program raised:\n{header.get('error', '')}")
    sizes = header.get("sizes")
    payload = data[8 + n :]
    if (
        not isinstance(sizes, list)
        or not all(isinstance(s, int) and s >= 0 for s in sizes)
        or sum(sizes) > max_values
        or 8 * sum(sizes) != len(payload)
    ):
        raise RuntimeError("the program's process sent a malformed answer")
    flat = np.frombuffer(payload, dtype=np.float64)
    return list(np.split(flat, np.cumsum(sizes)[:-1])) if sizes else []
