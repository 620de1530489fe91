"""Reading the structured prompts back: what the offline model sees of a request.

The offline model has no hidden channel to the worker: it reads the same prompt text an LLM
would, by the section headers of the templates in :mod:`aster_nb.prompts`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADER = re.compile(r"^## (?P<title>[^\n]+)\n", re.MULTILINE)
# A fence is three or more backticks; prompts use one longer than any run in the code, and
# the closing fence must be the same length, so code quoting ``` cannot end it early.
FENCE = re.compile(
    r"^(?P<fence>`{3,})(?:python|py)?[ \t]*\n(?P<code>.*?)^(?P=fence)[ \t]*$",
    re.DOTALL | re.MULTILINE,
)
_INSP = re.compile(r"^### Inspiration[^\n]*\(id (?P<id>\w+)[^)]*\)\n", re.MULTILINE)
_MEM = re.compile(
    r"^- #(?P<n>\d+) from (?P<parent>\w+) \((?P<ps>[^)]*)\): (?P<idea>.*?) \| change: (?P<change>.*?)"
    r" \| result: (?P<result>.*)$",
    re.MULTILINE,
)
_CHANGE = re.compile(
    r"L(?P<line>\d+): (?P<old>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\") -> (?P<new>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
)


@dataclass(frozen=True, slots=True)
class Remembered:
    """One parsed memory or log line."""

    n: int
    parent: str  # id prefix of the parent the change was made on
    idea: str
    changes: tuple[tuple[str, str], ...]  # (old line, new line) pairs
    ok: bool
    score: float | None
    delta: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class ProposePrompt:
    goal: str
    parent_id: str
    focus: tuple[str, ...]
    parent: str
    inspirations: tuple[tuple[str, str], ...]  # (id, code)
    memory: tuple[Remembered, ...]


def sections(text: str) -> dict[str, str]:
    """``## Title`` sections of a prompt by the title's words before any ``(``.

    Headers inside fenced code are not headers: a program's ``## comment`` stays code.
    """
    fenced = [m.span() for m in FENCE.finditer(text)]
    heads = [h for h in _HEADER.finditer(text) if not any(a < h.start() < b for a, b in fenced)]
    out = {}
    for h, nxt in zip(heads, [*heads[1:], None], strict=True):
        body = text[h.end() : nxt.start() if nxt is not None else len(text)]
        out[h["title"].split("(")[0].strip().lower()] = body
    return out


def _literal(s: str) -> str:
    # diff_summary writes Python reprs of the lines; undo the quoting.
    import ast

    try:
        return str(ast.literal_eval(s))
    except (ValueError, SyntaxError):
        return s[1:-1]


def parse_memory(text: str) -> tuple[Remembered, ...]:
    out = []
    for m in _MEM.finditer(text):
        changes = []
        for c in _CHANGE.finditer(m["change"]):
            old, new = _literal(c["old"]), _literal(c["new"])
            # Keep single-line pairs: the sites the operators reason about.
            if "\n" not in old and "\n" not in new:
                changes.append((old, new))
        res = m["result"]
        ok = res.startswith("ok ")
        score = delta = None
        if ok:
            parts = res[3:].split()
            score = float(parts[0])
            if len(parts) > 1:
                delta = float(parts[1].strip("()"))
        out.append(
            Remembered(
                n=int(m["n"]),
                parent=m["parent"],
                idea=m["idea"],
                changes=tuple(changes),
                ok=ok,
                score=score,
                delta=delta,
                reason="" if ok else res.removeprefix("FAILED ").strip(),
            )
        )
    return tuple(out)


def parse_propose(text: str) -> ProposePrompt:
    """Parse a proposal prompt rendered from ``propose.txt``.

    Raises:
        ValueError: the prompt has no parent program section with a code block.
    """
    sec = sections(text)
    parent_body = sec.get("parent program", "")
    m = FENCE.search(parent_body)
    if m is None:
        raise ValueError("prompt has no '## Parent program' section with a ```python block")
    focus_text = sec.get("focus", "").strip()
    first = focus_text.split("\n")[0]
    # "(whole program)" or any other parenthetical means no named area.
    focus = () if first.startswith("(") else tuple(re.findall(r"[A-Za-z_][\w.-]*", first))
    insp_body = sec.get("inspirations", "")
    insps = []
    for im in _INSP.finditer(insp_body):
        fm = FENCE.search(insp_body, im.end())
        if fm is not None:
            insps.append((im["id"], fm["code"]))
    pid = re.search(r"\(id (\w+)", text[text.find("## Parent program") :])
    return ProposePrompt(
        goal=sec.get("goal", "").strip(),
        parent_id=pid.group(1) if pid else "",
        focus=focus,
        parent=m["code"],
        inspirations=tuple(insps),
        memory=parse_memory(sec.get("your past experiments", "")),
    )
