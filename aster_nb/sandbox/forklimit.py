"""How many processes one evaluation may run: a pids cgroup (v2 or v1) each, else RLIMIT_NPROC.

:func:`detect_fork_limit` picks the mechanism once per server and creates the server's own
cgroup; :meth:`ForkLimit.evaluation_cgroup` and :meth:`ForkLimit.nproc` apply it to one
evaluation; :func:`kill_cgroup` and :func:`remove_cgroup_tree` clean up.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .proc import pid_alive

CGROUP_PREFIX = "aster_nb-"
# A server's cgroup root is named <prefix><pid>-<random>: inside its own PID namespace every
# server is pid 1, so the pid alone would collide. Liveness is an flock the server holds on
# a file of the same name here (visible across PID and mount namespaces) until it exits.
LOCK_DIR = Path(tempfile.gettempdir()) / "aster_nb-cgroups"
_held_locks: list[int] = []  # fds kept open for the server's lifetime


class _Unsupported(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ForkLimit:
    """How the server caps the processes of one evaluation.

    Attributes:
        kind: ``cgroup-v2`` or ``cgroup-v1`` (a ``pids`` cgroup per evaluation),
            ``nproc`` (``RLIMIT_NPROC``, non-root only) or ``none``.
        root: the server's own cgroup directory, parent of the per-evaluation cgroups.
        detail: what was tried, and why the others were not used.
    """

    kind: str
    root: Path | None = None
    detail: str = ""

    def evaluation_cgroup(self, name: str, max_processes: int) -> Path | None:
        """Create the pids cgroup ``name`` for one evaluation (None without cgroups)."""
        if self.root is None:
            return None
        cgroup = self.root / name
        cgroup.mkdir()
        try:
            (cgroup / "pids.max").write_text(str(max_processes))
        except OSError:
            with contextlib.suppress(OSError):
                cgroup.rmdir()
            raise
        return cgroup

    def nproc(self, max_processes: int) -> int | None:
        """The ``RLIMIT_NPROC`` for one evaluation (None unless ``kind`` is ``nproc``).

        The kernel counts every thread of the real uid, so the cap is what runs now plus
        ``max_processes``.
        """
        if self.kind != "nproc":
            return None
        return _uid_task_count(os.getuid()) + max_processes


def cgroup_procs(cgroup: Path) -> list[int]:
    """Pids in ``cgroup`` (zombies are not listed); empty if it is gone."""
    try:
        return [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def kill_cgroup(cgroup: Path, *, rounds: int = 3) -> bool:
    """SIGKILL everything in ``cgroup``; True if it is empty afterwards.

    A fork bomb can add processes between reading the list and killing, so this loops; a
    process with a pending SIGKILL can no longer fork, so it converges quickly.
    """
    kill_file = cgroup / "cgroup.kill"
    for attempt in range(rounds):
        pids = cgroup_procs(cgroup)
        if not pids:
            return True
        if kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if attempt:
            time.sleep(0.001)
    return not cgroup_procs(cgroup)


def remove_cgroup_tree(root: Path, *, wait: float = 1.0) -> bool:
    """Kill every process under ``root`` and remove it and its sub-cgroups."""
    if not root.is_dir():
        return True
    for sub in [p for p in root.iterdir() if p.is_dir()]:
        remove_cgroup_tree(sub, wait=wait)
    deadline = time.monotonic() + wait
    while True:
        kill_cgroup(root)
        try:
            root.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def detect_fork_limit(want: str = "auto") -> ForkLimit:
    """Pick the process-count mechanism: cgroup v2 pids, cgroup v1 pids, RLIMIT_NPROC, none.

    Args:
        want: ``auto`` (best available), or force ``cgroup``, ``nproc`` or ``none``.
    """
    notes: list[str] = []
    if want in ("auto", "cgroup"):
        probes: list[tuple[str, Callable[[], Path]]] = [
            ("cgroup-v2", _cgroup_v2_base),
            ("cgroup-v1", _cgroup_v1_base),
        ]
        for kind, probe in probes:
            try:
                root = _make_cgroup_root(kind, probe())
                return ForkLimit(
                    kind, root, "; ".join([*notes, f"{kind} pids cgroups under {root}"])
                )
            except (OSError, _Unsupported) as e:
                notes.append(f"{kind}: {e}")
    if want in ("auto", "nproc"):
        if os.geteuid() != 0:
            return ForkLimit("nproc", None, "; ".join([*notes, "RLIMIT_NPROC per evaluation"]))
        notes.append("nproc: RLIMIT_NPROC is not enforced for root")
    return ForkLimit("none", None, "; ".join(notes) or "disabled")


def _mounts() -> list[tuple[str, Path, set[str]]]:
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out.append((parts[2], Path(parts[1]), set(parts[3].split(","))))
    return out


def _own_cgroups() -> dict[str, str]:
    """Controller name -> this process's cgroup path ('' is the cgroup2 hierarchy)."""
    out: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            out[name] = path
    return out


def _cgroup_v2_base() -> Path:
    mount = next((m for fs, m, _ in _mounts() if fs == "cgroup2"), None)
    if mount is None:
        raise _Unsupported("no cgroup2 mount")
    base = mount / _own_cgroups().get("", "/").lstrip("/")
    if not (base / "cgroup.controllers").is_file():
        base = mount
    if "pids" not in (base / "cgroup.controllers").read_text().split():
        raise _Unsupported(f"cgroup2 at {base}: pids controller not available")
    subtree = base / "cgroup.subtree_control"
    if "pids" not in subtree.read_text().split():
        # fails with EBUSY if base holds processes (cgroup2's no-internal-process rule)
        subtree.write_text("+pids")
    return base


def _cgroup_v1_base() -> Path:
    mount = next((m for fs, m, o in _mounts() if fs == "cgroup" and "pids" in o), None)
    if mount is None:
        raise _Unsupported("no cgroup v1 pids mount")
    base = mount / _own_cgroups().get("pids", "/").lstrip("/")
    if not (base / "cgroup.procs").is_file():
        base = mount
    return base


def _remove_stale_roots(base: Path) -> None:
    """Remove cgroups left by servers that died without cleaning up: their lock is free."""
    for entry in base.iterdir():
        if entry.name.startswith(CGROUP_PREFIX) and _owner_gone(entry.name):
            remove_cgroup_tree(entry, wait=0.2)
            with contextlib.suppress(OSError):
                (LOCK_DIR / entry.name).unlink()


def _owner_gone(name: str) -> bool:
    suffix = name.removeprefix(CGROUP_PREFIX)
    if suffix.isdigit():  # the older pid-only name: judge by the pid where pids mean anything
        return os.getpid() != 1 and not pid_alive(int(suffix))
    try:
        fd = os.open(LOCK_DIR / name, os.O_RDWR)
    except OSError:
        return False  # no lock file: not ours to judge
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: its server is alive
    finally:
        os.close(fd)
    return True


def release_cgroup_root(root: Path, *, wait: float = 2.0) -> bool:
    """Remove a server's cgroup root and its lock file; ``True`` if the cgroup is gone."""
    gone = remove_cgroup_tree(root, wait=wait)
    if gone:
        with contextlib.suppress(OSError):
            (LOCK_DIR / root.name).unlink()
    return gone


def _make_cgroup_root(kind: str, base: Path) -> Path:
    with contextlib.suppress(OSError):
        _remove_stale_roots(base)
    name = f"{CGROUP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(LOCK_DIR / name, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    root = base / name
    root.mkdir(exist_ok=True)
    try:
        if kind == "cgroup-v2":
            (root / "cgroup.subtree_control").write_text("+pids")
        probe = root / "probe"
        probe.mkdir(exist_ok=True)
        try:
            (probe / "pids.max").write_text("1")
        finally:
            probe.rmdir()
    except OSError:
        remove_cgroup_tree(root)
        os.close(fd)
        with contextlib.suppress(OSError):
            (LOCK_DIR / name).unlink()
        raise
    _held_locks.append(fd)
    return root


def _uid_task_count(uid: int) -> int:
    """Threads owned by real uid ``uid``: what RLIMIT_NPROC is checked against."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry.name}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1 0").split()[0]) == uid:
            total += int(fields.get("Threads", "1"))
    return total
