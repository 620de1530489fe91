"""Intermediate values of a running evaluation: ``report(step, values)`` in the child, the
checked reports in the server.

The evaluator (and so the program, which runs in the same process) writes one JSON line
per report to a pipe of its own, non-blocking: a full pipe drops the report rather than
stall the evaluation, and each line is far below ``PIPE_BUF`` so it is written whole or
not at all. The server reads the pipe as it reads stdout and re-checks every line
(:func:`~aster_nb.sandbox.protocol.check_report`): the child is untrusted, so a forged or
malformed line is dropped, a line longer than :data:`MAX_LINE` is dropped, and only the
first :data:`~aster_nb.sandbox.protocol.MAX_REPORTS` are forwarded.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from .protocol import MAX_NAME, MAX_REPORTS, MAX_VALUES, check_report

__all__ = ["MAX_LINE", "ReportReader", "Reporter"]

MAX_LINE = 4096  # one report's line; below PIPE_BUF, so a write is atomic


class Reporter:
    """The ``report`` an evaluator is given: ``report(step, {"loss": 0.41})``.

    Raises (to the evaluator, whose bug it is): TypeError or ValueError for a step that is
    not a non-negative int, or values that are not a dict of at most 16 names to finite
    numbers. Never blocks: a report the pipe has no room for is dropped and counted.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.sent = 0
        self.dropped = 0

    def __call__(self, step: int, values: dict[str, float]) -> None:
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise TypeError(f"report(step, values): step must be an int >= 0, got {step!r}")
        if not isinstance(values, dict) or not 0 < len(values) <= MAX_VALUES:
            raise TypeError(
                f"report(step, values): values must be a dict of 1 to {MAX_VALUES} names "
                f"to numbers, got {type(values).__name__}"
            )
        clean: dict[str, float] = {}
        for name, value in values.items():
            if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
                raise ValueError(f"report(): names must be strings of 1 to {MAX_NAME} characters")
            if isinstance(value, str | bytes | bool):
                raise TypeError(f"report(): {name} = {value!r} is not a number")
            v = float(value)  # numpy scalars and 0-d tensors convert; other things raise
            if not math.isfinite(v):
                raise ValueError(f"report(): {name} = {v} is not a finite number")
            clean[name] = v
        if self.sent >= MAX_REPORTS:
            self.dropped += 1
            return
        line = (json.dumps({"step": step, "values": clean}) + "\n").encode()
        try:
            os.write(self.fd, line)
        except (BlockingIOError, BrokenPipeError):
            self.dropped += 1  # nobody keeps up: lose the report, never the evaluation
            return
        self.sent += 1


@dataclass(slots=True)
class ReportReader:
    """Splits a report pipe's bytes into checked reports (server side).

    Attributes:
        last: the last good report, ``(step, values)``: a stopped run's result (frozen
            once ``MAX_REPORTS`` were read).
        count: good reports read (then every line).
        bad: lines dropped (malformed, forged, too long).
    """

    last: tuple[int, dict[str, float]] | None = None
    count: int = 0
    bad: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _skipping: bool = False

    def feed(self, chunk: bytes) -> Iterator[tuple[int, dict[str, float]]]:
        """The reports completed by ``chunk``, in order (at most ``MAX_REPORTS`` in all)."""
        self._buf += chunk
        while (nl := self._buf.find(b"\n")) >= 0:
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if self._skipping:  # the tail of an over-long line
                self._skipping = False
                continue
            if self.count >= MAX_REPORTS:  # past the bound: counted, not even parsed
                self.count += 1
                continue
            report = _parse(line)
            if report is None:
                self.bad += 1
                continue
            self.last = report
            self.count += 1
            yield report
        if len(self._buf) > MAX_LINE:
            self._buf.clear()
            self._skipping = True
            self.bad += 1


def _parse(line: bytes) -> tuple[int, dict[str, float]] | None:
    if len(line) > MAX_LINE:
        return None
    try:
        return check_report(json.loads(line))
    except (ValueError, RecursionError, OverflowError):
        return None
