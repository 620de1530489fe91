"""Edits a model proposes: SEARCH/REPLACE blocks or a full rewrite, and diffs for display.

The format asked of models::

    <<<<<<< SEARCH
    exact lines of the parent
    =======
    their replacement
    >>>>>>> REPLACE

A reply with no such block but one fenced code block is a full rewrite. Anything else is a
failed edit with a reason; nothing here raises past :func:`propose_child`.
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass

_BLOCK = re.compile(
    r"^<{5,9} ?SEARCH[ \t]*\n(?P<search>.*?)^={5,9}[ \t]*\n(?P<replace>.*?)^>{5,9} ?REPLACE[ \t]*$",
    re.DOTALL | re.MULTILINE,
)
_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(?P<code>.*?)^```", re.DOTALL | re.MULTILINE)


class EditError(ValueError):
    """An edit could not be parsed or applied; the message is the recorded failure reason."""


@dataclass(frozen=True, slots=True)
class Replacement:
    search: str
    replace: str


@dataclass(frozen=True, slots=True)
class Edit:
    """A parsed edit: either replacements or a full rewrite (exactly one is set)."""

    replacements: tuple[Replacement, ...] = ()
    rewrite: str | None = None

    @property
    def kind(self) -> str:
        return "rewrite" if self.rewrite is not None else "edit"


def parse_edit(text: str) -> Edit:
    """Parse a model reply into an :class:`Edit`.

    Raises:
        EditError: the reply has neither SEARCH/REPLACE blocks nor a single code block.
    """
    text = text.replace("\r\n", "\n")
    blocks = [Replacement(m["search"], m["replace"]) for m in _BLOCK.finditer(text)]
    if blocks:
        return Edit(replacements=tuple(blocks))
    if "<<<<<<< SEARCH" in text or ">>>>>>> REPLACE" in text:
        raise EditError(
            "malformed SEARCH/REPLACE block: expected '<<<<<<< SEARCH', the lines, "
            "'=======', the replacement, '>>>>>>> REPLACE', each marker on its own line"
        )
    fences = _FENCE.findall(text)
    if len(fences) == 1 and fences[0].strip():
        return Edit(rewrite=fences[0])
    if len(fences) > 1:
        raise EditError(
            f"reply has {len(fences)} code blocks and no SEARCH/REPLACE block; "
            "a full rewrite must be exactly one fenced code block"
        )
    raise EditError("reply has no SEARCH/REPLACE block and no fenced code block")


def apply_edit(code: str, edit: Edit) -> str:
    """Apply ``edit`` to ``code``.

    Each SEARCH text must occur exactly once in the code as it stands when that block is
    applied (blocks apply in order). An exact match is tried first, then a match that
    ignores trailing whitespace on each line, since models often drop it.

    Raises:
        EditError: a SEARCH text is empty, missing, or ambiguous, or the edit changes nothing.
    """
    if edit.rewrite is not None:
        out = edit.rewrite
    else:
        out = code
        for i, r in enumerate(edit.replacements, 1):
            out = _replace_once(out, r, i)
    if out == code:
        raise EditError("the edit leaves the program unchanged")
    return out


def _line_starts(code: str, text: str) -> list[int]:
    """Offsets where ``text`` occurs in ``code`` starting at a line start (overlaps count)."""
    hay, needle = "\n" + code, "\n" + text
    out, i = [], hay.find(needle)
    while i >= 0:
        out.append(i)
        i = hay.find(needle, i + 1)
    return out


def _replace_once(code: str, r: Replacement, i: int) -> str:
    if not r.search.strip():
        raise EditError(f"block {i}: SEARCH is empty")
    # Anchored at line starts, so 'x = 1' never edits 'max_x = 1'.
    hits = _line_starts(code, r.search)
    if len(hits) == 1:
        at = hits[0]
        return code[:at] + r.replace + code[at + len(r.search) :]
    if len(hits) > 1:
        raise EditError(
            f"block {i}: SEARCH text occurs {len(hits)} times; include more surrounding lines "
            "so it matches exactly once"
        )
    # Trailing-whitespace-insensitive match over whole lines.
    lines = code.splitlines(keepends=True)
    want = [ln.rstrip() for ln in r.search.splitlines()]
    hits = [
        s
        for s in range(len(lines) - len(want) + 1)
        if [ln.rstrip() for ln in lines[s : s + len(want)]] == want
    ]
    if len(hits) == 1:
        s = hits[0]
        repl = r.replace if r.replace.endswith("\n") or not r.replace else r.replace + "\n"
        return "".join(lines[:s]) + repl + "".join(lines[s + len(want) :])
    if len(hits) > 1:
        raise EditError(
            f"block {i}: SEARCH text occurs {len(hits)} times (ignoring trailing spaces)"
        )
    first = r.search.strip().splitlines()[0][:80]
    raise EditError(f"block {i}: SEARCH text not found in the parent (first line: {first!r})")


def unified_diff(
    a: str, b: str, *, a_name: str = "parent", b_name: str = "child", context: int = 3
) -> str:
    """A unified diff of two programs, for display."""
    return "".join(
        difflib.unified_diff(
            a.splitlines(keepends=True), b.splitlines(keepends=True), a_name, b_name, n=context
        )
    )


def changed_lines(a: str, b: str) -> tuple[int, int]:
    """``(added, removed)`` line counts between two programs."""
    added = removed = 0
    for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0):
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return added, removed


_HUNK = re.compile(
    r"L(?P<line>\d+): (?P<old>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\") -> "
    r"(?P<new>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
)


def summary_hunks(summary: str) -> list[tuple[int, str, str]]:
    """The hunks of a :func:`diff_summary` read back: ``(line, old, new)``, the sides as
    text again (a hunk's lines joined by newlines); ``[]`` for ``"no change"`` or ``"-"``."""
    return [
        (int(m["line"]), _unquote(m["old"]), _unquote(m["new"])) for m in _HUNK.finditer(summary)
    ]


def _unquote(s: str) -> str:
    try:
        return str(ast.literal_eval(s))
    except (ValueError, SyntaxError):  # cut mid-escape: the text between the quotes
        return s[1:-1]


def diff_summary(a: str, b: str, *, side_limit: int = 240) -> str:
    """What changed, for memories: ``L12: 'r = 0.7' -> 'r = 0.74'``, hunks joined by ``; ``.

    Each side is a Python string literal (lines of a hunk joined by an escaped newline), cut
    to ``side_limit`` characters before quoting so it always parses back.
    """
    sm = difflib.SequenceMatcher(a=a.splitlines(), b=b.splitlines(), autojunk=False)
    parts = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            continue
        old = "\n".join(sm.a[i1:i2])[:side_limit]
        new = "\n".join(sm.b[j1:j2])[:side_limit]
        parts.append(f"L{i1 + 1}: {old!r} -> {new!r}")
    return (
        "; ".join(parts[:4]) + (f"; (+{len(parts) - 4} more hunks)" if len(parts) > 4 else "")
        or "no change"
    )
