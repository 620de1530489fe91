"""The handoff feed: what each worker did, learned and worries about, newest first, with
its report's warning badges and by-site table (:mod:`aster_nb.handoffreport`).

An anywidget whose ESM and CSS are ``widgets/handoffs.js`` and ``widgets/handoffs.css``
(shipped as ``aster_nb.ui.assets``); the kernel syncs a list of plain dicts.
"""

from __future__ import annotations

import json
import math
from collections import deque
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import traitlets

from ..events import Event, HandoffReceived
from .base import ErrorSink, ReplayView
from .frontend import asset
from .throttle import DEFAULT_INTERVAL

if TYPE_CHECKING:
    from ..records import Handoff
    from ..run import Run


SITES_SHOWN = 8
"""Rows of a handoff's by-site table in the feed (the store keeps every site)."""


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def entry(
    *,
    worker: str,
    round: int,
    goal: str,
    done: str,
    learned: str,
    concerns: str,
    stats: dict[str, Any],
    best_id: str | None,
    report: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One feed entry as synced to the browser (JSON-safe); ``report`` is the handoff
    report's dict (:meth:`HandoffReport.to_dict <aster_nb.handoffreport.HandoffReport.to_dict>`),
    shown as warning badges and a by-site table."""
    rep = report or {}
    return {
        "worker": worker,
        "round": int(round),
        "goal": goal,
        "done": done,
        "learned": learned,
        "concerns": concerns,
        "best_id": best_id,
        "base_score": _num(stats.get("base_score")),
        "best_score": _num(stats.get("best_score")),
        "flags": [
            {"kind": str(f.get("kind", "")), "text": str(f.get("text", ""))}
            for f in rep.get("flags") or ()
        ],
        "sites": [
            {
                "site": str(x.get("site", "")),
                **{k: int(x.get(k) or 0) for k in ("tried", "evaluated", "failed", "raised")},
                "gain": _num(x.get("gain")),
            }
            for x in list(rep.get("sites") or ())[:SITES_SHOWN]
        ],
        "sites_more": max(0, len(rep.get("sites") or ()) - SITES_SHOWN),
    }


def from_handoff(h: Handoff) -> dict[str, Any]:
    return entry(
        worker=h.worker,
        round=h.round,
        goal=h.goal,
        done=h.done,
        learned=h.learned,
        concerns=h.concerns,
        stats=dict(h.stats),
        best_id=h.best.id if h.best is not None else None,
        report=None if h.report is None else h.report.to_dict(),
    )


def _report(raw: Any) -> dict[str, Any] | None:
    """A stored report (JSON text; NULL for a planner's handoff and older rows)."""
    if not isinstance(raw, str):
        return None
    try:
        d = json.loads(raw)
    except ValueError:
        return None  # a damaged report hides its numbers, not the handoff's words
    return d if isinstance(d, dict) else None


def written_by(handoffs: Any, history: Any) -> np.ndarray:
    """How many programs were stored when each handoff was written (its place in a replay).

    The store records it (``handoffs.programs``); rows written before it did are placed
    by time: the programs whose evaluation had ended (created + evaluation seconds) by then.
    """
    n = len(handoffs)
    known = handoffs["programs"] if "programs" in handoffs else [None] * n
    out = np.zeros(n, dtype=np.int64)
    ends = np.sort((history["created"] + history["eval_seconds"].fillna(0)).to_numpy())
    for i, (k, at) in enumerate(zip(known, handoffs["created"], strict=True)):
        recorded = _num(k)  # None for NULL (NaN in the frame)
        out[i] = int(recorded) if recorded is not None else np.searchsorted(ends, at, "right")
    return out


class HandoffFeed(ReplayView, anywidget.AnyWidget):
    """Handoffs newest first, each with its round, worker, goal, and what was done, learned
    and worrying. Starts from the store (``run.handoffs()``), then follows
    ``HandoffReceived`` events; ``show(upto=t)`` (the replay slider) shows only the
    handoffs written by the time the store held ``t`` programs.

    Args:
        run: the run to follow.
        limit: most entries kept in the feed (older ones stay in the store).
        interval: minimum seconds between syncs to the browser.
        errors: where exceptions go (a dashboard shares one).
    """

    _esm = asset("handoffs.js")
    _css = asset("handoffs.css")
    entries = traitlets.List(traitlets.Dict()).tag(sync=True)
    _follows = (HandoffReceived,)

    def __init__(
        self,
        run: Run,
        *,
        limit: int = 200,
        interval: float = DEFAULT_INTERVAL,
        errors: ErrorSink | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        super().__init__()
        self.limit = limit
        self._pending: deque[Handoff] = deque(maxlen=limit)
        self._reload = False  # the replay point moved: read the feed again from the store
        self._live(run, interval=interval, errors=errors)
        self.add_class("aster-handoffs")
        self.entries = self._stored()

    def show(self, *, upto: int | None) -> None:
        super().show(upto=upto)
        self._reload = True

    def _stored(self, upto: int | None = None) -> list[dict[str, Any]]:
        df = self.run.handoffs()
        if upto is not None and len(df):
            df = df[written_by(df, self.run.history()) <= upto]
        rows = df.tail(self.limit).iloc[::-1]
        return [
            entry(
                worker=r.worker,
                round=r.round,
                goal=r.goal,
                done=r.done,
                learned=r.learned,
                concerns=r.concerns,
                stats=json.loads(r.stats) if isinstance(r.stats, str) else {},
                best_id=r.best_id if isinstance(r.best_id, str) else None,
                report=_report(getattr(r, "report", None)),
            )
            for r in rows.itertuples(index=False)
        ]

    def _on_event(self, e: Event) -> None:
        # in replay the past does not change; going live reads the store again
        if isinstance(e, HandoffReceived) and self.upto is None:
            self._pending.append(e.handoff)  # O(1); converted at the next redraw
            self.throttle.mark()

    def _draw(self) -> None:
        if self._reload:
            self._reload = False
            self._pending.clear()
            self.entries = self._stored(self.upto)
            return
        if not self._pending:
            return
        new = [from_handoff(h) for h in reversed(self._pending)]
        self._pending.clear()
        self.entries = (new + list(self.entries))[: self.limit]
