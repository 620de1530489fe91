"""The offline model reads real prompts and proposes edits that apply."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from aster_nb.agents.memory import AgentMemory, Experiment
from aster_nb.agents.prompts import handoff_prompt, propose_prompt
from aster_nb.edits import apply_edit, diff_summary, parse_edit
from aster_nb.handoffreport import build_report
from aster_nb.llm import OfflineModel, Request, user
from aster_nb.llm.offline import write_handoff
from aster_nb.program import EvalResult, Program, Status
from aster_nb.task import SurfaceArea, Task

CODE = """import math
# EVOLVE-BLOCK-START alpha
a = 1.0
b = 2
# EVOLVE-BLOCK-END
# EVOLVE-BLOCK-START beta
c = max(a, 0.5) + 3.0 * b
# EVOLVE-BLOCK-END
def f():
    return -(a - 3) ** 2 - (c - 1) ** 2
"""
TASK = Task(
    name="t",
    root=Path("."),
    statement="toy",
    initial_code=CODE,
    evaluator_path=Path("x"),
    surface_areas=(SurfaceArea("alpha", "first"), SurfaceArea("beta", "second")),
)


def _ok(code: str, score: float) -> Program:
    return Program(code=code).evaluated(EvalResult(status=Status.OK, score=score))


def _prompt(focus=("alpha",), memory: AgentMemory | None = None, insp=()) -> str:
    return propose_prompt(
        task=TASK,
        goal="improve",
        focus=focus,
        parent=_ok(CODE, -4.0),
        inspirations=list(insp),
        memory=(memory or AgentMemory()).render(),
    )


async def _replies(prompt: str, n: int, seed: int = 0) -> list[str]:
    m = OfflineModel(seed=seed)
    return [(await m.complete(Request(messages=(user(prompt),), seed=i))).text for i in range(n)]


async def test_edits_apply_and_stay_in_focus() -> None:
    for text in await _replies(_prompt(focus=("alpha",)), 30):
        new = apply_edit(CODE, parse_edit(text))
        # beta's line and everything outside alpha are untouched
        assert new.splitlines()[6] == CODE.splitlines()[6]
        assert new.splitlines()[8:] == CODE.splitlines()[8:]
        assert text.split("\n")[0].strip(), "every edit comes with a rationale"


async def test_same_seed_same_prompt_same_edit() -> None:
    p = _prompt()
    assert await _replies(p, 5, seed=3) == await _replies(p, 5, seed=3)
    assert await _replies(p, 5, seed=3) != await _replies(p, 5, seed=4)


async def test_uses_several_operators_and_inspirations() -> None:
    insp = _ok(CODE.replace("a = 1.0", "a = 2.5"), -0.25)
    texts = await _replies(_prompt(focus=("alpha", "beta"), insp=[insp]), 60)
    kinds = Counter(t.split(" ")[0] for t in texts)
    assert kinds["Perturb"] > 10
    assert kinds["Take"] > 0, "crossover from an inspiration"
    assert kinds["Swap"] > 0, "operator/call swaps (max/min, +/-, *//)"


async def test_memory_steers_proposals() -> None:
    mem = AgentMemory()
    bad = CODE.replace("a = 1.0", "a = 1.1")
    # A failed edit is never proposed again; a paying one gets continued.
    mem.record(
        Experiment(
            n=1,
            parent_id="p0",
            parent_score=-4.0,
            idea="Perturb a",
            change=diff_summary(CODE, bad),
            status="invalid",
            reason="bad",
        )
    )
    good = CODE.replace("b = 2", "b = 3")
    parent = _ok(good, -3.0)
    mem.record(
        Experiment(
            n=2,
            parent_id=_ok(CODE, -4).id,
            parent_score=-4.0,
            idea="Perturb b",
            change=diff_summary(CODE, good),
            status="ok",
            score=-3.0,
        )
    )
    prompt = propose_prompt(
        task=TASK, goal="g", focus=("alpha",), parent=parent, inspirations=[], memory=mem.render()
    )
    m = OfflineModel(seed=0)
    outs = []
    for i in range(60):
        r = await m.complete(Request(messages=(user(prompt),), seed=i))
        outs.append(apply_edit(good, parse_edit(r.text)))
    assert all("a = 1.1\n" not in o for o in outs)
    assert any("b = 4\n" in o for o in outs), "continues the paying step b: 2 -> 3 -> 4"


def test_handoff_is_written_from_the_log() -> None:
    lines = [
        Experiment(
            n=0,
            parent_id="aa",
            parent_score=1.0,
            idea="Perturb x",
            change="L3: 'x = 1' -> 'x = 2'",
            status="ok",
            score=1.5,
        ),
        Experiment(
            n=1,
            parent_id="aa",
            parent_score=1.0,
            idea="Swap max",
            change="L4: 'y = max(a)' -> 'y = min(a)'",
            status="invalid",
            reason="overlap of circles 1 and 2",
        ),
        Experiment(
            n=2,
            parent_id="aa",
            parent_score=1.0,
            idea="Perturb z",
            change="-",
            status="error",
            reason="ZeroDivisionError: division by zero",
        ),
    ]
    report = build_report(lines, start=1.0)
    prompt = handoff_prompt(goal="g", report=report, log="\n".join(e.line() for e in lines))
    text = write_handoff(prompt)
    assert "3 attempts from the round's start (1): 3 evaluations (1 ok, 2 failed)" in text
    assert "The best rose once, to 1.5 (+0.5 over the start)" in text
    assert "- `x = #`: 1 try (1 evaluated); raised the best once, +0.5 in all" in text
    assert "67% of evaluations failed (2 of 3): 1 invalid, 1 error" in text


INDENTED = """# EVOLVE-BLOCK-START knob
def settings():
    step = 0.6
    ## a markdown-looking comment, and a fence in a string:
    note = '```'
    return step
# EVOLVE-BLOCK-END
"""
INDENTED_TASK = Task(
    name="t",
    root=Path("."),
    statement="s",
    initial_code=INDENTED,
    evaluator_path=Path("x"),
    surface_areas=(SurfaceArea("knob", "k"),),
)


async def test_indented_sites_and_odd_code_are_handled() -> None:
    before = INDENTED.replace("step = 0.6", "step = 0.5")
    worse = INDENTED.replace("step = 0.6", "step = 0.7")
    mem = AgentMemory()
    mem.record(
        Experiment(
            n=1,
            parent_id="p0",
            parent_score=1.0,
            idea="Perturb step",
            change=diff_summary(before, INDENTED),
            status="ok",
            score=2.0,
        )
    )
    mem.record(
        Experiment(
            n=2,
            parent_id="p1",
            parent_score=2.0,
            idea="Perturb step",
            change=diff_summary(INDENTED, worse),
            status="ok",
            score=1.5,
        )
    )
    prompt = propose_prompt(
        task=INDENTED_TASK,
        goal="knob",
        focus=("knob",),
        parent=_ok(INDENTED, 2.0),
        inspirations=[],
        memory=mem.render(),
    )
    m = OfflineModel(seed=0)
    outs = []
    for i in range(60):
        r = await m.complete(Request(messages=(user(prompt),), seed=i))
        outs.append(apply_edit(INDENTED, parse_edit(r.text)))
    assert all("    step = 0.7\n" not in o for o in outs), (
        "a change that did not pay is not repeated"
    )
    assert any("    step = 0.72\n" in o for o in outs), "the paying step 0.5 -> 0.6 is continued"
    assert all("## a markdown-looking comment" in o and "'```'" in o for o in outs)


async def test_whole_program_focus_still_crosses_over() -> None:
    insp = _ok(CODE.replace("a = 1.0", "a = 2.5"), -0.25)
    texts = await _replies(_prompt(focus=(), insp=[insp]), 60)
    assert any(t.startswith("Take") for t in texts)
    assert any(insp.id in t for t in texts), "crossover names its donor"
