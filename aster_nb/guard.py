"""Run a task's program where it cannot reach what its evaluator keeps from it.

For evaluators: they run in the sandbox, where ``aster_nb`` is importable (on a Ray node
too). The sandbox keeps a program from the machine; it does not keep it from the evaluator,
which runs in the same process and may hold what the score is computed from.
``protein_scoring`` keeps the assays' labels from the program that predicts them,
``optimizer_search`` the validation split from the optimizer trained on the rest.

:func:`run_guarded` forks. The child closes every file descriptor but stdin, stdout, stderr
and its answer pipe, asks to die with its parent, sets ``no_new_privs`` and loads a seccomp
filter (:data:`REFUSED`): no ``open``, ``openat``, ``openat2``, ``creat`` (``EACCES``), no
``execve``, ``fork``, ``vfork``, ``clone`` (so no thread either), no socket, no ``ptrace``
or reading another process's memory, none of the calls that turn a handle or a mount into
a file descriptor (``EPERM``); ``clone3`` answers ``ENOSYS``. Then it calls the function,
which can use only what is already in its memory and write frames to the pipe: a JSON
header and raw bytes, never a pickle, so nothing the child sends can run code in the
parent, and every frame is bounded. A machine where the filter cannot be loaded (not
Linux, an unknown architecture, seccomp off) raises :class:`GuardUnavailable`: the
program is never run unguarded.

What the evaluator must do itself: load nothing secret before the fork that it would not
show the program (open a file descriptor and read it after the child answers, as both
built-in tasks do: the child closes it), and compute the score from the child's numbers
in its own process.

References: ``seccomp(2)``; ``Documentation/userspace-api/seccomp_filter.rst``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import linecache
import os
import platform
import resource
import signal
import struct
import sys
import traceback
import types
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "REFUSED",
    "GuardUnavailable",
    "ProgramFailed",
    "filter_program",
    "load_program",
    "run_guarded",
]

_EPERM = (
    "execve", "execveat", "fork", "vfork", "clone", "socket", "socketpair", "ptrace",
    "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd",
    "open_by_handle_at", "name_to_handle_at", "open_tree", "fsopen", "fspick", "uselib",
    "io_uring_setup", "bpf", "userfaultfd", "memfd_create",
)  # fmt: skip
#: system calls the guarded child is refused, with the errno it gets
REFUSED: dict[str, int] = {
    **dict.fromkeys(("open", "openat", "openat2", "creat"), errno.EACCES),
    **dict.fromkeys(_EPERM, errno.EPERM),
    "clone3": errno.ENOSYS,  # its flags live in memory a filter cannot read: libc falls back
}
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
# (audit arch, table, whether x32 numbers must be refused: another ABI bypasses the table)
_ARCHES = {"x86_64": (0xC000003E, _X86_64, True), "aarch64": (0xC00000B7, _AARCH64, False)}
_MAX_HEADER = 1 << 20
Send = Callable[..., None]


class GuardUnavailable(RuntimeError):
    """The seccomp filter cannot be loaded here; nothing was run."""


class ProgramFailed(RuntimeError):
    """The guarded function raised, or its process died or answered out of bounds.

    Attributes:
        kind: the name of the exception the function raised (``""``: it raised nothing,
            the process failed), so an evaluator can tell its own rule errors apart.
        detail: that exception's message.
    """

    def __init__(self, message: str, kind: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.kind, self.detail = kind, detail


def filter_program(machine: str | None = None) -> bytes:
    """The filter as ``struct sock_filter`` instructions for ``machine`` (default: this one).

    Raises:
        GuardUnavailable: no syscall table for that architecture.
    """
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        raise GuardUnavailable(f"no syscall table for {machine!r}; known: {sorted(_ARCHES)}")
    arch, table, x32 = _ARCHES[machine]
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    rules = [(table[n], 0x00050000 | e) for n, e in REFUSED.items() if n in table]
    tail = 2 * len(rules) + (2 if x32 else 1)  # instructions after the arch check to "kill"
    code = [(ld, 0, 0, 4), (jeq, 0, tail + 1, arch), (ld, 0, 0, 0)]  # arch, then nr
    if x32:
        code.append((jge, 2 * len(rules) + 1, 0, 0x40000000))
    for nr, action in rules:
        code += [(jeq, 0, 1, nr), (ret, 0, 0, action)]
    code += [(ret, 0, 0, 0x7FFF0000), (ret, 0, 0, 0x80000000)]  # allow; kill the process
    return b"".join(struct.pack("=HBBI", op, jt, jf, k) for op, jt, jf, k in code)


def run_guarded(
    fn: Callable[[Send], tuple[dict[str, Any], bytes]],
    *,
    max_payload: int,
    on_frame: Callable[[dict[str, Any]], None] | None = None,
    max_frames: int = 10_000,
    kinds: tuple[type[BaseException], ...] = (),
) -> tuple[dict[str, Any], bytes]:
    """Call ``fn(send)`` in a guarded child (see the module); its answer ``(header,
    payload)``.

    Args:
        fn: runs in the child. ``send(header)`` streams a frame (a dict of JSON values) to
            ``on_frame`` while it runs; what it returns is the answer.
        max_payload: the most bytes the answer's payload may have.
        on_frame: called here with each frame ``fn`` sent, as it comes; at most
            ``max_frames`` are passed on (the rest are read and dropped).
        max_frames: see ``on_frame``.
        kinds: the evaluator's own exception classes (a rule the program broke) that
            :attr:`ProgramFailed.kind` names; any other exception gives ``kind == ""``.
            The program shares the child's process and can write the answer pipe itself,
            so a kind only ever tells how a program failed, never that it did well.

    Raises:
        GuardUnavailable: the filter cannot be loaded here (nothing was run).
        ProgramFailed: ``fn`` raised (its traceback, and ``kind``), or the child died or
            sent something malformed or larger than the bounds.
    """
    if not sys.platform.startswith("linux"):
        raise GuardUnavailable(f"seccomp is Linux's; this is {sys.platform}")
    program = filter_program()
    r, w = os.pipe()
    try:
        pid = os.fork()
    except BaseException:
        os.close(r)
        os.close(w)
        raise
    if pid == 0:  # the child: never returns
        status = 4
        try:
            os.close(r)
            status = _child(fn, w, program, kinds)
        finally:
            os._exit(status)
    os.close(w)
    try:
        answer = _answer(r, max_payload, on_frame, max_frames)
    finally:
        os.close(r)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # SIGCHLD ignored by the caller: reaped already
            status = 0
    if answer is None:
        how = (
            f"was killed by signal {os.WTERMSIG(status)}"
            if os.WIFSIGNALED(status)
            else f"exited with status {os.waitstatus_to_exitcode(status)}"
        )
        raise ProgramFailed(f"the program's process {how} before answering")
    header, payload = answer
    if "guard" in header:
        raise GuardUnavailable(str(header["guard"]))
    if "error" in header:
        kind, detail = str(header.get("kind", "")), str(header.get("detail", ""))
        raise ProgramFailed(f"the program raised:\n{header['error']}", kind, detail)
    if not isinstance(header.get("answer"), dict):
        raise ProgramFailed("the program's process sent a malformed answer")
    return header["answer"], payload


def _answer(
    fd: int,
    max_payload: int,
    on_frame: Callable[[dict[str, Any]], None] | None,
    max_frames: int,
) -> tuple[dict[str, Any], bytes] | None:
    """The child's last header and payload, its frames passed on; None if it sent none.
    The first header says whether the filter was loaded: a ``guard`` header after that is
    the program's, not the guard's."""
    frames = _frames(fd, max_payload)
    first = next(frames, None)
    if first is None or "guard" in first[0]:
        return first
    if first[0] != {"installed": True}:
        raise ProgramFailed("the program's process sent a malformed answer")
    for passed, (header, payload) in enumerate(frames, 1):
        if "frame" not in header:
            if "guard" in header:
                raise ProgramFailed("the program's process sent a malformed answer")
            return header, payload
        if not isinstance(header["frame"], dict):
            raise ProgramFailed("the program's process sent a malformed frame")
        if on_frame is not None and passed <= max_frames:
            on_frame(header["frame"])
    return None


def load_program(source: str, path: str, *, name: str = "program") -> dict[str, Any]:
    """Run a program's module body from ``source`` and return its namespace: in the guarded
    child, which cannot open a file, not even the program's own. ``path`` names it in
    tracebacks, which show its lines (kept in ``linecache``)."""
    linecache.cache[path] = (len(source), None, source.splitlines(True), path)
    module = types.ModuleType(name)
    module.__file__ = path
    exec(compile(source, path, "exec"), module.__dict__)
    return module.__dict__


# ----------------------------------------------------------------- the child


def _child(
    fn: Callable[[Send], tuple[dict[str, Any], bytes]],
    w: int,
    program: bytes,
    kinds: tuple[type[BaseException], ...],
) -> int:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)  # PDEATHSIG
    os.closerange(3, w)  # everything but stdin, stdout, stderr and the answer pipe
    top = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    os.closerange(w + 1, top if 0 < top <= 1 << 20 else 1 << 20)
    try:
        _install(program)
    except Exception as e:  # GuardUnavailable, or a libc without prctl
        _write(w, {"guard": str(e)})
        return 3
    _write(w, {"installed": True})
    try:
        header, payload = fn(lambda frame: _write(w, {"frame": frame}))
    except BaseException as e:
        _flush()
        error = traceback.format_exc(limit=-8)[-6000:]
        kind = type(e).__name__ if isinstance(e, kinds) else ""
        _write(w, {"error": error, "kind": kind, "detail": str(e)[:2000]})
        return 0
    _flush()
    _write(w, {"answer": header}, payload)
    return 0


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


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()


def _write(fd: int, header: dict[str, Any], payload: bytes = b"") -> None:
    head = json.dumps(header).encode()
    view = memoryview(struct.pack("=QQ", len(head), len(payload)) + head + payload)
    while view:
        view = view[os.write(fd, view) :]


# ----------------------------------------------------------------- this process


def _frames(fd: int, max_payload: int) -> Iterator[tuple[dict[str, Any], bytes]]:
    """The child's frames, each bounded (the child is untrusted)."""
    while len(head := _read_exact(fd, 16)) == 16:
        n, m = struct.unpack("=QQ", head)
        if n > _MAX_HEADER or m > max_payload:
            raise ProgramFailed("the program's process sent an answer larger than allowed")
        try:
            header = json.loads(_read_exact(fd, n))
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            header = None
        payload = _read_exact(fd, m)
        if not isinstance(header, dict) or len(payload) != m:
            raise ProgramFailed("the program's process sent a malformed answer")
        yield header, payload


def _read_exact(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
