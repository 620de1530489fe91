"""Building the prompts agents send, from the templates in :mod:`aster_nb.prompts`."""

from __future__ import annotations

import re
from collections.abc import Sequence

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


def handoff_prompt(
    *, goal: str, base: Program, best: Program, stats: dict[str, object], log: str
) -> str:
    def s(p: Program) -> str:
        return f"{p.score:.10g}" if p.ok else f"none ({p.status})"

    return render(
        "handoff",
        goal=goal,
        base_score=s(base),
        best_score=s(best),
        log=log or "(empty)",
        **{
            k: stats[k]
            for k in (
                "attempts",
                "evaluations",
                "ok",
                "improved",
                "failed",
                "edit_failed",
                "model_errors",
                "duplicates",
            )
        },
    )
