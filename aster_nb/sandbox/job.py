"""One evaluation as the server tracks it: its process, pipes, captured output and exit."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from ..task import Limits
from .forklimit import kill_cgroup
from .report import ReportReader


@dataclass(slots=True)
class Capture:
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


@dataclass(eq=False, slots=True)
class Job:
    """A running (or exited, not yet answered) evaluation.

    ``out``, ``err`` and ``result`` collect the child's stdout, stderr and result pipes,
    ``reports`` its report pipe (whose read ends are ``fds`` until they close).
    """

    rid: int | str
    pid: int
    limits: Limits
    workdir: Path
    cgroup: Path | None
    started: float
    out: Capture
    err: Capture
    result: Capture
    fds: set[int] = field(default_factory=set)
    killed: str | None = None  # timeout | cancelled | shutdown | stopped
    wait_status: int | None = None
    cpu_used: float = 0.0
    exited_at: float | None = None
    reports: ReportReader = field(default_factory=ReportReader)  # report(step, values)
    forward: bool = False  # send each report to the client as it comes

    @property
    def deadline(self) -> float:
        return self.started + self.limits.timeout

    def kill(self, reason: str | None = None) -> None:
        """SIGKILL the evaluation's process group and cgroup; ``reason`` (the first one
        given wins) ends up in the result."""
        self.killed = self.killed or reason
        if self.wait_status is None:
            # the leader is not reaped yet, so its pid still names our process group
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
        if self.cgroup is not None:
            kill_cgroup(self.cgroup, rounds=1)
