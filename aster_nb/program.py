"""Records: a program, its evaluation, and content hashing.

A :class:`Program` is identified by the hash of its code, so identical code is one program
however many agents propose it; the store, the executor's cache and the archives all key on
that id.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Outcome of one evaluation."""

    PENDING = "pending"
    OK = "ok"
    ERROR = "error"  # an exception, a crash, or an exit without a result
    TIMEOUT = "timeout"  # wall-time or CPU-seconds limit
    MEMORY = "memory"  # address-space limit
    INVALID = "invalid"  # ran, but the evaluator rejected the output (``reason``)
    # the sandbox failed twice under it (server killed or died, e.g. by a neighbour):
    # says nothing about the program, so it is never cached and never blamed on it
    LOST = "lost"


def code_hash(code: str) -> str:
    """Content id of a program: 16 hex digits of SHA-256 over the exact code text."""
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class EvalResult:
    """What the sandbox returns for one program.

    Attributes:
        status: the outcome; only ``ok`` results carry a score that may rank the program.
        score: higher is better; ``None`` unless ``status`` is ``ok``.
        metrics: extra numbers the evaluator reported (shown, never ranked on).
        features: the evaluator's behaviour descriptor, if it gives one.
        error: why it is not ``ok``: the last traceback lines, the signal, or the
            evaluator's reason for ``invalid``.
        stdout: captured program output, truncated.
        stderr: captured error output, truncated.
        seconds: wall time of the evaluation.
    """

    status: Status
    score: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    features: tuple[float, ...] | None = None
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "score": self.score,
            "metrics": dict(self.metrics),
            "features": list(self.features) if self.features is not None else None,
            "error": self.error,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalResult:
        feats = d.get("features")
        return cls(
            status=Status(d["status"]),
            score=None if d.get("score") is None else float(d["score"]),
            metrics={str(k): float(v) for k, v in (d.get("metrics") or {}).items()},
            features=None if feats is None else tuple(float(x) for x in feats),
            error=d.get("error"),
            stdout=d.get("stdout", "") or "",
            stderr=d.get("stderr", "") or "",
            seconds=float(d.get("seconds", 0.0) or 0.0),
        )


@dataclass(slots=True)
class Program:
    """One candidate program and, once evaluated, its result.

    Attributes:
        code: the full source text.
        parents: ids of the programs it was made from (one for an edit, several for a
            crossover or a merge, none for the initial program).
        origin: how it was made: ``initial``, ``edit``, ``rewrite``, ``crossover``, ``merge``.
        worker: name of the worker whose agent made it (``""`` for the initial program).
        planner: name of the planner that made it (a synthesis) or whose worker did.
        agent: index of the agent slot that made it, if any.
        round: the planner round it belongs to.
        result: the evaluation, ``None`` until evaluated.
        features: the descriptor used by the archive: the evaluator's features when it
            gives them, else code-derived ones (see :mod:`aster_nb.features`).
        created: Unix time the program was made.
        id: content hash of ``code`` (derived, never passed).
    """

    code: str
    parents: tuple[str, ...] = ()
    origin: str = "initial"
    worker: str = ""
    planner: str = ""
    agent: int | None = None
    round: int = 0
    result: EvalResult | None = None
    features: tuple[float, ...] | None = None
    created: float = field(default_factory=time.time)
    id: str = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.code, str):
            raise TypeError(f"Program.code must be str, got {type(self.code).__name__}")
        self.id = code_hash(self.code)
        self.parents = tuple(self.parents)

    @property
    def status(self) -> Status:
        return self.result.status if self.result is not None else Status.PENDING

    @property
    def score(self) -> float | None:
        return self.result.score if self.result is not None else None

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok

    def evaluated(self, result: EvalResult, features: tuple[float, ...] | None = None) -> Program:
        """A copy carrying ``result`` (and the archive descriptor, if known)."""
        out = replace(self, result=result, features=features)
        out.id = self.id
        return out
