"""Warm fork server: runs a task's evaluator on untrusted programs, one forked child each.

Run as ``python -m aster_nb.sandbox --evaluator PATH [--preload MOD ...]``; normally
:class:`aster_nb.executors.LocalExecutor` starts it. The server imports the ``preload``
modules and the evaluator once, then forks a child per evaluation, so an evaluation costs
a fork instead of a fresh interpreter. See :mod:`aster_nb.executors` for what is contained
and what is not.

Protocol (JSON lines):

* stdin, one request per line:
  ``{"id": 1, "code": "...", "limits": {...Limits fields...}}`` evaluates ``code``;
  ``{"op": "cancel", "id": 1}`` kills that evaluation (its result still arrives);
  ``{"op": "stats"}`` asks for counters. End of stdin shuts the server down.
* responses go to a private fd (a dup of the original stdout; ``sys.stdout`` and fd 1 are
  pointed at stderr so stray prints cannot corrupt the channel):
  ``{"type": "hello", "pid", "fork_limit", "preload", "evaluator_error", ...}`` first, then
  ``{"type": "result", "id", "result": EvalResult.to_dict(), "transient": bool}`` per
  request (``transient``: the outcome says nothing about the program, e.g. it was
  cancelled, so do not cache it), ``{"type": "stats", ...}`` and
  ``{"type": "error", "error": ...}`` for requests that could not be parsed.

The server is single-threaded: one ``selectors`` loop over stdin, every child's
stdout/stderr/result pipes, a SIGCHLD wake-up pipe and the deadlines. Children are
detected with ``waitid(WNOWAIT)`` so the process group is killed while its leader is still a
zombie (its pid cannot be reused yet), then reaped.

``fork_limit`` in the hello is how the number of processes per evaluation is capped:
``cgroup-v2`` or ``cgroup-v1`` (a ``pids`` cgroup per evaluation; works as root),
``nproc`` (``RLIMIT_NPROC``; only for non-root users, the kernel ignores it for uid 0), or
``none`` (no cap: a fork bomb is still killed at the timeout, but it can load the machine
until then).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import gc
import importlib
import importlib.util
import json
import math
import numbers
import os
import resource
import selectors
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from .program import EvalResult, Status
from .task import Limits, TaskError

PROTOCOL_VERSION = 1
TRACEBACK_LINES = 20
MAX_RESULT_BYTES = 8 * 1024 * 1024
CGROUP_PREFIX = "aster_nb-"
EXIT_GRACE = 1.0  # a killed leftover may hold a pipe a moment after the child is gone
LEAK_GRACE = 5.0  # give up waiting for a cgroup to empty (reported as leaked)
TICK = 0.25
DRAIN_TICK = 0.01
ORPHAN_WATCH = 2.0  # keep looking for reparented orphans this long after an evaluation

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_EXIT_SETUP_FAILED = 70


# --------------------------------------------------------------------------- helpers


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _prctl(option: int, arg: int) -> bool:
    libc = _libc()
    if libc is None or not hasattr(libc, "prctl"):
        return False
    ulong = ctypes.c_ulong
    return int(libc.prctl(ctypes.c_int(option), ulong(arg), ulong(0), ulong(0), ulong(0))) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _short_repr(value: Any, limit: int = 120) -> str:
    try:
        text = repr(value)
    except Exception:  # an untrusted object's __repr__ may raise anything
        text = f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_exception(exc: BaseException, max_lines: int = TRACEBACK_LINES) -> str:
    """The last ``max_lines`` lines of ``exc``'s traceback (long lines cut)."""
    try:
        lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()
    except Exception:
        lines = [f"{type(exc).__name__}: {_short_repr(exc, 500)}"]
    lines = [ln if len(ln) <= 500 else ln[:497] + "..." for ln in lines]
    if len(lines) > max_lines:
        lines = [f"[... {len(lines) - max_lines} earlier traceback lines]", *lines[-max_lines:]]
    return "\n".join(lines)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


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


# --------------------------------------------------------------------------- cgroups


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
    """Remove cgroups left by servers that died without cleaning up."""
    for entry in base.iterdir():
        suffix = entry.name.removeprefix(CGROUP_PREFIX)
        if (
            entry.name.startswith(CGROUP_PREFIX)
            and suffix.isdigit()
            and not _pid_alive(int(suffix))
        ):
            remove_cgroup_tree(entry, wait=0.2)


def _make_cgroup_root(kind: str, base: Path) -> Path:
    with contextlib.suppress(OSError):
        _remove_stale_roots(base)
    root = base / f"{CGROUP_PREFIX}{os.getpid()}"
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
        raise
    return root


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


# --------------------------------------------------------------------------- results


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def _metrics(value: Any) -> tuple[dict[str, float] | None, str]:
    if value is None:
        return {}, ""
    if not isinstance(value, dict):
        return None, f"got {type(value).__name__}"
    out = {}
    for k, v in value.items():
        f = _finite(v)
        if not isinstance(k, str) or f is None:
            return None, f"entry {_short_repr(k, 40)}: {_short_repr(v, 60)}"
        out[k] = f
    return out, ""


def _features(value: Any) -> tuple[list[float] | None, str]:
    if hasattr(value, "tolist") and not isinstance(value, list | tuple):
        value = value.tolist()  # a numpy array or scalar
    if not isinstance(value, list | tuple):
        return None, f"got {type(value).__name__}"
    out = [_finite(v) for v in value]
    bad = [i for i, v in enumerate(out) if v is None]
    if bad:
        return None, f"item {bad[0]} is {_short_repr(value[bad[0]], 60)}"
    return [float(v) for v in out if v is not None], ""


def result_from_value(value: Any) -> dict[str, Any]:
    """Map what ``evaluate()`` returned to an EvalResult-shaped dict (without outputs)."""
    if not isinstance(value, dict):
        return _error(
            "evaluate() must return a dict such as {'score': 1.0} (optional 'metrics', "
            f"'features', 'valid', 'reason'); got {type(value).__name__}: {_short_repr(value)}"
        )
    valid = value.get("valid", True)
    if type(valid).__name__ not in ("bool", "bool_"):
        return _error(f"evaluate() returned 'valid'={_short_repr(valid)}; expected True or False")
    metrics, why = _metrics(value.get("metrics"))
    if not valid:
        reason = value.get("reason")
        text = (
            str(reason) if reason else "the evaluator marked the program invalid (no reason given)"
        )
        return {"status": "invalid", "error": text[:4000], "metrics": metrics or {}}
    if metrics is None:
        return _error(
            f"evaluate() returned bad 'metrics' ({why}); expected a dict of str -> finite number"
        )
    if "score" not in value:
        return _error(
            "evaluate() returned no 'score'; expected a finite number under 'score' "
            "(or 'valid': False with a 'reason')"
        )
    score = _finite(value["score"])
    if score is None:
        return _error(
            f"evaluate() returned score={_short_repr(value['score'])}; expected a finite number"
        )
    features = None
    if value.get("features") is not None:
        features, why = _features(value["features"])
        if features is None:
            return _error(
                f"evaluate() returned bad 'features' ({why}); expected a list of finite numbers"
            )
    return {"status": "ok", "score": score, "metrics": metrics, "features": features}


def _error(message: str, status: str = "error") -> dict[str, Any]:
    return {"status": status, "error": message}


def _caused_by_memory(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, MemoryError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def run_evaluate(evaluate: Callable[[str], Any], program_path: str) -> dict[str, Any]:
    """Call ``evaluate`` and turn its return value or exception into a result dict."""
    try:
        value = evaluate(program_path)
    except SystemExit as e:
        return _error(f"the evaluation raised SystemExit (exit code {_short_repr(e.code)})")
    except BaseException as e:
        if _caused_by_memory(e):
            return _error(f"memory limit reached (MemoryError)\n{format_exception(e)}", "memory")
        return _error(format_exception(e))
    return result_from_value(value)


def parse_payload(raw: bytes) -> dict[str, Any]:
    """Check what a child sent on its result pipe; the child is untrusted, so re-validate."""
    payload = json.loads(raw)
    if not isinstance(payload, dict):
        raise ValueError("not a JSON object")
    status = Status(payload.get("status"))
    if status in (Status.PENDING, Status.TIMEOUT):
        raise ValueError(f"status {status} cannot come from the child")
    out: dict[str, Any] = {"status": str(status), "error": None, "metrics": {}, "features": None}
    metrics, why = _metrics(payload.get("metrics"))
    if metrics is None:
        raise ValueError(f"metrics: {why}")
    out["metrics"] = metrics
    if status is Status.OK:
        score = _finite(payload.get("score"))
        if score is None:
            raise ValueError("ok without a finite score")
        out["score"] = score
        if payload.get("features") is not None:
            features, why = _features(payload["features"])
            if features is None:
                raise ValueError(f"features: {why}")
            out["features"] = features
    else:
        error = payload.get("error")
        out["error"] = error if isinstance(error, str) else f"{status} (no message)"
    return out


@dataclass(slots=True)
class _Capture:
    """Keeps the first ``limit`` bytes of a stream and counts the rest."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def feed(self, chunk: bytes) -> None:
        room = max(self.limit - len(self.data), 0)
        if room:
            self.data += chunk[:room]
        self.dropped += max(len(chunk) - room, 0)

    def text(self) -> str:
        text = self.data.decode("utf-8", "replace")
        if self.dropped:
            text += f"\n[... {self.dropped} bytes truncated]"
        return text


# --------------------------------------------------------------------------- server


@dataclass(eq=False, slots=True)
class _Job:
    rid: int | str
    pid: int
    limits: Limits
    workdir: Path
    cgroup: Path | None
    started: float
    out: _Capture
    err: _Capture
    fds: set[int] = field(default_factory=set)
    result: bytearray = field(default_factory=bytearray)
    result_overflow: bool = False
    killed: str | None = None  # timeout | cancelled | shutdown
    wait_status: int | None = None
    cpu_used: float = 0.0
    exited_at: float | None = None

    @property
    def deadline(self) -> float:
        return self.started + self.limits.timeout


_KILL_MESSAGES = {
    "cancelled": "evaluation cancelled by the client",
    "shutdown": "sandbox server shutting down; evaluation killed",
}


class SandboxServer:
    """The fork server's state and event loop (one per ``python -m aster_nb.sandbox``).

    Args:
        evaluator: path of the evaluator module.
        preload: modules to import before the first fork.
        fork_limit: the process-count mechanism (see :func:`detect_fork_limit`).
        work_root: directory that holds one temporary working directory per evaluation.
        out_fd: fd of the private response channel.
    """

    def __init__(
        self,
        *,
        evaluator: Path,
        preload: Sequence[str],
        fork_limit: ForkLimit,
        work_root: Path,
        out_fd: int,
    ) -> None:
        self.evaluator_path = evaluator
        self.preload = list(preload)
        self.fork_limit = fork_limit
        self.work_root = work_root
        self.out_fd = out_fd
        self.pid = os.getpid()
        self.subreaper = _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        self._evaluate: Callable[[str], Any] | None = None
        self._import_error: str | None = None
        self._timings: dict[str, float] = {}
        self._preload_errors: dict[str, str] = {}
        self._jobs: dict[int | str, _Job] = {}
        self._by_pid: dict[int, _Job] = {}
        self._leftover: list[Path] = []
        self._stop: str | None = None
        self._stdin_buf = bytearray()
        self._seq = 0
        self._orphan_watch_until = 0.0
        self._next_orphan_scan = 0.0
        self._counts = {"evaluations": 0, "timeouts": 0, "orphans_killed": 0, "leaked_cgroups": 0}
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- startup -----------------------------------------------------------------------

    def load(self) -> None:
        """Import the preload modules and the evaluator (errors are reported, not raised)."""
        for name in self.preload:
            t0 = time.perf_counter()
            try:
                importlib.import_module(name)
            except BaseException as e:  # a preload may sys.exit or worse; keep serving
                self._preload_errors[name] = format_exception(e, 8)
            self._timings[name] = round(time.perf_counter() - t0, 4)
        t0 = time.perf_counter()
        try:
            self._evaluate = _import_evaluator(self.evaluator_path)
        except BaseException as e:
            self._import_error = (
                f"the evaluator {self.evaluator_path} failed to import:\n{format_exception(e)}"
            )
        self._timings["<evaluator>"] = round(time.perf_counter() - t0, 4)
        # children then share these objects copy-on-write: the GC never touches them again
        gc.collect()
        gc.freeze()

    def hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "pid": self.pid,
            "python": sys.version.split()[0],
            "fork_limit": self.fork_limit.kind,
            "fork_limit_detail": self.fork_limit.detail,
            "cgroup_root": str(self.fork_limit.root) if self.fork_limit.root else None,
            "work_root": str(self.work_root),
            "subreaper": self.subreaper,
            "evaluator": str(self.evaluator_path),
            "evaluator_error": self._import_error,
            "preload": self._timings,
            "preload_errors": self._preload_errors,
        }

    # -- loop --------------------------------------------------------------------------

    def serve(self) -> None:
        """Run until stdin closes (or SIGTERM), then kill what is left."""
        self._install_signals()
        os.set_blocking(0, False)
        self._sel.register(0, selectors.EVENT_READ, self._on_stdin)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self._send(self.hello())
        while True:
            if self._stop:
                for job in self._jobs.values():
                    self._kill(job, "shutdown")
                if not self._jobs:
                    break
            for key, _ in self._sel.select(self._timeout()):
                key.data()
            self._reap()
            now = time.monotonic()
            for job in list(self._jobs.values()):
                self._advance(job, now)
            if now < self._orphan_watch_until and now >= self._next_orphan_scan:
                self._next_orphan_scan = now + TICK
                self._kill_orphans()
            self._retry_leftovers()

    def cleanup(self) -> None:
        """Remove the server's cgroup and working directories (after :meth:`serve`)."""
        for job in list(self._jobs.values()):
            self._kill(job, "shutdown")
        self._kill_orphans()
        if self.fork_limit.root is not None:
            remove_cgroup_tree(self.fork_limit.root)
        shutil.rmtree(self.work_root, onerror=_force_remove)

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the selector
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        self._stop = _signal_name(signum)

    def _timeout(self) -> float | None:
        now = time.monotonic()
        if any(j.wait_status is not None for j in self._jobs.values()):
            return DRAIN_TICK
        if not self._jobs and not self._leftover and now >= self._orphan_watch_until:
            return None
        timeout = TICK
        for job in self._jobs.values():
            if job.killed is None:
                timeout = min(timeout, job.deadline - now)
        return max(timeout, 0.0)

    def _on_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def _send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.out_fd, view) :]
        except OSError:
            self._stop = "client gone"  # nobody reads the results any more

    # -- requests ----------------------------------------------------------------------

    def _on_stdin(self) -> None:
        try:
            chunk = os.read(0, 1 << 20)
        except BlockingIOError:
            return
        if not chunk:
            self._sel.unregister(0)
            self._stop = self._stop or "stdin closed"
            return
        self._stdin_buf += chunk
        while (nl := self._stdin_buf.find(b"\n")) >= 0:
            line = bytes(self._stdin_buf[:nl])
            del self._stdin_buf[: nl + 1]
            if line.strip():
                self._handle(line)

    def _handle(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("a request must be a JSON object")
        except ValueError as e:
            self._send({"type": "error", "error": f"bad request line: {e}"})
            return
        try:
            self._dispatch(msg)
        except Exception as e:  # one bad request must not take the server down
            self._send({"type": "error", "id": msg.get("id"), "error": format_exception(e, 6)})

    def _dispatch(self, msg: dict[str, Any]) -> None:
        op = msg.get("op", "eval")
        if op == "eval":
            self._start(msg)
        elif op == "cancel":
            job = self._jobs.get(msg.get("id"))  # type: ignore[arg-type]
            if job is not None:
                self._kill(job, "cancelled")
        elif op == "stats":
            self._send(
                {
                    "type": "stats",
                    "in_flight": len(self._jobs),
                    **self._counts,
                    "fork_limit": self.fork_limit.kind,
                }
            )
        elif op == "shutdown":
            self._stop = "shutdown requested"
        else:
            self._send(
                {
                    "type": "error",
                    "error": f"unknown op {op!r}; expected eval, cancel, stats or shutdown",
                }
            )

    def _reply(self, rid: Any, result: EvalResult, *, transient: bool = False) -> None:
        self._send(
            {"type": "result", "id": rid, "result": result.to_dict(), "transient": transient}
        )

    def _start(self, msg: dict[str, Any]) -> None:
        rid = msg.get("id")
        if not isinstance(rid, int | str) or isinstance(rid, bool) or rid in self._jobs:
            self._send(
                {"type": "error", "id": rid, "error": "request needs a unique int or str 'id'"}
            )
            return
        code = msg.get("code")
        if not isinstance(code, str):
            self._reply(
                rid,
                EvalResult(Status.ERROR, error="request 'code' must be a string"),
                transient=True,
            )
            return
        try:
            limits = Limits(**(msg.get("limits") or {}))
        except (TypeError, TaskError) as e:
            self._reply(rid, EvalResult(Status.ERROR, error=f"bad limits: {e}"), transient=True)
            return
        if self._import_error is not None or self._evaluate is None:
            self._reply(rid, EvalResult(Status.ERROR, error=self._import_error or "no evaluator"))
            return
        if self._stop:
            self._reply(
                rid, EvalResult(Status.ERROR, error=_KILL_MESSAGES["shutdown"]), transient=True
            )
            return
        try:
            self._spawn(rid, code, limits)
        except (OSError, ValueError) as e:  # ValueError: code that is not valid UTF-8
            self._reply(
                rid,
                EvalResult(Status.ERROR, error=f"sandbox could not start the evaluation: {e}"),
                transient=True,
            )

    def _spawn(self, rid: int | str, code: str, limits: Limits) -> None:
        self._seq += 1
        workdir = Path(tempfile.mkdtemp(prefix=f"e{self._seq}-", dir=self.work_root))
        cgroup: Path | None = None
        pipes: list[int] = []
        try:
            (workdir / "program.py").write_text(code, encoding="utf-8")
            if self.fork_limit.root is not None:
                cgroup = self.fork_limit.root / f"e{self._seq}"
                cgroup.mkdir()
                (cgroup / "pids.max").write_text(str(limits.max_processes))
            nproc = None
            if self.fork_limit.kind == "nproc":
                nproc = _uid_task_count(os.getuid()) + limits.max_processes
            for _ in range(3):
                pipes.extend(os.pipe2(os.O_CLOEXEC))
            out_r, out_w, err_r, err_w, res_r, res_w = pipes
            # unflushed server output would otherwise be written twice, once by the child
            for stream in (sys.stderr, sys.__stdout__, sys.__stderr__):
                if stream is not None:
                    stream.flush()
            pid = os.fork()
        except (OSError, ValueError):
            for fd in pipes:
                os.close(fd)
            if cgroup is not None:
                with contextlib.suppress(OSError):
                    cgroup.rmdir()
            shutil.rmtree(workdir, onerror=_force_remove)
            raise
        if pid == 0:
            self._child(
                workdir, cgroup, nproc, limits, (out_w, err_w, res_w), (out_r, err_r, res_r)
            )
        for fd in (out_w, err_w, res_w):
            os.close(fd)
        now = time.monotonic()
        job = _Job(
            rid,
            pid,
            limits,
            workdir,
            cgroup,
            now,
            _Capture(limits.max_output_bytes),
            _Capture(limits.max_output_bytes),
        )
        for fd, sink in (
            (out_r, job.out.feed),
            (err_r, job.err.feed),
            (res_r, self._result_sink(job)),
        ):
            os.set_blocking(fd, False)
            job.fds.add(fd)
            self._sel.register(fd, selectors.EVENT_READ, self._reader(job, fd, sink))
        self._jobs[rid] = job
        self._by_pid[pid] = job

    def _result_sink(self, job: _Job) -> Callable[[bytes], None]:
        def sink(chunk: bytes) -> None:
            if len(job.result) + len(chunk) > MAX_RESULT_BYTES:
                job.result_overflow = True
            else:
                job.result += chunk

        return sink

    def _reader(self, job: _Job, fd: int, sink: Callable[[bytes], None]) -> Callable[[], None]:
        def on_readable() -> None:
            # a few chunks per wake-up: a program printing 50 MB should not cost 800 selects
            for _ in range(16):
                try:
                    chunk = os.read(fd, 1 << 16)
                except BlockingIOError:
                    return
                except OSError:
                    chunk = b""
                if not chunk:
                    self._close_fd(job, fd)
                    return
                sink(chunk)

        return on_readable

    def _close_fd(self, job: _Job, fd: int) -> None:
        if fd in job.fds:
            job.fds.discard(fd)
            self._sel.unregister(fd)
            os.close(fd)

    # -- child side (runs in the forked process, never returns) ------------------------

    def _child(
        self,
        workdir: Path,
        cgroup: Path | None,
        nproc: int | None,
        limits: Limits,
        write_ends: tuple[int, int, int],
        read_ends: tuple[int, int, int],
    ) -> NoReturn:
        me = os.getpid()
        status = _EXIT_SETUP_FAILED
        res_w = write_ends[2]
        try:
            try:
                self._child_setup(workdir, cgroup, nproc, limits, write_ends, read_ends)
            except BaseException as e:
                payload = _error(
                    f"sandbox setup failed in the evaluation process:\n{format_exception(e)}"
                )
            else:
                assert self._evaluate is not None
                payload = run_evaluate(self._evaluate, str(workdir / "program.py"))
            # a process the program forked may return through evaluate(); only the
            # evaluation process itself may answer
            if os.getpid() == me:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(BaseException):
                        stream.flush()
                data = json.dumps(payload, allow_nan=False).encode()
                if len(data) > MAX_RESULT_BYTES:
                    data = json.dumps(_error(f"result too large ({len(data)} bytes)")).encode()
                _write_all(res_w, data)
                status = 0
        except BaseException:
            status = _EXIT_SETUP_FAILED + 1
        finally:
            os._exit(status)

    def _child_setup(
        self,
        workdir: Path,
        cgroup: Path | None,
        nproc: int | None,
        limits: Limits,
        write_ends: tuple[int, int, int],
        read_ends: tuple[int, int, int],
    ) -> None:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()
        # if the server dies, this process must not outlive it (its descendants are swept
        # by the executor through the cgroup)
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != self.pid:
            os._exit(_EXIT_SETUP_FAILED)
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))
        self._child_fds(write_ends, read_ends)
        os.chdir(workdir)
        for var in ("HOME", "TMPDIR", "PWD"):
            os.environ[var] = str(workdir)
        tempfile.tempdir = None
        sys.path.insert(0, str(workdir))
        _set_limits(limits, nproc)
        sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115

    def _child_fds(self, write_ends: tuple[int, int, int], read_ends: tuple[int, int, int]) -> None:
        out_w, err_w, res_w = write_ends
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        # close the server's fds (response channel, selector, every evaluation's pipes) so
        # the program cannot answer for the server or read another evaluation's result;
        # res_w stays, close-on-exec, so programs it execs do not get it either
        server_fds = {devnull, out_w, err_w, *read_ends}
        server_fds |= {self.out_fd, self._wake_r, self._wake_w, self._sel.fileno()}
        for job in self._jobs.values():
            server_fds |= job.fds
        for fd in server_fds - {0, 1, 2, res_w}:
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- lifecycle of a job ------------------------------------------------------------

    def _kill(self, job: _Job, reason: str) -> None:
        job.killed = job.killed or reason
        if job.wait_status is None:
            # the leader is not reaped yet, so its pid still names our process group
            with contextlib.suppress(OSError):
                os.killpg(job.pid, signal.SIGKILL)
        if job.cgroup is not None:
            kill_cgroup(job.cgroup, rounds=1)

    def _reap(self) -> None:
        now = time.monotonic()
        for job in list(self._jobs.values()):
            if job.wait_status is not None:
                continue
            try:
                info = os.waitid(os.P_PID, job.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
            if info is None:
                continue
            # still a zombie here: kill what it left behind before its pid can be reused
            with contextlib.suppress(OSError):
                os.killpg(job.pid, signal.SIGKILL)
            if job.cgroup is not None:
                kill_cgroup(job.cgroup, rounds=1)
            _, status, usage = os.wait4(job.pid, 0)
            self._record_exit(job, status, usage, now)
        self._reap_orphans(now)

    def _reap_orphans(self, now: float) -> None:
        """Collect exited descendants that were reparented to us (we are a subreaper)."""
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self._by_pid.get(pid)
            if job is not None and job.wait_status is None:
                self._record_exit(job, status, usage, now)

    def _record_exit(
        self, job: _Job, status: int, usage: resource.struct_rusage, now: float
    ) -> None:
        job.wait_status = status
        job.cpu_used = usage.ru_utime + usage.ru_stime
        job.exited_at = now
        self._by_pid.pop(job.pid, None)
        self._orphan_watch_until = now + ORPHAN_WATCH
        self._kill_orphans()

    def _kill_orphans(self) -> None:
        """SIGKILL our children that are not evaluation processes (setsid/double-fork
        escapees reparented to us), except those inside a running evaluation's cgroup."""
        protected = set(self._by_pid)
        for job in self._jobs.values():
            if job.cgroup is not None and job.wait_status is None:
                protected.update(cgroup_procs(job.cgroup))
        for pid in children_of(self.pid):
            if pid not in protected:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    self._counts["orphans_killed"] += 1

    def _advance(self, job: _Job, now: float) -> None:
        if job.wait_status is None:
            if job.killed is None and now >= job.deadline:
                self._counts["timeouts"] += 1
                self._kill(job, "timeout")
            return
        assert job.exited_at is not None
        empty = job.cgroup is None or kill_cgroup(job.cgroup, rounds=2)
        if job.fds and now < job.exited_at + EXIT_GRACE:
            return
        if not empty and now < job.exited_at + LEAK_GRACE:
            return
        self._finish(job, now)

    def _finish(self, job: _Job, now: float) -> None:
        for fd in list(job.fds):
            self._close_fd(job, fd)
        if job.cgroup is not None:
            try:
                job.cgroup.rmdir()
            except OSError:
                self._counts["leaked_cgroups"] += 1
                self._leftover.append(job.cgroup)
        shutil.rmtree(job.workdir, onerror=_force_remove)
        del self._jobs[job.rid]
        self._counts["evaluations"] += 1
        result = _build_result(job, now)
        self._reply(job.rid, result, transient=job.killed in _KILL_MESSAGES)

    def _retry_leftovers(self) -> None:
        self._leftover = [cg for cg in self._leftover if not remove_cgroup_tree(cg, wait=0.0)]


def _import_evaluator(path: Path) -> Callable[[str], Any]:
    # the evaluator may import helpers that sit next to it
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("aster_nb_task_evaluator", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    evaluate = getattr(module, "evaluate", None)
    if not callable(evaluate):
        raise AttributeError(f"{path} defines no callable evaluate(program_path) -> dict")
    return evaluate


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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _force_remove(func: Callable[..., Any], path: str, _exc: Any) -> None:
    """rmtree error hook: a program may leave read-only directories behind."""
    with contextlib.suppress(OSError):
        os.chmod(os.path.dirname(path) or ".", 0o700)
        os.chmod(path, 0o700)
        func(path)


def _build_result(job: _Job, now: float) -> EvalResult:
    common: dict[str, Any] = {
        "stdout": job.out.text(),
        "stderr": job.err.text(),
        "seconds": round((job.exited_at or now) - job.started, 6),
    }
    if job.killed == "timeout":
        return EvalResult(
            Status.TIMEOUT,
            error=f"wall-clock limit of {job.limits.timeout:g} s exceeded; the evaluation was killed",
            **common,
        )
    if job.killed in _KILL_MESSAGES:
        return EvalResult(Status.ERROR, error=_KILL_MESSAGES[job.killed], **common)
    if job.result_overflow:
        return EvalResult(
            Status.ERROR, error="the evaluation sent a result larger than 8 MiB", **common
        )
    if job.result:
        try:
            fields = parse_payload(bytes(job.result))
        except (ValueError, TypeError) as e:
            return EvalResult(
                Status.ERROR, error=f"the evaluation sent a malformed result: {e}", **common
            )
        fields.update(common)
        return EvalResult.from_dict(fields)
    status, error = _exit_outcome(job)
    return EvalResult(status, error=error, **common)


def _exit_outcome(job: _Job) -> tuple[Status, str]:
    status = job.wait_status or 0
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        cpu_limit = max(1, math.ceil(job.limits.cpu))
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and job.cpu_used >= cpu_limit - 0.05):
            return Status.TIMEOUT, (
                f"CPU limit of {cpu_limit} s exceeded (killed by {_signal_name(sig)} "
                f"after {job.cpu_used:.2f} s of CPU)"
            )
        return (
            Status.ERROR,
            f"killed by signal {_signal_name(sig)} ({sig}) before returning a result",
        )
    code = os.WEXITSTATUS(status)
    return Status.ERROR, f"exited with code {code} before returning a result"


# --------------------------------------------------------------------------- entry point


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m aster_nb.sandbox", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--evaluator", required=True, type=Path, help="path of the evaluator module"
    )
    parser.add_argument(
        "--preload", action="append", default=[], help="module to import once (repeatable)"
    )
    parser.add_argument(
        "--work-root",
        type=Path,
        default=None,
        help="where per-evaluation temp directories go (default: the temp dir)",
    )
    parser.add_argument(
        "--fork-limit",
        choices=["auto", "cgroup", "nproc", "none"],
        default="auto",
        help="process-count mechanism; auto picks the best available",
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def _private_channel() -> Iterator[int]:
    """Move the response channel off fd 1 so stray prints go to stderr instead."""
    sys.stdout.flush()
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield out_fd
    finally:
        os.close(out_fd)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m aster_nb.sandbox``."""
    args = _parse_args(argv)
    with _private_channel() as out_fd:
        fork_limit = detect_fork_limit(args.fork_limit)
        work_root = Path(tempfile.mkdtemp(prefix="aster_nb-sandbox-", dir=args.work_root))
        server = SandboxServer(
            evaluator=args.evaluator.resolve(),
            preload=[m for spec in args.preload for m in spec.split(",") if m],
            fork_limit=fork_limit,
            work_root=work_root,
            out_fd=out_fd,
        )
        try:
            server.load()
            server.serve()
        finally:
            server.cleanup()
    return 0


__all__ = [
    "ForkLimit",
    "SandboxServer",
    "cgroup_procs",
    "children_of",
    "detect_fork_limit",
    "format_exception",
    "kill_cgroup",
    "main",
    "parse_payload",
    "remove_cgroup_tree",
    "result_from_value",
    "run_evaluate",
]


if __name__ == "__main__":
    sys.exit(main())
