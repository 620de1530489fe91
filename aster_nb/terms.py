"""The terms a program is described by: its numeric literals at their sites, and its token
pairs; and the difference of two programs' terms, one sparse row of the code embedding.

* **each numeric literal, at its site.** A site is named by the tokens around the
  literal with every number in them written ``#`` (``ITERATIONS = #``, ``clip ( centers ,
  # , #`` ...) and the count of earlier sites with the same name, so changing one number
  never renames another site. Its value enters as ``sign(x) * log(1 + |x| / 1e-3)``:
  for ``|x|`` well above 1e-3 a change of ``x`` by a factor ``f`` moves it by ``log f``,
  whatever the magnitude, which is how a multiplicative edit (the offline model's
  perturbation, an LLM's "try 10x") steps. Two programs are then as far apart as the
  number of such steps between them, so nearby values are near and orders of magnitude
  are far. Zero sits at 0 and 1e-3 at ~0.7, so a constant switched on from 0 is a jump.
* **the token pairs** (bigrams of names, operators, short strings, numbers as ``#``),
  counted and entered as ``0.5 * log(1 + count)``: swapping ``min`` for ``max`` or ``+``
  for ``-``, adding or deleting a line moves these. The weight makes one swapped operator
  (about four pair counts changing by one) about as far as changing a constant by a
  factor of 2.7; comments and layout are not tokens and move nothing.

A program's row (:func:`difference`) is the difference of its terms from those of a
reference program: a handful of non-zero entries, hashed (CRC-32) into :data:`COLUMNS`
columns. Tokenized lines, structures and alignments are memoized by content (bounded, and
cleared when full), since an edit changes a line or two of its parent and most edits keep
its structure; the memos change how fast, never what, a program is described as.
:mod:`aster_nb.embedding` fits the principal components of these rows.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

__all__ = ["COLUMNS", "Structure", "Terms", "code_terms", "difference", "terms"]

COLUMNS = 1 << 20
"""Columns terms are hashed into (CRC-32 of the term's key, modulo this)."""
_VALUE_EPS = 1e-3  # literals well above this move by log-ratios (see the module docs)
_PAIR_WEIGHT = 0.5  # one swapped operator ~ a constant changed by a factor e (module docs)
_CONTEXT = 3  # tokens before a literal that name its site (and one after)
_MAX_STRING = 40  # longer string literals are one token "S": docstrings are not behaviour

# One line's tokens; strings spanning lines (triple-quoted) are replaced beforehand.
_TOKEN = re.compile(
    r"""
    (?P<comment>\#.*)
  | (?P<string>[rRbBuUfF]{0,2}(?:"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'))
  | (?P<number>0[xXoObB][0-9a-fA-F_]+
              |(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?[jJ]?)
  | (?P<name>[^\W\d]\w*)
  | (?P<op>\*\*=?|//=?|>>=?|<<=?|->|:=|[-+*/%&|^@<>=!:]=|\S)
    """,
    re.VERBOSE,
)
_Line = tuple[tuple[str, ...], tuple[float, ...]]  # tokens, numeric literals' values
# Tokens of lines seen before: an edit changes a line or two, so a program's other lines
# were tokenized for its parent. Cleared when full (a long run of rewrites).
_LINES: dict[str, _Line] = {}
_LINES_MAX = 65_536


def _number(text: str) -> float | None:
    """The value of a numeric literal, or ``None`` for a complex one."""
    t = text.replace("_", "")
    if t[-1] in "jJ":
        return None
    try:
        return float(int(t, 0)) if t[:2].lower() in ("0x", "0o", "0b") else float(t)
    except ValueError:
        return None


def _line(text: str) -> _Line:
    hit = _LINES.get(text)
    if hit is not None:
        return hit
    toks: list[str] = []
    numbers: list[float] = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "comment":
            break
        tok = m.group()
        if kind == "number":
            value = _number(tok)  # complex or overflowing: a site without a value
            numbers.append(value if value is not None else math.nan)
            toks.append("#")
        elif kind == "string":
            toks.append(tok if len(tok) <= _MAX_STRING else "S")
        else:
            toks.append(tok)
    if len(_LINES) >= _LINES_MAX:
        _LINES.clear()
    out = _LINES[text] = (tuple(toks), tuple(numbers))
    return out


def _strip_long_strings(code: str) -> str:
    """``code`` with each triple-quoted string (docstrings) replaced by the token ``S``."""
    if '"""' not in code and "'''" not in code:
        return code
    out: list[str] = []
    i = 0
    while True:
        starts = [p for q in ('"""', "'''") if (p := code.find(q, i)) >= 0]
        if not starts:
            break
        start = min(starts)
        quote = code[start : start + 3]
        end = code.find(quote, start + 3)
        out += [code[i:start], "S"]
        if end < 0:  # never closed: the rest is the string
            return "".join(out)
        i = end + 3
    out.append(code[i:])
    return "".join(out)


def _tokens(code: str) -> tuple[tuple[str, ...], np.ndarray]:
    """The code's tokens (numbers as ``#``) and the values of its numeric literals, in order."""
    lines = [_LINES.get(t) or _line(t) for t in _strip_long_strings(code).splitlines()]
    toks = tuple(itertools.chain.from_iterable(t for t, _ in lines))
    values = np.fromiter(itertools.chain.from_iterable(v for _, v in lines), dtype=float)
    return toks, values


@dataclass(frozen=True, slots=True)
class Structure:
    """What programs with the same tokens (numbers aside) share: their sites and pairs.

    An edit that changes only constants keeps the structure, so most of a run's programs
    share a handful of them, each worked out once (:func:`_structure`).

    Attributes:
        sites: the name of each numeric literal's site, in order.
        site_columns: their hashed columns.
        pairs: the count of each token pair.
    """

    sites: tuple[str, ...]
    site_columns: np.ndarray
    pairs: Counter[tuple[str, str]]


Terms = tuple[Structure, np.ndarray]
"""A program's terms: its :class:`Structure` and one transformed value per site."""


_STRUCTURES: dict[tuple[str, ...], Structure] = {}
_STRUCTURES_MAX = 4096


def _structure(toks: tuple[str, ...]) -> Structure:
    hit = _STRUCTURES.get(toks)
    if hit is not None:
        return hit
    positions = [i for i, t in enumerate(toks) if t == "#"]
    sites: list[str] = []
    seen: Counter[str] = Counter()
    for i in positions:
        site = " ".join(toks[max(0, i - _CONTEXT) : i]) + " _ " + " ".join(toks[i + 1 : i + 2])
        sites.append(f"{site}@{seen[site]}")
        seen[site] += 1
    out = Structure(
        sites=tuple(sites),
        site_columns=np.fromiter(
            (_column("n:" + x) for x in sites), dtype=np.int64, count=len(sites)
        ),
        pairs=Counter(itertools.pairwise(toks)),
    )
    if len(_STRUCTURES) >= _STRUCTURES_MAX:
        _STRUCTURES.clear()
        _ALIGNMENTS.clear()
    _STRUCTURES[toks] = out
    return out


def terms(code: str) -> Terms:
    """The structure of ``code`` and one transformed value per site (0 where unknown)."""
    toks, values = _tokens(code)
    # a site without a finite value counts as 0; 1e300 / 1e-3 stays finite
    v = np.where(np.isfinite(values), values, 0.0)
    return _structure(toks), np.copysign(np.log1p(np.minimum(np.abs(v), 1e300) / _VALUE_EPS), v)


def code_terms(code: str) -> dict[str, float]:
    """The terms a program is described by (see the module docs), as one mapping.

    Keys are ``"n:<site>"`` for numeric literals (value: the transformed literal) and
    ``"p:<token> <token>"`` for token pairs (value: the weighted log count). Never raises:
    code that does not tokenize as Python is read as far as the pattern matches, which is
    all of it.
    """
    st, values = terms(code)
    out = {f"p:{a} {b}": _pair_value(c) for (a, b), c in st.pairs.items()}
    out.update((f"n:{k}", float(v)) for k, v in zip(st.sites, values, strict=True))
    return out


def _pair_value(count: int) -> float:
    return _PAIR_WEIGHT * math.log1p(count)


def _column(key: str) -> int:
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) & (COLUMNS - 1)


@dataclass(frozen=True, slots=True)
class _Alignment:
    """How a structure's terms line up with the reference's (worked out once per pair)."""

    pair_columns: np.ndarray  # the token pairs whose counts differ, and by how much
    pair_values: np.ndarray
    in_ref: np.ndarray  # for each site of the structure, its index in the reference or -1
    ref_only: np.ndarray  # indices of the reference's sites the structure lacks


# (id(structure), id(reference)) -> (structure, reference, alignment): each entry holds
# its structures, so no id is reused while it is cached
_ALIGNMENTS: dict[tuple[int, int], tuple[Structure, Structure, _Alignment]] = {}


def _alignment(st: Structure, ref: Structure) -> _Alignment:
    key = (id(st), id(ref))
    hit = _ALIGNMENTS.get(key)
    if hit is not None:
        return hit[2]
    pairs: dict[int, float] = {}
    for pair in st.pairs.keys() | ref.pairs.keys():
        a, b = st.pairs.get(pair, 0), ref.pairs.get(pair, 0)
        if a != b:
            col = _column(f"p:{pair[0]} {pair[1]}")
            pairs[col] = pairs.get(col, 0.0) + _pair_value(a) - _pair_value(b)
    where = {site: j for j, site in enumerate(ref.sites)}
    mine = set(st.sites)
    out = _Alignment(
        pair_columns=np.fromiter(pairs, dtype=np.int64, count=len(pairs)),
        pair_values=np.fromiter(pairs.values(), dtype=float, count=len(pairs)),
        in_ref=np.fromiter((where.get(x, -1) for x in st.sites), dtype=np.int64),
        ref_only=np.array([j for j, x in enumerate(ref.sites) if x not in mine], dtype=np.int64),
    )
    if len(_ALIGNMENTS) >= _STRUCTURES_MAX:
        _ALIGNMENTS.clear()
    _ALIGNMENTS[key] = (st, ref, out)
    return out


def difference(mine: Terms, ref: Terms) -> tuple[np.ndarray, np.ndarray]:
    """The terms ``mine`` minus those of ``ref`` where they differ: sorted columns (of
    :data:`COLUMNS`) and their values, the non-zero entries of one row of the history."""
    (st, values), (ref_st, ref_values) = mine, ref
    if st is ref_st:  # only constants changed: compare site by site
        changed = np.flatnonzero(values != ref_values)
        cols, vals = st.site_columns[changed], values[changed] - ref_values[changed]
    else:
        al = _alignment(st, ref_st)
        base = np.where(al.in_ref >= 0, ref_values[np.maximum(al.in_ref, 0)], 0.0)
        if len(ref_values) == 0:
            base = np.zeros(len(values))
        cols = np.concatenate([al.pair_columns, st.site_columns, ref_st.site_columns[al.ref_only]])
        vals = np.concatenate([al.pair_values, values - base, -ref_values[al.ref_only]])
    order = np.argsort(cols, kind="stable")
    cols, vals = cols[order], vals[order]
    if len(cols) > 1 and (cols[1:] == cols[:-1]).any():
        # hashed columns collided: sum what lands on one column (rare; np.unique is slow)
        starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
        cols, vals = cols[starts], np.add.reduceat(vals, starts)
    keep = vals != 0.0
    return cols[keep], vals[keep]
