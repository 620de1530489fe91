"""Building the prompts agents send, from the templates in :mod:`aster_nb.prompts`."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..handoffreport import HandoffReport
from ..program import Program
from ..prompts import render
from ..task import Task


def system_prompt(task: Task) -> str:
    areas = "\n".join(f"- {a.name}: {a.description}" for a in task.surface_areas)
    return render("system", statement=task.statement.strip(), areas=areas)


def _score(p: Program) -> str:
    if p.ok:
        return f"score {p.score:.10g}"
    if p.result is None:
        return "not evaluated"
    return f"status {p.status}"


def fence(code: str) -> str:
    """A code fence longer than any run of backticks in ``code``."""
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def fenced(code: str) -> str:
    """``code`` in a python fence that nothing inside it can close."""
    f = fence(code)
    body = code if code.endswith("\n") else code + "\n"
    return f"{f}python\n{body}{f}"


def propose_prompt(
    *,
    task: Task,
    goal: str,
    focus: Sequence[str],
    parent: Program,
    inspirations: Sequence[Program],
    memory: str,
) -> str:
    areas = {a.name: a.description for a in task.surface_areas}
    if focus:
        focus_text = (
            ", ".join(focus) + "\n" + "\n".join(f"- {f}: {areas.get(f, '')}" for f in focus)
        )
    else:
        focus_text = "(whole program)"
    note = ""
    if parent.result is not None and not parent.ok:
        note = (
            f"\nThe parent does not pass the evaluator ({parent.status}): "
            f"{(parent.result.error or '').strip()[-600:]}\nRepair it first.\n"
        )
    insp = (
        "\n".join(
            f"### Inspiration {i} (id {p.id}, {_score(p)})\n{fenced(p.code)}"
            for i, p in enumerate(inspirations, 1)
        )
        or "(none)"
    )
    return render(
        "propose",
        goal=goal,
        focus=focus_text,
        parent_id=parent.id,
        parent_status=_score(parent),
        parent_code=fenced(parent.code),
        parent_note=note,
        inspirations=insp,
        memory=memory,
    )


def handoff_prompt(*, goal: str, report: HandoffReport, log: str) -> str:
    """The prompt that closes a worker's budget: ``report``'s numbers (outcome, sites,
    raises, warning signs, all against the round's start) and the attempt log."""

    def num(x: float | None, none: str = "none") -> str:
        return none if x is None else f"{x:.10g}"

    r = report
    steered = ""
    if r.steered:
        earlier = "; ".join(f"from #{n}: {g!r}" for n, g in r.goals[:-1])
        steered = (
            f"Steered during the round: {len(r.goals)} goals were in effect ({earlier}); "
            f"the goal above was in effect from attempt #{r.goals[-1][0]} on.\n"
        )
    failures = ", ".join(f"{k} {n}" for k, n in r.failures.items()) or "none"
    raises = "\n".join(
        f"- #{x.n} at evaluation {x.evaluation}: {x.score:.10g}"
        + (f" ({x.gain:+.6g} over the best before it)" if x.gain is not None else " (first valid)")
        + (f", {x.score - r.start:+.6g} over the round's start" if r.start is not None else "")
        + f"; change {x.change}"
        for x in r.raises[-RAISES_SHOWN:]
    )
    return render(
        "handoff",
        goal=goal,
        steered=steered,
        start=num(r.start, "none (the start had no score)"),
        best=num(r.best),
        top=num(r.top),
        attempts=r.attempts,
        evaluations=r.evaluations,
        ok=r.ok,
        failed=r.failed,
        failures=failures,
        duplicates=r.duplicates,
        edit_failed=r.no_program.get("edit_failed", 0),
        model_errors=r.no_program.get("model_error", 0),
        raises=len(r.raises),
        last_raise=(r.evaluations - r.since_raise) if r.raises else "none",
        sites="\n".join(s.line() for s in r.sites[:SITES_SHOWN]) or "(none)",
        raises_log=raises or "(none)",
        flags="\n".join(f.line() for f in r.flags) or "(none)",
        log=log or "(empty)",
    )


# Lines a handoff prompt shows (the report keeps more): the sites most paying, the last raises.
SITES_SHOWN, RAISES_SHOWN = 20, 15
