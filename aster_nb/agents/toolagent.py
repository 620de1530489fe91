"""The tool-using agent: a bounded multi-turn loop over a private copy of the program.

The model gets tools to list and read the candidate's files, edit them by exact string
replacement, run the evaluation in the sandbox (seeing score, metrics and captured output)
and submit. Every tool call is answered, a malformed one with an error result, never a
crash. The loop ends at ``submit``, when the model stops calling tools, or after
``max_turns`` turns; the program as it then stands is the attempt's child.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..edits import EditError
from ..llm.base import Model, Request, Response, ToolCall, Usage
from ..prompts import template
from ..records import EvalResult, Program
from .attempt import Outcome

PROGRAM = "program.py"

TOOLS: tuple[dict[str, Any], ...] = (
    {
        "name": "list_files",
        "description": "List the files of the candidate workspace.",
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": "read_file",
        "description": "Read a file of the workspace.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
    },
    {
        "name": "edit_file",
        "description": "Replace old_string, which must occur exactly once, with new_string.",
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "old_string": {"type": "string"},
                "new_string": {"type": "string"},
            },
            "required": ["path", "old_string", "new_string"],
        },
    },
    {
        "name": "run_evaluation",
        "description": "Evaluate the current program in the sandbox; returns status, score, metrics, output.",
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": "submit",
        "description": "Hand in the current program and end the session.",
        "input_schema": {"type": "object", "properties": {}},
    },
)


@dataclass(slots=True)
class ToolSession:
    """What a tool-using attempt did.

    Attributes:
        code: the program as it stood at the end.
        submitted: whether the model called ``submit``.
        turns: model calls made.
        trials: evaluations the model ran through ``run_evaluation``.
        usage: tokens over all turns.
        latency: model seconds over all turns.
        notes: the model's text across turns.
        tool_errors: tool calls answered with an error.
    """

    code: str
    submitted: bool = False
    turns: int = 0
    trials: list[EvalResult] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    latency: float = 0.0
    notes: list[str] = field(default_factory=list)
    tool_errors: int = 0
    edit_notes: list[str] = field(default_factory=list)  # what the model said as it edited
    cost_usd: float = 0.0
    retries: int = 0

    def response(self, model: str) -> Response:
        """A single response standing for the whole session, for accounting."""
        return Response(
            text="\n".join(self.notes),
            usage=self.usage,
            latency=self.latency,
            model=model,
            cost_usd=self.cost_usd,
            retries=self.retries,
        )


class Workspace:
    """The candidate's files and the tools over them."""

    def __init__(self, code: str, *, statement: str, evaluate: Any, max_trials: int) -> None:
        self.files = {PROGRAM: code, "TASK.md": statement}
        self._evaluate = evaluate
        self.max_trials = max_trials
        self.trials: list[EvalResult] = []
        self.submitted = False

    async def call(self, tc: ToolCall) -> tuple[str, bool]:
        """Run one tool call; ``(result text, is_error)``."""
        args = tc.arguments if isinstance(tc.arguments, dict) else {}
        try:
            if tc.name == "list_files":
                return json.dumps(sorted(self.files)), False
            if tc.name == "read_file":
                return self.files[self._path(args)], False
            if tc.name == "edit_file":
                return self._edit(args), False
            if tc.name == "run_evaluation":
                return await self._run(), False
            if tc.name == "submit":
                self.submitted = True
                return "submitted", False
            return f"unknown tool {tc.name!r}; tools are {[t['name'] for t in TOOLS]}", True
        except (KeyError, TypeError, ValueError) as e:
            return f"error: {e}", True

    def _path(self, args: dict[str, Any]) -> str:
        path = args.get("path")
        if not isinstance(path, str):
            raise ValueError(f"'path' must be a string naming one of {sorted(self.files)}")
        if path not in self.files:
            raise KeyError(f"no file {path!r}; files are {sorted(self.files)}")
        return path

    def _edit(self, args: dict[str, Any]) -> str:
        path = self._path(args)
        if path != PROGRAM:
            raise ValueError(f"only {PROGRAM} can be edited")
        old, new = args.get("old_string"), args.get("new_string")
        if not isinstance(old, str) or not isinstance(new, str) or not old:
            raise ValueError("edit_file needs non-empty 'old_string' and a string 'new_string'")
        n = self.files[path].count(old)
        if n != 1:
            raise ValueError(
                f"old_string occurs {n} times in {path}; it must occur exactly once"
                + ("" if n else " (copy it exactly, with its indentation)")
            )
        self.files[path] = self.files[path].replace(old, new, 1)
        return f"edited {path}"

    async def _run(self) -> str:
        if len(self.trials) >= self.max_trials:
            raise ValueError(f"no evaluations left ({self.max_trials} per attempt); submit now")
        r: EvalResult = await self._evaluate(self.files[PROGRAM])
        self.trials.append(r)
        out = {"status": str(r.status), "score": r.score, "metrics": r.metrics}
        if r.error:
            out["error"] = r.error[-1500:]
        if r.stdout:
            out["stdout_tail"] = r.stdout[-800:]
        return json.dumps(out)


async def run_tool_session(
    *,
    model: Model,
    system: str,
    prompt: str,
    code: str,
    statement: str,
    evaluate: Any,
    max_turns: int = 8,
    max_trials: int = 3,
    timeout: float = 600.0,
    seed: int | None = None,
    tags: tuple[tuple[str, str], ...] = (),
    session: ToolSession | None = None,
) -> ToolSession:
    """Let the model work on ``code`` with the tools; see the module docstring.

    ``session``, if given, is filled in as the turns go (and returned), so a caller whose
    session is cancelled still knows what its finished turns used.
    """
    ws = Workspace(code, statement=statement, evaluate=evaluate, max_trials=max_trials)
    session = ToolSession(code=code) if session is None else session
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    sys_text = system + "\n\n" + template("tools").template
    for turn in range(max_turns):
        t0 = time.perf_counter()
        async with asyncio.timeout(timeout):
            resp = await model.complete(
                Request(
                    messages=tuple(messages),
                    system=sys_text,
                    purpose="tool",
                    tools=TOOLS,
                    seed=None if seed is None else seed * 64 + turn,
                    tags=tags,
                )
            )
        session.turns += 1
        session.usage = session.usage + resp.usage
        session.cost_usd += resp.cost_usd
        session.retries += resp.retries
        session.latency += resp.latency or (time.perf_counter() - t0)
        if resp.text.strip():
            session.notes.append(resp.text.strip())
            if any(tc.name == "edit_file" for tc in resp.tool_calls):
                session.edit_notes.append(resp.text.strip())
        if not resp.tool_calls:
            break
        blocks: list[dict[str, Any]] = [{"type": "text", "text": resp.text}] if resp.text else []
        blocks += [
            {"type": "tool_use", "id": tc.id, "name": tc.name, "input": tc.arguments}
            for tc in resp.tool_calls
        ]
        messages.append({"role": "assistant", "content": blocks})
        results = []
        for tc in resp.tool_calls:
            text, is_error = await ws.call(tc)
            session.tool_errors += is_error
            results.append(
                {"type": "tool_result", "tool_use_id": tc.id, "content": text, "is_error": is_error}
            )
            if ws.submitted:
                break
        messages.append({"role": "user", "content": results})
        if ws.submitted:
            break
    session.code = ws.files[PROGRAM]
    session.submitted = ws.submitted
    session.trials = ws.trials
    return session


TOOL_NOTE = (
    "\n\nIn this session you change the program through the tools (read_file, edit_file, "
    "run_evaluation, submit); SEARCH/REPLACE blocks in your text are not applied.\n"
)


async def tool_attempt(
    *,
    model: Model,
    system: str,
    prompt: str,
    parent: Program,
    out: Outcome,
    statement: str,
    evaluate: Any,
    max_turns: int,
    timeout: float,
    seed: int,
    tags: tuple[tuple[str, str], ...],
) -> str:
    """A worker's attempt as a tool session on a copy of ``parent``: fills in ``out``'s
    reply, rationale and trials, and returns the program the session ended with.

    Args:
        model: the model the session talks to.
        system: the system prompt.
        prompt: the attempt's prompt (a note on the tools is added).
        parent: the program the session starts from.
        out: the attempt's outcome record.
        statement: the task's statement (a tool shows it).
        evaluate: ``await evaluate(code)``, the sandbox.
        max_turns: turns the session may take.
        timeout: seconds each model call may take.
        seed: the session's seed.
        tags: the calls' tags.

    Raises:
        EditError: the session changed nothing.
    """
    session = ToolSession(code=parent.code)
    try:
        await run_tool_session(
            model=model,
            system=system,
            prompt=prompt + TOOL_NOTE,
            code=parent.code,
            statement=statement,
            evaluate=evaluate,
            max_turns=max_turns,
            timeout=timeout,
            seed=seed,
            tags=tags,
            session=session,
        )
    except asyncio.CancelledError:
        # Cancelled as surplus (the budget was met meanwhile): the turns it finished were
        # billed, and the scheduler counts them with the discarded attempts' spend.
        out.response = session.response(getattr(model, "name", ""))
        raise
    out.response = session.response(getattr(model, "name", ""))
    out.rationale = " ".join(session.edit_notes or session.notes)[:2000]
    out.tool_trials = len(session.trials)
    if session.code == parent.code:
        raise EditError(
            f"the tool session changed nothing ({session.turns} turns, "
            f"{session.tool_errors} tool errors{', submitted' if session.submitted else ''})"
        )
    return session.code
