"""Task-agnostic edit operators of the offline model.

Each operator looks only at program text: numeric literals, operators and calls with a
natural opposite, and the code of inspirations. It returns a :class:`Proposal` whose change
is expressed as SEARCH/REPLACE blocks against the parent, as an LLM's would be.
"""

from __future__ import annotations

import difflib
import functools
import io
import math
import re
import tokenize
from dataclasses import dataclass

import numpy as np

from ..blocks import BlockError, find_blocks

# Pairs an operator may swap; both directions. Calls are matched as whole names.
SWAPS: dict[str, str] = {
    "+": "-",
    "-": "+",
    "*": "/",
    "/": "*",
    "<": ">",
    ">": "<",
    "<=": ">=",
    ">=": "<=",
    "min": "max",
    "max": "min",
    "argmin": "argmax",
    "argmax": "argmin",
    "mean": "median",
    "median": "mean",
    "sin": "cos",
    "cos": "sin",
    "floor": "ceil",
    "ceil": "floor",
    "True": "False",
    "False": "True",
    "and": "or",
    "or": "and",
    "minimum": "maximum",
    "maximum": "minimum",
}
SCALES = (0.01, 0.05, 0.2, 1.0)
SCALE_P = (0.3, 0.35, 0.25, 0.1)
_ASSIGN = re.compile(r"^\s*([A-Za-z_]\w*)\s*[:=]")


@dataclass(frozen=True, slots=True)
class Site:
    """A token on one line that an operator may change."""

    line: int  # 0-based
    start: int  # column
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Proposal:
    """An edit: what to say, and the blocks that make it."""

    op: str
    rationale: str
    blocks: tuple[tuple[str, str], ...]  # (search, replace)
    new_code: str
    changes: tuple[tuple[str, str], ...]  # (old line, new line), for memory checks


def editable_lines(code: str, focus: tuple[str, ...]) -> tuple[list[int], str]:
    """Line indices an edit may touch, and the name of the area they belong to.

    The focus areas' blocks when the parent has them; else every block; else every line.
    """
    try:
        blocks = find_blocks(code)
    except BlockError:
        blocks = {}
    chosen = [blocks[f] for f in focus if f in blocks] or list(blocks.values())
    if not chosen:
        return list(range(len(code.splitlines()))), "the program"
    lines = [i for b in chosen for i in range(b.start, b.end)]
    return lines, ", ".join(f"`{b.name}`" for b in chosen)


def _tokens(code: str) -> list[tokenize.TokenInfo] | None:
    try:
        return list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None


_Raw = tuple[int, int, int, str]  # a Site's fields: plain tuples, which the GC stops tracking


@functools.lru_cache(maxsize=128)
def _sites(code: str) -> tuple[tuple[_Raw, ...], tuple[_Raw, ...]] | None:
    """Numeric and swappable sites on every line of ``code``; ``None`` if it does not tokenize.

    Cached: the pure-Python tokenizer costs milliseconds per program, this runs on the event
    loop shared with a notebook, and one parent is drawn from by many attempts and by every
    try of a proposal. Kept as tuples of plain values so the cache adds nothing to what
    each of the loop's garbage collections has to traverse.
    """
    toks = _tokens(code)
    if toks is None:
        return None
    numbers, swaps = [], []
    for i, t in enumerate(toks):
        if t.type == tokenize.NUMBER and t.start[0] == t.end[0] and "j" not in t.string.lower():
            numbers.append((t.start[0] - 1, t.start[1], t.end[1], t.string))
        if t.string not in SWAPS:
            continue
        if t.type == tokenize.OP and t.string in "+-":
            # Skip unary signs and exponents: only a binary +/- after an operand is swapped.
            prev = toks[i - 1] if i else None
            if prev is None or not (
                prev.type in (tokenize.NAME, tokenize.NUMBER) or prev.string in ")]"
            ):
                continue
        if t.type in (tokenize.OP, tokenize.NAME):
            swaps.append((t.start[0] - 1, t.start[1], t.end[1], t.string))
    return tuple(numbers), tuple(swaps)


def numeric_sites(code: str, lines: list[int]) -> list[Site]:
    """Numeric literals on ``lines`` (0-based) of ``code``, in source order."""
    sites = _sites(code)
    allowed = set(lines)
    return [] if sites is None else [Site(*s) for s in sites[0] if s[0] in allowed]


def swap_sites(code: str, lines: list[int]) -> list[Site]:
    """Operators and calls with an opposite in :data:`SWAPS` on ``lines``, in source order."""
    sites = _sites(code)
    allowed = set(lines)
    return [] if sites is None else [Site(*s) for s in sites[1] if s[0] in allowed]


def perturb_number(text: str, rng: np.random.Generator, scale: float) -> str | None:
    """A nearby value for a numeric literal: multiplicative for floats, stepped for ints."""
    try:
        value = int(text, 0) if re.fullmatch(r"[0-9_]+|0[xXoObB][0-9a-fA-F_]+", text) else None
    except ValueError:
        value = None
    if value is not None:
        if value == 0:
            new = int(rng.integers(1, 3))
        else:
            new = round(value * math.exp(scale * rng.standard_normal()))
            if new == value:
                new = value + int(rng.choice([-1, 1]))
            new = max(new, 0)
        return None if new == value else str(new)
    try:
        x = float(text)
    except ValueError:
        return None
    if not math.isfinite(x):
        return None
    new_x = scale * rng.standard_normal() if x == 0 else x * math.exp(scale * rng.standard_normal())
    digits = max(3, math.ceil(-math.log10(scale)) + 3)
    s = f"{new_x:.{digits}g}"
    if not any(c in s for c in ".en"):
        s += ".0"
    return None if float(s) == x else s


def number_ratio(old: str, new: str) -> float | None:
    try:
        a, b = float(old), float(new)
    except ValueError:
        return None
    if a == 0 or not math.isfinite(b / a):
        return None
    return b / a


def unique_block(lines: list[str], start: int, end: int) -> tuple[int, int]:
    """Grow ``lines[start:end]`` with context until its text occurs once in the program."""
    code = "".join(lines)
    s, e = start, end
    while True:
        text = "".join(lines[s:e])
        if text.strip() and code.count(text) == 1:
            return s, e
        if s == 0 and e >= len(lines):
            return s, e
        if s > 0:
            s -= 1
        if e < len(lines):
            e += 1


def line_edit(code: str, line: int, new_line: str) -> tuple[str, str, str]:
    """``(search, replace, new_code)`` for replacing one line, with context to be unique."""
    lines = code.splitlines(keepends=True)
    s, e = unique_block(lines, line, line + 1)
    old = lines[line]
    nl = new_line if new_line.endswith("\n") or not old.endswith("\n") else new_line + "\n"
    search = "".join(lines[s:e])
    replace = "".join(lines[s:line]) + nl + "".join(lines[line + 1 : e])
    new_code = "".join(lines[:line]) + nl + "".join(lines[line + 1 :])
    return search, replace, new_code


def name_on(line: str) -> str | None:
    m = _ASSIGN.match(line)
    return m.group(1) if m else None


def crossover(
    code: str, donor: str, focus: tuple[str, ...], rng: np.random.Generator
) -> tuple[str, str, str, str] | None:
    """Take code of the focus area from ``donor``: the whole block, or one differing hunk.

    Returns ``(search, replace, new_code, what)`` or ``None`` when the donor's area is the same.
    """
    try:
        mine, theirs = find_blocks(code), find_blocks(donor)
    except BlockError:
        return None
    names = [n for n in (focus or tuple(mine)) if n in mine and n in theirs]
    names = [n for n in names if mine[n].text != theirs[n].text]
    if not names:
        return None
    name = names[int(rng.integers(len(names)))]
    a, b = mine[name], theirs[name]
    lines = code.splitlines(keepends=True)
    if rng.random() < 0.5:
        s, e = unique_block(lines, a.start, a.end)
        search = "".join(lines[s:e])
        replace = "".join(lines[s : a.start]) + b.text + "".join(lines[a.end : e])
        new_code = "".join(lines[: a.start]) + b.text + "".join(lines[a.end :])
        return search, replace, new_code, f"the whole `{name}` block"
    al, bl = a.text.splitlines(keepends=True), b.text.splitlines(keepends=True)
    hunks = [
        op
        for op in difflib.SequenceMatcher(a=al, b=bl, autojunk=False).get_opcodes()
        if op[0] != "equal"
    ]
    _, i1, i2, j1, j2 = hunks[int(rng.integers(len(hunks)))]
    # Anchor pure insertions on the line before them so the SEARCH is never empty.
    lo, hi = a.start + i1, a.start + i2
    anchor = lo == hi
    if anchor:
        lo = max(lo - 1, 0)
    s, e = unique_block(lines, lo, max(hi, lo + 1))
    new_mid = (lines[lo] if anchor else "") + "".join(bl[j1:j2])
    replace = "".join(lines[s:lo]) + new_mid + "".join(lines[max(hi, lo + 1) : e])
    new_code = "".join(lines[:lo]) + new_mid + "".join(lines[max(hi, lo + 1) :])
    return "".join(lines[s:e]), replace, new_code, f"lines {i1 + 1}-{i2} of `{name}`"
