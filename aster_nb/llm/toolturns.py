"""The offline model's side of a tool session: read, edit, evaluate, then submit or retry.

The session's state is read back from the conversation each turn (the tool calls and their
results), so a turn is a pure function of the request, like every offline reply. Edits come
from the propose operators, applied to the file as it now stands.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import numpy as np

from ..edits import EditError, parse_edit
from .base import Request, ToolCall

Propose = Callable[[str, np.random.Generator], str]


def tool_turn(
    request: Request, rng: np.random.Generator, propose: Propose
) -> tuple[str, tuple[ToolCall, ...]]:
    """One turn of a tool session: read, edit, evaluate, then submit or try again."""
    first = request.messages[0]["content"]
    prompt = first if isinstance(first, str) else ""
    history = _tool_history(request.messages)
    turn = len(request.messages) // 2

    def call(name: str, **args: object) -> ToolCall:
        return ToolCall(id=f"toolu_{turn}_{name}", name=name, arguments=dict(args))

    current = _current_program(history)
    if not history or current is None:
        return "Read the program first.", (call("read_file", path="program.py"),)
    last_name, _, last_result, last_error = history[-1]
    trials = [json.loads(r) for n, _, r, e in history if n == "run_evaluation" and not e]
    if last_name == "submit":
        return "Submitted.", ()
    if last_error:
        return f"That failed ({last_result[:120]}); re-reading the file.", (
            call("read_file", path="program.py"),
        )
    if last_name == "run_evaluation":
        pm = re.search(r"## Parent program \(id \w+, score ([-+\d.eE]+|inf|nan)\)", prompt)
        parent = float(pm.group(1)) if pm else None
        res = trials[-1]
        better = res.get("status") == "ok" and (
            parent is None or (res.get("score") or -np.inf) > parent
        )
        if better or len(trials) >= 2:
            why = "it beats the parent" if better else "evaluations are limited"
            return f"Submit: {why} (score {res.get('score')}).", (call("submit"),)
    # Propose against the file as it now stands, as if it were the parent.
    text = propose(_with_parent(prompt, current), rng)
    try:
        edit = parse_edit(text)
    except EditError:
        return "No edit to make; submitting.", (call("submit"),)
    calls = [
        ToolCall(
            id=f"toolu_{turn}_{i}",
            name="edit_file",
            arguments={"path": "program.py", "old_string": r.search, "new_string": r.replace},
        )
        for i, r in enumerate(edit.replacements)
    ]
    rationale = text.split("<<<<<<<")[0].strip()
    return rationale, (*calls, call("run_evaluation"))


def _tool_history(messages: tuple[dict, ...]) -> list[tuple[str, dict, str, bool]]:
    """``(tool, arguments, result, is_error)`` for every answered tool call, in order."""
    calls: dict[str, tuple[str, dict]] = {}
    out = []
    for m in messages:
        content = m.get("content")
        if not isinstance(content, list):
            continue
        for b in content:
            if not isinstance(b, dict):
                continue
            if b.get("type") == "tool_use":
                calls[b["id"]] = (b["name"], b.get("input") or {})
            elif b.get("type") == "tool_result" and b.get("tool_use_id") in calls:
                name, args = calls[b["tool_use_id"]]
                body = b.get("content")
                text = body if isinstance(body, str) else json.dumps(body)
                out.append((name, args, text, bool(b.get("is_error"))))
    return out


def _current_program(history: list[tuple[str, dict, str, bool]]) -> str | None:
    """The program as the model last read it, with its successful edits since applied."""
    current = None
    for name, args, result, error in history:
        if error:
            continue
        if name == "read_file" and args.get("path") == "program.py":
            current = result
        elif name == "edit_file" and current is not None:
            current = current.replace(args.get("old_string", ""), args.get("new_string", ""), 1)
    return current


def _with_parent(prompt: str, code: str) -> str:
    """``prompt`` with the parent section's code replaced by ``code``."""
    m = re.search(
        r"(## Parent program[^\n]*\n)(`{3,})python\n.*?^\2[ \t]*$", prompt, re.DOTALL | re.MULTILINE
    )
    if m is None:
        return prompt
    fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", code)), default=0))
    body = code if code.endswith("\n") else code + "\n"
    return prompt[: m.start()] + m.group(1) + f"{fence}python\n{body}{fence}" + prompt[m.end() :]
