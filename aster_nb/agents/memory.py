"""An agent's memory of its own past experiments, rendered into its prompts."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..records import Experiment

__all__ = ["AgentMemory", "Experiment"]


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
