"""Handoffs a researcher reads: what was tried by site, what paid against the round's start,
and warning signs with their numbers; the same for the offline model and a model's words.

The numbers (:mod:`aster_nb.handoffreport`) are checked against hand-made logs, and on real
workers against the attempts and programs their store holds.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from aster_nb.agents import Budget, Worker
from aster_nb.agents.handoff import round_handoff
from aster_nb.agents.prompts import handoff_prompt
from aster_nb.edits import summary_hunks
from aster_nb.handoffreport import HandoffReport, build_report, site_of
from aster_nb.llm import OfflineModel, Request, Response
from aster_nb.llm.handoffs import write_handoff
from aster_nb.program import EvalResult, Program, Status
from aster_nb.records import Experiment, Handoff, RoundResult
from aster_nb.sandbox import LocalExecutor
from aster_nb.store import Store
from aster_nb.task import Task

from .test_worker import cliff

EVALUATED = {"ok", "error", "timeout", "memory", "invalid", "lost"}


def exp(n: int, status: str, change: str, score: float | None = None, **kw: object) -> Experiment:
    return Experiment(
        n=n,
        parent_id="p" * 8,
        parent_score=kw.pop("parent_score", 1.0),  # type: ignore[arg-type]
        idea=str(kw.pop("idea", "Perturb a constant.")),
        change=change,
        status=status,
        score=score,
        reason=kw.pop("reason", None),  # type: ignore[arg-type]
    )


A1 = "L3: 'x = 1' -> 'x = 2'"
A2 = "L3: 'x = 2' -> 'x = 3'"
B1 = "L4: 'y = max(a, 0.5)' -> 'y = min(a, 0.5)'"
AB = "L3: 'x = 2' -> 'x = 2.5'; L4: 'y = max(a, 0.5)' -> 'y = max(a, 0.25)'"

LOG = [
    exp(0, "ok", A1, 1.5),  # raises 1.0 -> 1.5
    exp(1, "invalid", B1, reason="Traceback ...\n    ~~~^^^\nValueError: overlap of 1 and 2"),
    exp(2, "duplicate", A2),
    exp(3, "ok", B1, 1.2, parent_score=0.5),  # +0.7 on its parent, but 0.3 short of the best
    exp(4, "ok", AB, 1.7),  # raises 1.5 -> 1.7, changing both sites
    exp(5, "edit_failed", "-", reason="SEARCH text not found"),
]


def test_the_report_of_a_log_measures_against_the_round_start() -> None:
    r = build_report(LOG, start=1.0, goals=((0, "g"),))
    assert (r.attempts, r.evaluations, r.ok, r.duplicates) == (6, 4, 3, 1)
    assert r.failures == {"invalid": 1} and r.no_program == {"edit_failed": 1}
    assert [(x.n, x.evaluation, round(x.gain, 9)) for x in r.raises] == [(0, 1, 0.5), (4, 4, 0.2)]
    assert sum(x.gain for x in r.raises) == pytest.approx(r.best - r.start) == pytest.approx(0.7)
    assert r.since_raise == 0 and r.top == 1.7
    sites = {s.site: s for s in r.sites}
    assert list(sites) == ["x = #", "y = max(a, #)"], "most paying first, numbers masked"
    x, y = sites["x = #"], sites["y = max(a, #)"]
    assert (x.tried, x.evaluated, x.duplicates, x.raised, x.shared) == (3, 2, 1, 2, 1)
    assert x.gain == pytest.approx(0.7) and x.margin == pytest.approx(0.5) and x.margin_n == 0
    assert (y.tried, y.evaluated, y.failed, y.raised) == (3, 3, 1, 1)
    # #3 gained 0.7 on its weak parent but is 0.3 below the round's best then: no pay
    assert y.gain == pytest.approx(0.2) and y.margin == pytest.approx(0.2) and y.margin_n == 4
    flags = {f.kind: f for f in r.flags}
    assert flags["failures"].text == (
        "25% of evaluations failed (1 of 4): 1 invalid; e.g. ValueError: overlap of 1 and 2"
    )
    assert flags["duplicates"].text.startswith("17% of proposals were duplicates (1 of 6)")
    assert flags["no_program"].text == (
        "17% of attempts produced no program (1 of 6): 1 edit that did not apply"
    )
    assert "stall" not in flags, "the best rose at the last evaluation"
    assert HandoffReport.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_stalls_are_flagged_with_their_numbers() -> None:
    flat = [exp(n, "ok", f"L3: 'x = {n}' -> 'x = {n + 1}'", 0.5) for n in range(30)]
    none = build_report(flat, start=1.0)
    assert [f.text for f in none.flags] == ["no improvement on the round's start in 30 evaluations"]
    late = build_report([exp(0, "ok", A1, 1.1), *flat[1:]], start=1.0)
    assert [(f.kind, f.count, f.of) for f in late.flags] == [("stall", 29, 30)]
    assert late.flags[0].text == (
        "no improvement in the last 29 of 30 evaluations (the best last rose at evaluation 1)"
    )
    assert site_of("  r = 0.25 * x1  ") == "r = # * x#"


def test_the_offline_model_writes_the_report_in_words() -> None:
    r = build_report(LOG, start=1.0, goals=((0, "Improve x."), (3, "Improve y.")))
    prompt = handoff_prompt(goal="Improve y.", report=r, log="\n".join(e.line() for e in LOG))
    assert "- site 'x = #' | tried 3 | evaluated 2 | failed 0 | duplicates 1 | raised 2" in prompt
    assert "Steered during the round: 2 goals" in prompt
    ask = prompt.split("## How to answer")[1]
    assert "one line per site" in ask and "warning sign" in ask and "round's start" in ask
    text = write_handoff(prompt)
    done, rest = text.split("\nLEARNED: ")
    learned, concerns = rest.split("\nCONCERNS:\n")
    assert done == (
        "DONE: 6 attempts from the round's start (1): 4 evaluations (3 ok, 1 failed), "
        "1 duplicates, 1 without a program. The best rose 2 times, to 1.7 (+0.7 over the "
        "start), the last time at evaluation 4 of 4. The goal was steered: 2 goals were in "
        "effect (from #0: 'Improve x.'); the goal above was in effect from attempt #3 on."
    )
    lines = learned.splitlines()
    assert lines[1] == (
        "- `x = #`: 3 tries (2 evaluated, 1 duplicate); raised the best 2 times (one of them "
        "with other sites), +0.7 in all; the largest, 'x = 1' -> 'x = 2' (#0), +0.5."
    )
    assert lines[2].startswith("- `y = max(a, #)`: 3 tries (3 evaluated, 1 failed); raised the")
    assert concerns.splitlines() == [f"- {f.text}." for f in r.flags]
    assert "progress continued" not in text


@pytest.fixture
async def cliff_executor(tmp_path: Path):  # type: ignore[no-untyped-def]
    task = cliff(tmp_path, 1.2)
    async with LocalExecutor.from_task(task, concurrency=2) as ex:
        yield task, ex


async def test_a_round_that_made_no_progress_says_so(cliff_executor, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # X = 1.2 is the best there is: every step up is invalid, every step down scores less
    task, ex = cliff_executor
    store = Store(tmp_path / "run.sqlite")
    w = Worker(name="w0", task=task, model=OfflineModel(seed=0), executor=ex, store=store,
               agents=4, seed=0)  # fmt: skip
    h = await w.run("Raise X.", Program(code=task.initial_code), Budget(evaluations=24))
    r = h.report
    assert r is not None and not r.raises and r.best == r.start == 1.2
    assert r.flags[0].text == f"no improvement on the round's start in {r.evaluations} evaluations"
    failed = next(f for f in r.flags if f.kind == "failures")
    assert f"({r.failed} of {r.evaluations}): {r.failures['invalid']} invalid" in failed.text
    assert f"- {r.flags[0].text}." in h.concerns and f"- {failed.text}." in h.concerns
    assert "No attempt beat the round's start" in h.done
    assert "progress continued" not in h.concerns + h.done + h.learned
    store.close()


async def test_a_handoff_matches_the_attempts_in_its_store(
    tmp_path: Path, toy: Task, toy_executor: LocalExecutor
) -> None:
    store = Store(tmp_path / "run.sqlite")
    base = Program(code=toy.initial_code)
    w = Worker(name="w0", task=toy, model=OfflineModel(seed=2), executor=toy_executor,
               store=store, agents=4, seed=2)  # fmt: skip
    h = await w.run("Raise the score.", base, Budget(evaluations=40))
    r = h.report
    assert r is not None
    with sqlite3.connect(store.path) as db:
        rows = db.execute(
            "SELECT a.n, a.outcome, a.change, p.score FROM attempts a"
            " LEFT JOIN programs p ON p.id = a.program_id WHERE a.worker='w0' ORDER BY a.n"
        ).fetchall()
        (stored,) = db.execute("SELECT report FROM handoffs WHERE worker='w0'").fetchone()
    outcomes = Counter(o for _, o, _, _ in rows)
    assert r.attempts == len(rows) and r.evaluations == h.stats["evaluations"] == 40
    assert r.evaluations == sum(n for o, n in outcomes.items() if o in EVALUATED | {"improved"})
    assert r.duplicates == outcomes["duplicate"]
    assert r.failures == {o: n for o, n in outcomes.items() if o in EVALUATED - {"ok"}}
    # the raises, recomputed from the store: each a new best since the round's start
    best, raises = -12.75, []
    for n, outcome, _, score in rows:
        if outcome in ("ok", "improved") and score > best:
            raises.append((n, score - best))
            best = score
    assert [(x.n, pytest.approx(x.gain)) for x in r.raises] == raises and raises
    assert r.start == -12.75 and r.best == h.best.score == best

    # each line site's tries: the stored attempts with a hunk that changed that line
    def lines(change: str) -> set[str]:
        pairs = [
            pair for _, old, new in summary_hunks(change)
            if len(old.splitlines()) == len(new.splitlines())
            for pair in zip(old.splitlines(), new.splitlines(), strict=True)
        ]  # fmt: skip
        return {site_of(o) for o, n in pairs if o != n}

    checked = [s for s in r.sites if "(+" not in s.site and not s.site.startswith("added")]
    assert checked
    for s in checked:
        assert s.tried == sum(s.site in lines(change or "") for _, _, change, _ in rows), s.site
    assert json.loads(stored) == r.to_dict(), "the store keeps the numbers beside the words"
    assert f"{r.attempts} attempts" in h.done and f"{r.evaluations} evaluations" in h.done
    assert f"`{r.sites[0].site}`: {r.sites[0].tried} tries" in h.learned
    assert all(f"- {f.text}." in h.concerns for f in r.flags)
    store.close()


async def test_a_steer_mid_round_is_the_goal_reported(
    tmp_path: Path, toy: Task, toy_executor: LocalExecutor
) -> None:
    store = Store(tmp_path / "run.sqlite")
    w = Worker(name="w0", task=toy, model=OfflineModel(seed=0), executor=toy_executor,
               store=store, agents=2, seed=0)  # fmt: skip
    begun = []

    def goal() -> str:  # read as each attempt starts: the researcher steers after ten
        begun.append(1)
        return "Improve alpha." if len(begun) <= 10 else "Improve beta."

    h = await w.run("Improve alpha.", Program(code=toy.initial_code), Budget(evaluations=24),
                    goal_source=goal)  # fmt: skip
    assert h.goal == "Improve beta.", "the goal in effect at the end, not the round's first"
    assert [g for _, g in h.report.goals] == ["Improve alpha.", "Improve beta."]
    first_beta = h.report.goals[1][0]
    with sqlite3.connect(store.path) as db:
        (n,) = db.execute(
            "SELECT MIN(n) FROM attempts WHERE worker='w0' AND goal='Improve beta.'"
        ).fetchone()
        (goal_stored,) = db.execute("SELECT goal FROM handoffs").fetchone()
    assert first_beta == n and goal_stored == "Improve beta."
    assert "The goal was steered" in h.done and f"from attempt #{first_beta} on" in h.done
    store.close()


class Scribe:
    """A model that answers proposals like the offline one and writes its own handoff."""

    name = "scribe"

    def __init__(self) -> None:
        self.offline = OfflineModel(seed=0)
        self.prompts: list[str] = []

    async def complete(self, request: Request) -> Response:
        if request.purpose != "handoff":
            return await self.offline.complete(request)
        self.prompts.append(request.prompt)
        return Response(text="DONE: tried alpha.\nLEARNED:\n- `A = #`: paid.\nCONCERNS: none.")


async def test_a_model_written_handoff_keeps_the_numbers(
    tmp_path: Path, toy: Task, toy_executor: LocalExecutor
) -> None:
    store = Store(tmp_path / "run.sqlite")
    model = Scribe()
    w = Worker(name="w0", task=toy, model=model, executor=toy_executor, store=store, agents=2)
    h = await w.run("Raise the score.", Program(code=toy.initial_code), Budget(evaluations=12))
    (prompt,) = model.prompts
    assert h.report is not None and h.report.sites
    for s in h.report.sites[:3]:
        assert s.line() in prompt, "the prompt shows every number the report has"
    assert "## Warning signs" in prompt and "## Sites" in prompt
    assert (h.done, h.learned, h.concerns) == ("tried alpha.", "- `A = #`: paid.", "none.")
    row = store.handoffs().iloc[0]
    assert row["concerns"] == "none." and json.loads(row["report"]) == h.report.to_dict()
    store.close()


def test_a_planner_round_without_progress_says_so() -> None:
    base = Program(code="x = 1\n").evaluated(EvalResult(status=Status.OK, score=1.0))
    report = build_report([exp(n, "ok", A1, 0.5) for n in range(12)], start=1.0)
    child = Handoff(worker="p0.w0", goal="g", round=0, done="", learned="", concerns="words",
                    best=base, base_id=base.id, diff="", report=report)  # fmt: skip
    h = round_handoff("p0", "", RoundResult(round=0, base=base, best=base, handoffs=(child,)))
    assert h.concerns.splitlines() == [
        "- the round did not raise the current best",
        "- p0.w0: no improvement on the round's start in 12 evaluations",
    ]


def test_the_offline_planner_reads_what_paid_from_the_sites() -> None:
    from aster_nb.llm.synthesis import write_plan
    from aster_nb.prompts import render

    def block(worker: str, goal: str, log: list[Experiment], gain: float) -> str:
        r = build_report(log, start=1.0)
        text = write_handoff(handoff_prompt(goal=goal, report=r, log=""))
        return (
            f"### {worker}\ngoal: {goal}\nbest: {1 + gain} (base 1.0, gain {gain:+.6g})\n{text}\n"
        )

    paying = block("w0", "Improve `alpha`.", LOG, 0.7)
    stalled = block("w1", "Improve `beta`.", [exp(n, "ok", A1, 0.5) for n in range(12)], 0.0)
    prompt = render(
        "plan",
        areas="- alpha: the first block\n- beta: the second block",
        program="(none)",
        goals="- w0 (open, areas: alpha): Improve `alpha`.\n- w1 (open, areas: beta): Improve `beta`.",
        handoffs=paying + stalled,
    )
    plan = write_plan(prompt).splitlines()
    assert plan[0] == "GOAL w0: Improve `alpha`.", "a paying worker keeps its goal"
    assert plan[1] == (
        "GOAL w1 (areas: alpha): Improve `alpha`: the first block (moved from `beta`, which "
        "stalled). What "
        "paid there last round: `x = #` raised the best 2 times (one of them with other "
        "sites), +0.7 in all."
    )
