"""The tool-using agent: offline, through a real sandbox, and against malformed tool calls."""

from __future__ import annotations

from pathlib import Path

from aster_nb.agents import Budget, Worker
from aster_nb.agents.toolagent import Workspace, run_tool_session
from aster_nb.llm import OfflineModel, Request, Response, ToolCall
from aster_nb.program import EvalResult, Program, Status
from aster_nb.sandbox import LocalExecutor
from aster_nb.store import Store
from aster_nb.task import Task


async def test_offline_tool_agent_reads_edits_evaluates_and_submits(
    tmp_path: Path, toy: Task, toy_executor: LocalExecutor
) -> None:
    store = Store(tmp_path / "t.sqlite")
    w = Worker(
        name="w0",
        task=toy,
        model=OfflineModel(seed=2),
        executor=toy_executor,
        store=store,
        agents=3,
        agent="tools",
    )
    h = await w.run(
        "Improve alpha and beta", Program(code=toy.initial_code), Budget(evaluations=15)
    )
    assert h.stats["evaluations"] == 15
    assert h.best.score > -12.75, "the tool agent found a better program"
    att = store.attempts()
    assert (att["outcome"].isin(["ok", "improved"])).mean() > 0.8
    assert (
        att["input_tokens"].min() > 0
        and att["rationale"].str.contains("Perturb|Swap|Take|Carry|Continue").any()
    )
    store.close()


class Scripted:
    """A model that replays tool calls, the first one malformed."""

    name = "scripted"

    def __init__(self, steps: list[list[ToolCall]]) -> None:
        self.steps = steps
        self.seen: list[Request] = []

    async def complete(self, request: Request) -> Response:
        self.seen.append(request)
        i = len(self.seen) - 1
        return Response(
            text=f"step {i}", tool_calls=tuple(self.steps[i]) if i < len(self.steps) else ()
        )


async def test_malformed_tool_calls_get_error_results_not_crashes() -> None:
    evaluated: list[str] = []

    async def evaluate(code: str) -> EvalResult:
        evaluated.append(code)
        return EvalResult(status=Status.OK, score=float(len(code)))

    model = Scripted(
        [
            [ToolCall("a", "read_file", {}), ToolCall("b", "frobnicate", {"x": 1})],
            [
                ToolCall(
                    "c",
                    "edit_file",
                    {"path": "program.py", "old_string": "x = 1", "new_string": "x = 2"},
                )
            ],
            [
                ToolCall(
                    "d",
                    "edit_file",
                    {"path": "program.py", "old_string": "y = 1\n", "new_string": "y = 22\n"},
                )
            ],
            [ToolCall("e", "run_evaluation", {}), ToolCall("f", "submit", {})],
        ]
    )
    s = await run_tool_session(
        model=model,
        system="s",
        prompt="p",
        code="y = 1\nz = 1\nz = 1\n",
        statement="t",
        evaluate=evaluate,
    )
    assert s.submitted and s.code == "y = 22\nz = 1\nz = 1\n" and s.tool_errors == 3
    results = [
        b
        for m in model.seen[-1].messages
        if isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]
    errors = {r["tool_use_id"]: r["content"] for r in results if r["is_error"]}
    assert "'path' must be a string" in errors["a"]
    assert "unknown tool 'frobnicate'" in errors["b"]
    assert "occurs 0 times" in errors["c"]
    assert evaluated == ["y = 22\nz = 1\nz = 1\n"]


async def test_workspace_rules() -> None:
    async def evaluate(code: str) -> EvalResult:
        return EvalResult(status=Status.OK, score=1.0)

    ws = Workspace("a = 1\na = 1\n", statement="t", evaluate=evaluate, max_trials=1)
    text, err = await ws.call(
        ToolCall("1", "edit_file", {"path": "program.py", "old_string": "a = 1", "new_string": "b"})
    )
    assert err and "occurs 2 times" in text
    text, err = await ws.call(
        ToolCall("2", "edit_file", {"path": "TASK.md", "old_string": "t", "new_string": "u"})
    )
    assert err and "only program.py" in text
    assert (await ws.call(ToolCall("3", "run_evaluation", {})))[1] is False
    text, err = await ws.call(ToolCall("4", "run_evaluation", {}))
    assert err and "no evaluations left" in text
