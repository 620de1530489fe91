"""The offline model's planner-side operators: merging workers' programs and revising goals.

Both read only the prompt, like an LLM would.

* **Merge**, region by region: for each surface area (EVOLVE block) of the base, take the
  version from the best-scoring candidate that changed it; code outside blocks, or a base
  without blocks, is merged hunk by hunk (each candidate's diff against the base, best
  candidate first, skipping hunks that overlap one already taken). Seeds other than the
  first sometimes take the second-best version of one area, so several merges can be tried.
* **Plan**: a worker whose handoff reports a gain keeps its goal; a worker that stalled moves
  to the area with the best recent gain that has the fewest workers, or to an untouched
  area, with what paid there as a hint.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np

from ..blocks import BlockError, find_blocks, replace_block
from .promptparse import FENCE, sections

_CANDIDATE = re.compile(
    r"^### Candidate[^\n]*\(id (?P<id>\w+), score (?P<score>[-+\w.]+)", re.MULTILINE
)
_GOAL_LINE = re.compile(
    r"^- (?P<worker>[\w.-]+) \((?P<state>pinned|open)(?:, areas: (?P<areas>[^)]*))?\): (?P<goal>.*)$",
    re.MULTILINE,
)
_AREA_LINE = re.compile(r"^- (?P<name>[A-Za-z_][\w.-]*): (?P<desc>.*)$", re.MULTILINE)
_HANDOFF = re.compile(
    r"^### (?P<worker>[\w.-]+)\n(?P<body>.*?)(?=^### |\Z)", re.DOTALL | re.MULTILINE
)


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    score: float
    code: str


def parse_candidates(body: str) -> list[Candidate]:
    out = []
    for m in _CANDIDATE.finditer(body):
        fm = FENCE.search(body, m.end())
        if fm is None:
            continue
        try:
            score = float(m["score"])
        except ValueError:
            continue
        out.append(Candidate(m["id"], score, fm["code"]))
    return out


def write_merge(prompt: str, rng: np.random.Generator, variant: int) -> str:
    sec = sections(prompt)
    base_m = FENCE.search(sec.get("base program", ""))
    if base_m is None:
        return "I cannot merge: the prompt has no base program."
    base = base_m["code"]
    cands = sorted(parse_candidates(sec.get("candidates", "")), key=lambda c: -c.score)
    if not cands:
        return "There is nothing to merge: no candidate programs."
    merged, notes = _merge_blocks(base, cands, rng, variant)
    merged, more = _merge_hunks(base, merged, cands)
    notes += more
    if not notes:
        return "The candidates change nothing I can combine."
    fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", merged)), default=0))
    return "Combine " + "; ".join(notes) + ".\n\n" + f"{fence}python\n{merged}{fence}\n"


def _merge_blocks(
    base: str, cands: list[Candidate], rng: np.random.Generator, variant: int
) -> tuple[str, list[str]]:
    try:
        blocks = find_blocks(base)
    except BlockError:
        return base, []
    merged, notes = base, []
    for name, b in blocks.items():
        changed = []
        for c in cands:
            try:
                cb = find_blocks(c.code).get(name)
            except BlockError:
                continue
            if cb is not None and cb.text != b.text:
                changed.append((c, cb.text))
        if not changed:
            continue
        # Variant merges swap in the runner-up for one area now and then.
        pick = 1 if variant and len(changed) > 1 and rng.random() < 0.5 else 0
        c, text = changed[pick]
        merged = replace_block(merged, name, text)
        notes.append(f"`{name}` from {c.id} ({c.score:.6g})")
    return merged, notes


def _merge_hunks(base: str, merged: str, cands: list[Candidate]) -> tuple[str, list[str]]:
    """Carry over changes outside the blocks (or everywhere, with no blocks)."""
    try:
        inside = {i for b in find_blocks(base).values() for i in range(b.start - 1, b.end + 1)}
    except BlockError:
        inside = set()
    base_lines = base.splitlines(keepends=True)
    taken: list[tuple[int, int, list[str]]] = []
    notes = []
    for c in cands:
        sm = difflib.SequenceMatcher(
            a=base_lines, b=c.code.splitlines(keepends=True), autojunk=False
        )
        used = False
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            if tag == "equal" or any(i in inside for i in range(i1, max(i2, i1 + 1))):
                continue
            if any(not (i2 <= a or i1 >= b) or (i1 == i2 == a) for a, b, _ in taken):
                continue
            taken.append((i1, i2, sm.b[j1:j2]))
            used = True
        if used:
            notes.append(f"edits outside the areas from {c.id}")
    if not taken:
        return merged, []
    # Apply the hunks to the block-merged program: the lines outside blocks are the base's.
    lines = merged.splitlines(keepends=True)
    offset_map = _align(base_lines, lines)
    for i1, i2, new in sorted(taken, reverse=True):
        a, b = offset_map.get(i1), offset_map.get(i2, len(lines) if i2 >= len(base_lines) else None)
        if a is None or b is None:
            continue
        lines[a:b] = new
    return "".join(lines), notes


def _align(base_lines: list[str], lines: list[str]) -> dict[int, int]:
    """Base line index -> index of the same line in ``lines`` (for lines both share)."""
    sm = difflib.SequenceMatcher(a=base_lines, b=lines, autojunk=False)
    out: dict[int, int] = {}
    for tag, i1, i2, j1, _ in sm.get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                out[i1 + k] = j1 + k
    out.setdefault(len(base_lines), len(lines))
    return out


# -- plans --------------------------------------------------------------------------------


def write_plan(prompt: str) -> str:
    sec = sections(prompt)
    areas = {
        m["name"]: m["desc"].strip() for m in _AREA_LINE.finditer(sec.get("surface areas", ""))
    }
    goals = {
        m["worker"]: (m["goal"].strip(), m["state"] == "pinned")
        for m in _GOAL_LINE.finditer(sec.get("current goals", ""))
    }
    # the areas each goal was given, as listed; never guessed from the goal's words
    given = {
        m["worker"]: [a.strip() for a in (m["areas"] or "").split(",") if a.strip()]
        for m in _GOAL_LINE.finditer(sec.get("current goals", ""))
    }
    gains: dict[str, float] = {}
    hints: dict[str, str] = {}
    for m in _HANDOFF.finditer(sec.get("handoffs", "")):
        g = re.search(r"gain ([-+][\d.e+-]+)", m["body"])
        gains[m["worker"]] = float(g.group(1)) if g else 0.0
        hint = _paid_hint(m["body"])
        if hint:
            hints[m["worker"]] = hint

    def area_of(w: str) -> str | None:
        # one area stands for a worker's goal; a worker on every area has none of its own
        mine = [a for a in given.get(w, []) if a in areas]
        return mine[0] if len(mine) == 1 else None

    load = {a: 0 for a in areas}
    area_gain = {a: 0.0 for a in areas}
    area_hint: dict[str, str] = {}
    for w in goals:
        a = area_of(w)
        if a is not None:
            load[a] += 1
            if gains.get(w, 0.0) > area_gain[a]:
                area_gain[a] = gains[w]
                if w in hints:
                    area_hint[a] = hints[w]
    if not areas:
        return _plan_without_areas(sec, goals, gains)
    lines = []
    for w, (goal, pinned) in goals.items():
        if pinned or gains.get(w, 0.0) > 0:
            lines.append(f"GOAL {w}: {goal}")
            continue
        here = area_of(w)
        # Least crowded first, then the best recent gain: spread out, but toward progress.
        options = sorted((a for a in areas if a != here), key=lambda a: (load[a], -area_gain[a]))
        target = options[0] if options else here
        if target is None:
            lines.append(f"GOAL {w}: {goal}")
            continue
        if here is not None:
            load[here] -= 1
        load[target] += 1
        hint = f" What paid there last round: {area_hint[target]}." if target in area_hint else ""
        lines.append(
            f"GOAL {w} (areas: {target}): Improve `{target}`: {areas[target]} (moved from "
            f"{'`' + here + '`' if here else 'its goal'}, which stalled).{hint}"
        )
    return "\n".join(lines)


def _paid_hint(body: str) -> str | None:
    """What paid most in a handoff's LEARNED section: its first site that raised the best
    (``- `site`: ...; raised the best 2 times, +0.1 in all; ...``), else its first line."""
    learned = re.search(r"LEARNED: (.*?)(?=^CONCERNS:|\Z)", body, re.DOTALL | re.MULTILINE)
    if learned is None:
        return None
    for line in learned.group(1).splitlines():
        site = re.match(r"- `(.+?)`: (?!.*never raised).*?(raised the best .*? in all)", line)
        if site is not None:
            return f"`{site[1]}` {site[2]}"[:160]
    first = learned.group(1).strip().splitlines()
    return first[0].split(";")[0][:160] if first and not first[0].endswith(":") else None


def _plan_without_areas(
    sec: dict[str, str], goals: dict[str, tuple[str, bool]], gains: dict[str, float]
) -> str:
    """No marked areas: give each worker a top-level function of the program to work on."""
    m = FENCE.search(sec.get("program", ""))
    funcs = re.findall(r"^def ([A-Za-z_]\w*)\(", m["code"], re.MULTILINE) if m else []
    lines = []
    for i, (w, (goal, pinned)) in enumerate(goals.items()):
        if pinned or gains.get(w, 0.0) > 0 or not funcs:
            lines.append(f"GOAL {w}: {goal}")
        else:
            f = funcs[(i + len(gains)) % len(funcs)]
            lines.append(
                f"GOAL {w}: Raise the score by improving `{f}` (any part of the program may change)."
            )
    return "\n".join(lines)
