"""A run's spend over all its sessions: what the store kept plus this session's ledger.

Why apart: the spending ledger (:class:`~aster_nb.llm.spend.Spend`) lives in one process,
and a run reopened with ``Run.open`` starts a new one at zero; a reopened run showed
0 tokens where the session that made it had spent 12.6M. So the run keeps its totals in
the store (the ``spend`` meta key), rewritten after every handoff, every round and at
close, and reads them back on open. A process killed mid-round loses the spend booked
since the last handoff. The caps (``max_usd``, ``max_tokens``) still apply per session:
they are the ledger's, and a resume may be given a new budget.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, field, fields
from typing import Any

from .llm import Spend
from .store import Store

__all__ = ["RunSpend", "Spent"]

META_KEY = "spend"


@dataclass(frozen=True, slots=True)
class Spent:
    """What model calls cost, over every session of a run.

    Attributes:
        usd: dollars (0 for the offline model, which has no prices).
        tokens: tokens of every kind.
        input_tokens: prompt tokens.
        output_tokens: reply tokens.
        cache_read_tokens: prompt tokens read from the provider's cache.
        cache_write_tokens: prompt tokens written to it.
        calls: calls that got a reply.
        retries: retried attempts of calls.
        failures: calls that ended without a reply.
        by_model: the same per model name (empty inside a per-model entry).
    """

    usd: float = 0.0
    tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    calls: int = 0
    retries: int = 0
    failures: int = 0
    by_model: dict[str, Spent] = field(default_factory=dict)

    def __add__(self, other: Spent) -> Spent:
        models = {**self.by_model}
        for name, s in other.by_model.items():
            models[name] = models[name] + s if name in models else s
        return Spent(**{f: getattr(self, f) + getattr(other, f) for f in _NUMBERS}, by_model=models)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f: getattr(self, f) for f in _NUMBERS}
        if self.by_model:
            out["by_model"] = {k: v.to_dict() for k, v in sorted(self.by_model.items())}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Spent:
        numbers = {f: (float if f == "usd" else int)(d.get(f, 0) or 0) for f in _NUMBERS}
        models = {str(k): cls.from_dict(v) for k, v in (d.get("by_model") or {}).items()}
        return cls(**numbers, by_model=models)


_NUMBERS = tuple(f.name for f in fields(Spent) if f.name != "by_model")


def ledger_spent(spend: Spend | None) -> Spent:
    """This session's ledger as a :class:`Spent`, per model from its ``model`` tags."""
    if spend is None:
        return Spent()
    total = Spent.from_dict(spend.total.as_dict())
    models = {name: Spent.from_dict(t.as_dict()) for name, t in spend.by("model").items()}
    return Spent(**{f: getattr(total, f) for f in _NUMBERS}, by_model=models)


class RunSpend:
    """A run's spend: earlier sessions' (from the store) plus ``ledger``'s.

    Args:
        store: the run's store; its ``spend`` meta holds the earlier sessions' totals.
        ledger: this session's ledger (``None``: nothing spent in this session).
    """

    def __init__(self, store: Store, ledger: Spend | None) -> None:
        self.store, self.ledger = store, ledger
        self.before = Spent.from_dict(store.meta(META_KEY) or {})

    def total(self) -> Spent:
        """Everything the run's model calls cost, in every session so far."""
        return self.before + ledger_spent(self.ledger)

    def save(self) -> None:
        """Write :meth:`total` to the store (a no-op once the store is closed)."""
        # closed: the last save was at close
        with contextlib.suppress(sqlite3.ProgrammingError):
            self.store.set_meta(META_KEY, self.total().to_dict())
