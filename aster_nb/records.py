"""Records: every value the layers pass each other, in one place at the bottom.

A program and its evaluation (:class:`Program`, :class:`EvalResult`, content hashing), a
worker's report (:class:`Handoff`), a planner's round (:class:`RoundResult`), one agent
attempt as stored (:class:`AttemptRecord`) and as an agent remembers it
(:class:`Experiment`), and a worker's goal (:class:`Goal`). Plain frozen dataclasses that
import nothing else of aster_nb but a handoff's numbers (:mod:`aster_nb.handoffreport`), so
the store, the events, the agents and the UI can all use them without importing each other.

A :class:`Program` is identified by the hash of its code, so identical code is one program
however many agents propose it; the store, the executor's cache and the archives all key on
that id. Two kinds of numbers describe a program and are easy to confuse:
``EvalResult.features`` is what the evaluator reported, and ``Program.descriptor`` is
where the archive places the program (the evaluator's features when it gives them, else
metrics, a code embedding or code statistics; see :mod:`aster_nb.features`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from .handoffreport import HandoffReport


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
    # killed by the parent side because its intermediate values were clearly worse than
    # its parent's (a task's early_stop): never cached, never ranked, not a crash
    STOPPED = "stopped"


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
        spread: for a noisy task, the standard deviation of the score over the seeds it
            is the mean of (``None`` for one seed or a deterministic task).
        repeats: how many seeds ``score`` is the mean of (1 for a deterministic task).
    """

    status: Status
    score: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    features: tuple[float, ...] | None = None
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    spread: float | None = None
    repeats: int = 1

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
            "spread": self.spread,
            "repeats": self.repeats,
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
            spread=None if d.get("spread") is None else float(d["spread"]),
            repeats=int(d.get("repeats", 1) or 1),
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
        descriptor: where the archive places the program: the evaluator's features when
            it gives them, else metrics, a code embedding or code statistics (see
            :mod:`aster_nb.features`). ``None`` until described.
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
    descriptor: tuple[float, ...] | None = None
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

    def evaluated(
        self,
        result: EvalResult,
        descriptor: tuple[float, ...] | None = None,
        *,
        features: tuple[float, ...] | None = None,
    ) -> Program:
        """A copy carrying ``result`` and the archive ``descriptor``, if known.

        ``features`` is the old name of ``descriptor``, still accepted.
        """
        if features is not None:
            if descriptor is not None:
                raise TypeError("evaluated() takes descriptor or its old name features, not both")
            descriptor = features
        out = replace(self, result=result, descriptor=descriptor)
        out.id = self.id
        return out


@dataclass(frozen=True, slots=True)
class Handoff:
    """A worker's (or a planner's) report at the end of its budget.

    Attributes:
        worker: the worker's name.
        goal: the goal it worked on.
        round: the planner round.
        done: what was tried and what came of it.
        learned: what paid and what did not.
        concerns: failure modes, noise, stagnation.
        best: the best program it found (the base if nothing beat it).
        base_id: the program it started from.
        diff: unified diff from the base to ``best``.
        stats: counts and scores: attempts, evaluations, failed, improved, base_score,
            best_score, tokens.
        report: what was tried by site and what paid against the round's start, and the
            warning signs (:class:`~aster_nb.handoffreport.HandoffReport`); ``None`` for a
            planner's handoff and for handoffs stored before reports existed.
    """

    worker: str
    goal: str
    round: int
    done: str
    learned: str
    concerns: str
    best: Program | None
    base_id: str | None
    diff: str
    stats: dict[str, Any] = field(default_factory=dict)
    report: HandoffReport | None = None


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What one planner round did.

    Attributes:
        round: its number.
        base: the current best it started from.
        best: the current best after synthesis (``base`` if nothing beat it).
        handoffs: the children's handoffs.
        merges: merge candidates the planner evaluated.
        improved: whether ``best`` beats ``base``.
        seconds: wall time of the round.
    """

    round: int
    base: Program
    best: Program
    handoffs: tuple[Handoff, ...]
    merges: tuple[Program, ...] = ()
    improved: bool = False
    seconds: float = 0.0

    @property
    def child_bests(self) -> dict[str, float | None]:
        return {h.worker: (h.best.score if h.best is not None else None) for h in self.handoffs}


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One agent attempt as the store keeps it, successful or not.

    Attributes:
        worker: the worker whose agent made it.
        n: the worker's attempt number.
        agent: the agent slot.
        round: the planner round.
        parent_id: the program the edit started from.
        inspiration_ids: the inspirations the prompt showed.
        program_id: the child's id, when one was made.
        outcome: ``ok``, ``improved``, ``duplicate``, ``edit_failed``, ``model_error``,
            ``budget`` or an evaluation failure (``error``, ``timeout``, ...).
        reason: why it failed, when it did.
        rationale: the model's text before its edit.
        goal: the goal the attempt worked toward.
        change: a one-line diff summary.
        model: the model's name.
        input_tokens: prompt tokens.
        output_tokens: reply tokens.
        cache_read_tokens: prompt tokens read from the provider's cache.
        cache_write_tokens: prompt tokens written to it.
        cost_usd: what the call cost.
        latency: seconds the call took.
        started: Unix time the attempt started.
        finished: Unix time it was recorded.
        retries: the call's retries.
        focus: the goal's areas as the attempt started (its prompt's focus).
        areas: the surface areas whose code the edit changed (empty without a child).
    """

    worker: str
    n: int
    agent: int
    round: int
    parent_id: str | None
    inspiration_ids: tuple[str, ...]
    program_id: str | None
    outcome: str
    reason: str | None
    rationale: str
    goal: str
    change: str
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    latency: float
    started: float
    finished: float
    retries: int = 0
    focus: tuple[str, ...] = ()
    areas: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Experiment:
    """One attempt as the agent remembers it.

    Attributes:
        n: the worker's attempt number.
        parent_id: the program the edit started from.
        parent_score: its score (``None`` if it had none).
        idea: the first sentence of the model's rationale.
        change: a one-line diff summary (:func:`aster_nb.edits.diff_summary`).
        status: ``ok``, an evaluation failure (``error``, ``timeout``, ``memory``,
            ``invalid``), ``edit_failed`` or ``duplicate``.
        score: the child's score when ``ok``.
        reason: why it failed, when it did.
        program_id: the child's id, when one was made.
    """

    n: int
    parent_id: str
    parent_score: float | None
    idea: str
    change: str
    status: str
    score: float | None = None
    reason: str | None = None
    program_id: str | None = None

    @property
    def delta(self) -> float | None:
        if self.score is None or self.parent_score is None:
            return None
        return self.score - self.parent_score

    def line(self) -> str:
        """The memory line shown in prompts (parsed back by the offline model)."""
        if self.status == "ok":
            d = self.delta
            tail = f"ok {self.score:.10g}" + (f" ({d:+.6g})" if d is not None else "")
        else:
            # The last lines say what went wrong (a traceback's head is the evaluator's frames).
            lines = [ln.strip() for ln in (self.reason or "").splitlines() if ln.strip()]
            reason = " / ".join(lines[-2:])[-240:]
            tail = f"FAILED {self.status}: {reason}"
        ps = "none" if self.parent_score is None else f"{self.parent_score:.10g}"
        idea = self.idea.replace("\n", " ")[:200]
        return f"- #{self.n} from {self.parent_id[:8]} ({ps}): {idea} | change: {self.change} | result: {tail}"


@dataclass(frozen=True, slots=True)
class Goal:
    """One worker's goal.

    Attributes:
        text: the goal as the worker's prompts show it.
        set_by: ``planner`` or ``researcher``.
        pinned: a pinned goal is never revised by the planner's model.
        at: Unix time it was set.
        areas: the surface areas the worker's agents may edit (its prompts' focus), resolved
            when the goal was set; never read from the goal's words, whose meaning a name
            can invert ("keep `layout` as is").
        areas_by: who chose ``areas``: ``researcher`` or ``planner`` (named explicitly),
            or ``default`` (nobody did: every area of the task).
    """

    text: str
    set_by: str = "planner"
    pinned: bool = False
    at: float = field(default_factory=time.time)
    areas: tuple[str, ...] = ()
    areas_by: str = "default"
