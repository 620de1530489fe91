"""A seccomp-BPF filter that refuses the system calls a candidate could use to undo its
sandbox, written out by hand so the sandbox needs no libseccomp.

The filter is a deny list (everything else is allowed), in the spirit of Docker's default
profile but aimed at what matters here: a program that runs as root in its own namespaces
must not mount, unmount, make or join namespaces, trace or read other processes' memory,
load kernel code or BPF, or touch the clock, keys and swap. ``clone`` with a namespace
flag is refused too; ``clone3`` (whose flags live in memory a filter cannot read) answers
``ENOSYS``, so libc falls back to ``clone``. A call made under another ABI (x32 on x86-64,
or an architecture the filter was not built for) kills the process: a filter keyed on
syscall numbers would otherwise be bypassed by the other table.

References: ``Documentation/userspace-api/seccomp_filter.rst`` in the Linux tree;
``seccomp(2)``.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

from .linux import LinuxError, check, libc

__all__ = ["DENIED", "filter_program", "install"]

# classic BPF opcodes (linux/filter.h)
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_X32_BIT = 0x40000000

# offsets in struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6] (little endian)
_NR, _ARCH, _ARG0_LOW = 0, 4, 16

# every CLONE_NEW* flag: user, pid, net, ipc, uts, cgroup, mount and time namespaces
_CLONE_NAMESPACES = 0x7E020080

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2

#: system calls refused with EPERM, by name
DENIED = (
    # mounts and the filesystem tree
    "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "name_to_handle_at",
    "open_by_handle_at", "quotactl", "quotactl_fd", "swapon", "swapoff", "acct",
    # namespaces
    "unshare", "setns",
    # other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # kernel code, BPF, tracing, keys and io_uring (large attack surfaces)
    "bpf", "perf_event_open", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "userfaultfd", "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "lookup_dcookie",
    # the machine
    "reboot", "syslog", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "vhangup", "iopl", "ioperm", "personality",
)  # fmt: skip

# numbers per architecture (arch/x86/entry/syscalls/syscall_64.tbl and the generic
# table include/uapi/asm-generic/unistd.h used by arm64)
_X86_64 = {
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "quotactl": 179, "quotactl_fd": 443, "swapon": 167, "swapoff": 168, "acct": 163,
    "unshare": 272, "setns": 308, "ptrace": 101, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438, "bpf": 321,
    "perf_event_open": 298, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
    "finit_module": 313, "delete_module": 176, "userfaultfd": 323, "keyctl": 250,
    "add_key": 248, "request_key": 249, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "lookup_dcookie": 212, "reboot": 169, "syslog": 103,
    "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159,
    "sethostname": 170, "setdomainname": 171, "vhangup": 153, "iopl": 172, "ioperm": 173,
    "personality": 135, "clone": 56, "clone3": 435,
}  # fmt: skip
_AARCH64 = {
    "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "name_to_handle_at": 264, "open_by_handle_at": 265,
    "quotactl": 60, "quotactl_fd": 443, "swapon": 224, "swapoff": 225, "acct": 89,
    "unshare": 97, "setns": 268, "ptrace": 117, "process_vm_readv": 270,
    "process_vm_writev": 271, "kcmp": 272, "pidfd_getfd": 438, "bpf": 280,
    "perf_event_open": 241, "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
    "finit_module": 273, "delete_module": 106, "userfaultfd": 282, "keyctl": 219,
    "add_key": 217, "request_key": 218, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "lookup_dcookie": 18, "reboot": 142, "syslog": 116,
    "settimeofday": 170, "clock_settime": 112, "clock_adjtime": 266, "adjtimex": 171,
    "sethostname": 161, "setdomainname": 162, "vhangup": 58, "personality": 92,
    "clone": 220, "clone3": 435,
}  # fmt: skip
# (audit arch, syscall table, whether x32 numbers must be refused)
_ARCHES = {
    "x86_64": (0xC000003E, _X86_64, True),
    "aarch64": (0xC00000B7, _AARCH64, False),
}


class _Program:
    """Classic BPF with forward jumps to named labels, resolved at the end."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int | str, int | str, int]] = []
        self.labels: dict[str, int] = {}

    def add(self, op: int, k: int, jt: int | str = 0, jf: int | str = 0) -> None:
        self.code.append((op, jt, jf, k))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> bytes:
        out = bytearray()
        for i, (op, jt, jf, k) in enumerate(self.code):
            offs = [self.labels[j] - i - 1 if isinstance(j, str) else j for j in (jt, jf)]
            if not all(0 <= o < 256 for o in offs):
                raise ValueError(f"BPF jump out of range at instruction {i}: {offs}")
            out += struct.pack("=HBBI", op, offs[0], offs[1], k)
        return bytes(out)


def filter_program(machine: str | None = None) -> bytes:
    """The filter as ``struct sock_filter`` instructions for ``machine`` (default: this
    one's ``platform.machine()``).

    Raises:
        LinuxError: no syscall table for this architecture.
    """
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        raise LinuxError(f"no seccomp syscall table for {machine!r}; known: {sorted(_ARCHES)}")
    audit_arch, table, x32 = _ARCHES[machine]
    p = _Program()
    p.add(_LD_W_ABS, _ARCH)
    p.add(_JEQ_K, audit_arch, 0, "kill")
    p.add(_LD_W_ABS, _NR)
    if x32:
        p.add(_JGE_K, _X32_BIT, "kill", 0)
    for name in DENIED:
        if name in table:
            p.add(_JEQ_K, table[name], "deny", 0)
    p.add(_JEQ_K, table["clone3"], "nosys", 0)
    p.add(_JEQ_K, table["clone"], 0, "allow")
    p.add(_LD_W_ABS, _ARG0_LOW)
    p.add(_JSET_K, _CLONE_NAMESPACES, "deny", "allow")
    p.label("allow")
    p.add(_RET_K, _RET_ALLOW)
    p.label("deny")
    p.add(_RET_K, _RET_ERRNO | errno.EPERM)
    p.label("nosys")
    p.add(_RET_K, _RET_ERRNO | errno.ENOSYS)
    p.label("kill")
    p.add(_RET_K, _RET_KILL_PROCESS)
    return p.assemble()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(program: bytes) -> None:
    """Set ``no_new_privs`` and load ``program`` into this process (and its future
    children); neither can be undone.

    Raises:
        LinuxError: the kernel refused (no seccomp support, or a bad program).
    """
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    ulong = ctypes.c_ulong
    check(
        libc().prctl(_PR_SET_NO_NEW_PRIVS, ulong(1), ulong(0), ulong(0), ulong(0)), "no_new_privs"
    )
    check(
        libc().prctl(
            _PR_SET_SECCOMP, ulong(_SECCOMP_MODE_FILTER), ctypes.byref(fprog), ulong(0), ulong(0)
        ),
        "seccomp filter",
    )
