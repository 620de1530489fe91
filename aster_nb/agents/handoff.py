"""Writing handoffs: a worker's report from its attempt log, a planner's from its round.

The :class:`~aster_nb.records.Handoff` record itself lives in :mod:`aster_nb.records`
(re-exported here); this module makes them: the counts, the log lines a planner reads, the
model's DONE / LEARNED / CONCERNS sections (the numbers go out even when that call fails).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..edits import unified_diff
from ..handoffreport import build_report
from ..llm.base import Model, Request, user
from ..records import Experiment, Handoff, Program, RoundResult
from .attempt import ask
from .prompts import handoff_prompt

__all__ = ["HANDOFF_LOG_LINES", "Handoff", "parse_sections", "round_handoff", "write_handoff"]

_SECTION = re.compile(r"^\s*\**(DONE|LEARNED|CONCERNS)\**\s*:\s*", re.MULTILINE | re.IGNORECASE)
HANDOFF_LOG_LINES = 80  # attempt lines a handoff prompt shows; counts cover the rest


def parse_sections(text: str) -> dict[str, str]:
    """``DONE`` / ``LEARNED`` / ``CONCERNS`` sections of a model's handoff text.

    A reply without the headers is kept whole as ``done`` rather than dropped.
    """
    parts = _SECTION.split(text)
    out = {"done": "", "learned": "", "concerns": ""}
    if len(parts) == 1:
        out["done"] = text.strip()
        return out
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        out[name.lower()] = body.strip()
    return out


async def write_handoff(
    *,
    worker: str,
    goal: str,
    round: int,
    base: Program,
    best: Program,
    log: list[Experiment],
    counts: dict[str, Any],
    model: Model,
    system: str,
    seed: int,
    timeout: float,
    goals: Sequence[tuple[int, str]] = (),
) -> Handoff:
    """A worker's handoff: its numbers (:func:`~aster_nb.handoffreport.build_report`:
    by site, against the round's start, with warning signs) and the model's words on them.

    Args:
        worker: the worker's name.
        goal: the goal it started the round with.
        round: the planner round.
        base: the program it started from (the round's start).
        best: the best program it found (``base`` if nothing beat it).
        log: its applied attempts.
        counts: what the scheduler and the bookkeeping counted (``evaluations``,
            ``discarded``, ``discarded_usd``, ``discarded_tokens``, ``input_tokens``,
            ``output_tokens``).
        model: the model that writes the sections.
        system: the system prompt.
        seed: the call's seed.
        timeout: seconds the call may take (then the handoff says it failed).
        goals: ``(first attempt, goal)`` of each goal its attempts worked toward, in
            order; the last is the handoff's goal (a steer during the round shows here).
    """
    log = sorted(log, key=lambda e: e.n)
    report = build_report(log, start=base.score if base.ok else None, goals=goals or ((0, goal),))
    goal = report.goals[-1][1]
    c = Counter(e.status for e in log)
    stats = {
        "attempts": len(log),
        "evaluations": counts["evaluations"],
        "ok": c["ok"],
        "failed": sum(c[k] for k in ("error", "timeout", "memory", "invalid", "lost")),
        # runs stopped early for a clearly worse curve than their parent's: not failures
        "stopped": c["stopped"],
        "edit_failed": c["edit_failed"],
        "model_errors": c["model_error"],
        "duplicates": c["duplicate"],
        "discarded": counts["discarded"],
        "discarded_usd": counts["discarded_usd"],
        "discarded_tokens": counts["discarded_tokens"],
        "improved": sum(1 for e in log if (e.delta or 0) > 0),  # on their parents
        "raises": len(report.raises),  # of the round's best
        "base_score": base.score,
        "best_score": best.score,
        # a noisy task's best is a mean over seeds: its spread and how many
        "best_spread": best.result.spread if best.result is not None else None,
        "best_repeats": best.result.repeats if best.result is not None else None,
        "input_tokens": counts["input_tokens"],
        "output_tokens": counts["output_tokens"],
    }
    shown = telling(log, HANDOFF_LOG_LINES)
    prompt = handoff_prompt(goal=goal, report=report, log="\n".join(e.line() for e in shown))
    try:
        resp = await ask(
            model,
            Request(
                messages=(user(prompt),),
                system=system,
                purpose="handoff",
                seed=seed,
                tags=(("worker", worker),),
            ),
            timeout=timeout,
        )
        sections = parse_sections(resp.text)
    except Exception as e:  # the handoff still goes out, with the numbers
        sections = {
            "done": f"{len(log)} attempts, {stats['evaluations']} evaluations.",
            "learned": "",
            "concerns": f"the handoff model call failed: {type(e).__name__}: {e}",
        }
    return Handoff(
        worker=worker,
        goal=goal,
        round=round,
        done=sections["done"],
        learned=sections["learned"],
        concerns=sections["concerns"],
        best=best,
        base_id=base.id,
        diff=unified_diff(base.code, best.code, a_name="base", b_name="best"),
        stats=stats,
        report=report,
    )


def round_handoff(planner: str, goal: str, r: RoundResult) -> Handoff:
    """A planner's handoff to its own planner: its round, summed up without a model.

    Its concerns are its children's warning signs with their numbers (their words where a
    child has no report), and a round that did not raise the current best says so.
    """
    best = r.best
    if best.ok and r.base.ok:
        outcome = f"best {best.score:.10g}, {best.score - r.base.score:+.6g} over the round's start"
    else:
        outcome = f"best {best.score if best.ok else best.status}"
    done = (
        f"Round {r.round}: {len(r.handoffs)} children, {len(r.merges)} merges; {outcome} "
        f"(start {r.base.score if r.base.ok else r.base.status})."
    )
    learned = "\n".join(f"{h.worker}: {h.learned}" for h in r.handoffs if h.learned)
    concerns = [] if r.improved else ["the round did not raise the current best"]
    for h in r.handoffs:
        if h.report is not None:
            concerns += [f"{h.worker}: {f.text}" for f in h.report.flags]
        elif h.concerns:
            concerns.append(f"{h.worker}: {h.concerns}")
    return Handoff(
        worker=planner,
        goal=goal,
        round=r.round,
        done=done,
        learned=learned,
        concerns="\n".join(f"- {c}" for c in concerns) or "none flagged by its children",
        best=best,
        base_id=r.base.id,
        diff=unified_diff(r.base.code, best.code, a_name="base", b_name="best"),
        stats={
            "base_score": r.base.score,
            "best_score": best.score,
            # a noisy task's best is a mean over seeds: its spread and how many
            "best_spread": best.result.spread if best.result is not None else None,
            "best_repeats": best.result.repeats if best.result is not None else None,
            "evaluations": sum(h.stats.get("evaluations", 0) for h in r.handoffs) + len(r.merges),
            "children": {h.worker: h.stats.get("best_score") for h in r.handoffs},
        },
    )


def telling(log: list[Experiment], limit: int) -> list[Experiment]:
    """The attempts most worth a planner's reading: the best gains, then the latest."""
    if len(log) <= limit:
        return log
    gains = sorted((e for e in log if (e.delta or 0) > 0), key=lambda e: e.delta or 0, reverse=True)
    keep = {e.n for e in gains[: limit // 2]}
    for e in reversed(log):
        if len(keep) >= limit:
            break
        keep.add(e.n)
    return [e for e in log if e.n in keep]
