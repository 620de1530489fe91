"""An agent's memory of its own past experiments, rendered into its prompts."""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass(slots=True)
class AgentMemory:
    """What one agent slot has tried, newest last.

    Attributes:
        show_recent: how many of the latest experiments a prompt shows.
        show_best: how many of the best-paying older experiments it adds.
    """

    show_recent: int = 6
    show_best: int = 4
    entries: list[Experiment] = field(default_factory=list)

    def record(self, e: Experiment) -> None:
        self.entries.append(e)

    def render(self) -> str:
        """The lines for a prompt: the latest experiments plus the best older ones."""
        if not self.entries:
            return "(none yet)"
        recent = self.entries[-self.show_recent :]
        older = [e for e in self.entries[: -self.show_recent] if (e.delta or 0) > 0]
        older.sort(key=lambda e: e.delta or 0, reverse=True)
        shown = sorted(older[: self.show_best] + recent, key=lambda e: e.n, reverse=True)
        return "\n".join(e.line() for e in shown)

    def __len__(self) -> int:
        return len(self.entries)
