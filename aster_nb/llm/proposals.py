"""The offline model's edit proposals: operators drawn by weight, steered by memory.

From a propose prompt (the parent program, the areas its goal names, the inspirations, the
agent's memory) :func:`propose` makes a real edit:

* numeric perturbations at several scales (multiplicative for floats, stepped for ints);
* swaps of operators and calls with a natural opposite (``min``/``max``, ``+``/``-``, ...);
* crossover: a block or a hunk of the focus area taken from an inspiration;
* continuation: a change that paid in the agent's memory, repeated in the same direction.

Memory steers it: edits identical to ones that failed are never proposed again, sites whose
edits kept failing are chosen less, and directions that paid are continued. The randomness
comes from the caller's generator only, so a fixed seed proposes the same edits.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from ..handoffreport import site_of
from . import operators as ops
from .promptparse import ProposePrompt, Remembered, parse_propose

_DIGITS = re.compile(r"\d+\.?\d*(?:[eE][-+]?\d+)?")
# A line with its numbers masked: the 'site' an edit touched, whatever the values (the same
# sites a handoff's report groups attempts by).
_mask = site_of


def propose(prompt: str, rng: np.random.Generator, max_tries: int = 24) -> str:
    """An edit for the propose prompt ``prompt``: a rationale and SEARCH/REPLACE blocks.

    Up to ``max_tries`` candidates are drawn until one repeats no change the memory shows
    failing or not paying; then one more is taken whatever it repeats.
    """
    try:
        p = parse_propose(prompt)
    except ValueError as e:
        return f"I cannot propose an edit: {e}."
    # Edits that failed or did not pay (a repair of a scoreless parent counts as paying).
    bad = {
        _pair(c)
        for m in p.memory
        if not m.ok or (m.delta is not None and m.delta <= 0)
        for c in m.changes
    }
    site_fails, site_wins = site_stats(p.memory)
    where = ops.editable_lines(p.parent, p.focus)
    for _ in range(max_tries):
        prop = _draw(p, where, rng, site_fails, site_wins)
        if prop is not None and not any(_pair(c) in bad for c in prop.changes):
            return _render(prop)
    prop = _draw(p, where, rng, site_fails, site_wins)
    if prop is None:
        return "I found nothing in the focus area that I know how to change."
    return _render(prop)


def _draw(
    p: ProposePrompt,
    where: tuple[list[int], str],
    rng: np.random.Generator,
    fails: Counter,
    wins: Counter,
) -> ops.Proposal | None:
    lines, area = where  # ops.editable_lines of the parent, the same for every draw
    # Operators in a random order drawn by weight; the first that applies is used.
    names = list(OP_WEIGHTS)
    w = np.array([OP_WEIGHTS[k] for k in names])
    for name in rng.choice(names, size=len(names), replace=False, p=w / w.sum()):
        prop = _op(str(name), p, rng, lines, area, fails, wins)
        if prop is not None:
            return prop
    return None


def _op(
    name: str,
    p: ProposePrompt,
    rng: np.random.Generator,
    lines: list[int],
    area: str,
    fails: Counter,
    wins: Counter,
) -> ops.Proposal | None:
    if name == "continue":
        return _continuation(p, rng, lines)
    if name == "crossover" and p.inspirations:
        donor_id, donor = p.inspirations[int(rng.integers(len(p.inspirations)))]
        x = ops.crossover(p.parent, donor, p.focus, rng)
        if x is None:
            return None
        search, replace, new_code, what = x
        return ops.Proposal(
            "crossover",
            f"Take {what} from inspiration {donor_id}, whose version of it differs, "
            "to test whether its choices work on this parent.",
            ((search, replace),),
            new_code,
            _line_changes(p.parent, new_code),
        )
    if name == "swap":
        return _swap(p.parent, lines, area, rng)
    if name == "perturb":
        n_sites = 1 if rng.random() < 0.8 else int(rng.integers(2, 4))
        return _perturb(p.parent, lines, area, rng, n_sites, fails, wins)
    return None


# How often each operator is tried first. Perturbation does most of the work; the others
# are rarer because they are larger jumps (swap, crossover) or need a paying memory.
OP_WEIGHTS = {"perturb": 0.55, "continue": 0.2, "crossover": 0.15, "swap": 0.1}


def _pair(change: tuple[str, str]) -> tuple[str, str]:
    # Memories hold stripped lines (diff_summary), proposals indented ones.
    return change[0].strip(), change[1].strip()


def site_stats(memory: tuple[Remembered, ...]) -> tuple[Counter, Counter]:
    """Failures and wins per site (a changed line with its numbers masked) in ``memory``."""
    fails: Counter = Counter()
    wins: Counter = Counter()
    for m in memory:
        for old, _new in m.changes:
            (wins if m.ok and (m.delta or 0) > 0 else fails)[_mask(old)] += 1
    return fails, wins


def _perturb(
    code: str,
    lines: list[int],
    area: str,
    rng: np.random.Generator,
    n_sites: int,
    fails: Counter,
    wins: Counter,
) -> ops.Proposal | None:
    blocks, notes, changes = [], [], []
    cur = code
    scale = float(rng.choice(ops.SCALES, p=ops.SCALE_P))
    touched: set[int] = set()
    # The parent's sites serve every step: an edit changes one number on one line, which
    # later steps skip, so the other lines' sites stay where they were (and re-tokenizing
    # the edited program each step would cost milliseconds on the event loop).
    all_sites = ops.numeric_sites(code, lines)
    for _ in range(n_sites):
        sites = [s for s in all_sites if s.line not in touched]
        if not sites:
            break
        cur_lines = cur.splitlines(keepends=True)
        # Sites whose edits kept failing are drawn less; sites that paid, more.
        w = np.array(
            [
                (1.0 + 2.0 * wins[_mask(cur_lines[s.line])])
                / (1.0 + fails[_mask(cur_lines[s.line])])
                for s in sites
            ]
        )
        site = sites[int(rng.choice(len(sites), p=w / w.sum()))]
        new = ops.perturb_number(site.text, rng, scale)
        if new is None:
            continue
        touched.add(site.line)
        old_line = cur_lines[site.line]
        new_line = old_line[: site.start] + new + old_line[site.end :]
        search, replace, cur = ops.line_edit(cur, site.line, new_line)
        blocks.append((search, replace))
        changes.append((old_line.rstrip("\n"), new_line.rstrip("\n")))
        name = ops.name_on(old_line)
        notes.append(f"{name + ' ' if name else ''}{site.text} -> {new}")
    if not blocks:
        return None
    hist = (
        "; earlier edits here did not pay, so I try a fresh value"
        if any(fails[_mask(o)] for o, _ in changes)
        else ""
    )
    return ops.Proposal(
        "perturb",
        f"Perturb {', '.join(notes)} in {area} (relative scale {scale:g}){hist}.",
        tuple(blocks),
        cur,
        tuple(changes),
    )


def _swap(code: str, lines: list[int], area: str, rng: np.random.Generator) -> ops.Proposal | None:
    sites = ops.swap_sites(code, lines)
    if not sites:
        return None
    s = sites[int(rng.integers(len(sites)))]
    old_line = code.splitlines(keepends=True)[s.line]
    new_tok = ops.SWAPS[s.text]
    new_line = old_line[: s.start] + new_tok + old_line[s.end :]
    search, replace, new_code = ops.line_edit(code, s.line, new_line)
    return ops.Proposal(
        "swap",
        f"Swap `{s.text}` for `{new_tok}` in `{old_line.strip()}` ({area}) to test the opposite choice.",
        ((search, replace),),
        new_code,
        ((old_line.rstrip("\n"), new_line.rstrip("\n")),),
    )


def _continuation(
    p: ProposePrompt, rng: np.random.Generator, lines: list[int]
) -> ops.Proposal | None:
    """Repeat a paying change's step on the same line of the parent, if it is there."""
    paid = [m for m in p.memory if m.ok and (m.delta or 0) > 0 and m.changes]
    if not paid:
        return None
    paid.sort(key=lambda m: m.delta or 0, reverse=True)
    m = paid[int(rng.integers(min(3, len(paid))))]
    code_lines = p.parent.splitlines(keepends=True)
    allowed = [i for i in lines if i < len(code_lines)]
    for old, new in m.changes:
        old, new = old.strip(), new.strip()
        hits = [i for i in allowed if code_lines[i].strip() == new]
        if not hits:
            # The paying change was made on another parent: carry it over if it fits here.
            src = [i for i in allowed if code_lines[i].strip() == old]
            if src and not p.parent_id.startswith(m.parent):
                line = code_lines[src[0]]
                indent = line[: len(line) - len(line.lstrip())]
                search, replace, new_code = ops.line_edit(p.parent, src[0], indent + new)
                return ops.Proposal(
                    "continue",
                    f"Carry over a change that paid on another parent (#{m.n}, {m.delta:+.4g}): "
                    f"`{old}` -> `{new}`.",
                    ((search, replace),),
                    new_code,
                    ((line.rstrip("\n"), indent + new),),
                )
            continue
        line = code_lines[hits[0]].rstrip("\n")
        a = list(_DIGITS.finditer(old))
        b = list(_DIGITS.finditer(new))
        here = list(_DIGITS.finditer(line))
        if not (len(a) == len(b) == len(here)):
            continue
        # Step each number that changed once more, at its own position on the line.
        out, notes, shift = line, [], 0
        for x, y, at in zip(a, b, here, strict=True):
            if x.group() == y.group():
                continue
            nxt = _step_again(x.group(), y.group())
            if nxt is None:
                continue
            s0, s1 = at.start() + shift, at.end() + shift
            out = out[:s0] + nxt + out[s1:]
            shift += len(nxt) - (s1 - s0)
            notes.append(f"{y.group()} -> {nxt}")
        if out == line:
            continue
        search, replace, new_code = ops.line_edit(p.parent, hits[0], out)
        return ops.Proposal(
            "continue",
            f"Continue a direction that paid (#{m.n}, {m.delta:+.4g}): {', '.join(notes)} on "
            f"`{line.strip()}`.",
            ((search, replace),),
            new_code,
            ((line, out),),
        )
    return None


def _step_again(x: str, y: str) -> str | None:
    """The value one more step past ``y`` in the direction ``x -> y`` took."""
    is_int = all(c.isdigit() for c in x + y)
    if is_int:
        nxt = int(y) + (int(y) - int(x))
        return str(nxt) if nxt >= 0 else None
    r = ops.number_ratio(x, y)
    if r is None:
        return None
    v = f"{float(y) * r:.6g}"
    return v if any(c in v for c in ".en") else v + ".0"


def _line_changes(a: str, b: str) -> tuple[tuple[str, str], ...]:
    import difflib

    sm = difflib.SequenceMatcher(a=a.splitlines(), b=b.splitlines(), autojunk=False)
    return tuple(
        (sm.a[i1], sm.b[j1])
        for tag, i1, i2, j1, j2 in sm.get_opcodes()
        if tag == "replace" and i2 - i1 == 1 and j2 - j1 == 1
    )


def _render(p: ops.Proposal) -> str:
    parts = [p.rationale, ""]
    for search, replace in p.blocks:
        # removesuffix, not rstrip: a trailing blank line may be what makes SEARCH unique.
        parts += ["<<<<<<< SEARCH", search.removesuffix("\n"), "======="]
        if replace:
            parts.append(replace.removesuffix("\n"))
        parts += [">>>>>>> REPLACE", ""]
    return "\n".join(parts)
