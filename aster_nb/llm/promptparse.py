"""Reading the structured prompts back: what the offline model sees of a request.

The offline model has no hidden channel to the worker: it reads the same prompt text an LLM
would, by the section headers of the templates in :mod:`aster_nb.prompts`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..edits import summary_hunks

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


def parse_memory(text: str) -> tuple[Remembered, ...]:
    out = []
    for m in _MEM.finditer(text):
        changes = []
        for _line, old, new in summary_hunks(m["change"]):
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


@dataclass(frozen=True, slots=True)
class SiteLine:
    """One line of a handoff prompt's ``## Sites`` section
    (:meth:`SiteReport.line <aster_nb.handoffreport.SiteReport.line>`)."""

    site: str
    tried: int
    evaluated: int
    failed: int
    duplicates: int
    raised: int
    gain: float
    shared: int
    margin: float | None  # over the round's best at the time: a raise, or how close it came
    at: int | None
    change: str


_SITE = re.compile(r"^- site (?P<site>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\") \| (?P<rest>.*)$")
_SITE_INTS = ("tried", "evaluated", "failed", "duplicates", "raised", "shared")


def parse_sites(text: str) -> tuple[SiteLine, ...]:
    """The sites of a handoff prompt's ``## Sites`` section; malformed lines are skipped."""
    import ast

    out = []
    for line in text.splitlines():
        m = _SITE.match(line.strip())
        if m is None:
            continue
        fields = dict(part.split(" ", 1) for part in m["rest"].split(" | ", 10) if " " in part)
        try:
            margin, at = fields.get("margin", "none"), fields.get("at", "#-").lstrip("#")
            out.append(
                SiteLine(
                    site=str(ast.literal_eval(m["site"])),
                    **{k: int(fields[k]) for k in _SITE_INTS},
                    gain=float(fields["gain"]),
                    margin=None if margin == "none" else float(margin),
                    at=None if at == "-" else int(at),
                    change=fields.get("change", "-"),
                )
            )
        except (KeyError, ValueError, SyntaxError):
            continue
    return tuple(out)


def parse_flags(text: str) -> tuple[tuple[str, str], ...]:
    """``(kind, text)`` of each ``- kind: text`` line of a ``## Warning signs`` section."""
    return tuple((m[1], m[2].strip()) for m in re.finditer(r"^- (\w+): (.+)$", text, re.MULTILINE))
