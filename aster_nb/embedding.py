"""A code embedding fit on a run's history: the default descriptor when the evaluator gives none.

An archive's cells only matter if the descriptor moves when the search changes a program.
Most edits of a tuned program -- the offline model's and an LLM's alike -- change a
constant, which code size or the share of numeric tokens cannot see (measured: every
archive then had one cell). So a program is described by what such edits change:

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

A program's row is the difference of its terms from those of the first program seen (the
run's initial program): a handful of non-zero entries, hashed (CRC-32) into 2**20 columns,
so the history is a sparse matrix that costs one row of a few entries per program.

The embedding is principal component analysis (PCA) of that history, refit whenever the
history has grown by ``growth`` (the same geometric schedule as Cluster-Elites'
re-clustering, so the cost stays amortized) and with every row re-projected at each refit.
The first ``dims`` components are the directions in which the run's programs actually
differ; they keep the units above (PCA rotates, it does not rescale), so archives cluster
them as they are, without standardizing. PCA is fit on at most ``fit_rows`` rows spread
evenly over the history; projecting all rows is one sparse product.
"""

from __future__ import annotations

import itertools
import math
import re
import time
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .program import Program

__all__ = ["CodeEmbedding", "code_terms"]

_COLUMNS = 1 << 20
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
class _Structure:
    """What programs with the same tokens (numbers aside) share: their sites and pairs.

    An edit that changes only constants keeps the structure, so most of a run's programs
    share a handful of them, each worked out once (:func:`_structure`).
    """

    sites: tuple[str, ...]  # the name of each numeric literal's site, in order
    site_columns: np.ndarray  # their hashed columns
    pairs: Counter[tuple[str, str]]


_STRUCTURES: dict[tuple[str, ...], _Structure] = {}
_STRUCTURES_MAX = 4096


def _structure(toks: tuple[str, ...]) -> _Structure:
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
    out = _Structure(
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


def _terms(code: str) -> tuple[_Structure, np.ndarray]:
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
    st, values = _terms(code)
    out = {f"p:{a} {b}": _pair_value(c) for (a, b), c in st.pairs.items()}
    out.update((f"n:{k}", float(v)) for k, v in zip(st.sites, values, strict=True))
    return out


def _pair_value(count: int) -> float:
    return _PAIR_WEIGHT * math.log1p(count)


def _column(key: str) -> int:
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) & (_COLUMNS - 1)


@dataclass(frozen=True, slots=True)
class _Alignment:
    """How a structure's terms line up with the reference's (worked out once per pair)."""

    pair_columns: np.ndarray  # the token pairs whose counts differ, and by how much
    pair_values: np.ndarray
    in_ref: np.ndarray  # for each site of the structure, its index in the reference or -1
    ref_only: np.ndarray  # indices of the reference's sites the structure lacks


# (id(structure), id(reference)) -> (structure, reference, alignment): each entry holds
# its structures, so no id is reused while it is cached
_ALIGNMENTS: dict[tuple[int, int], tuple[_Structure, _Structure, _Alignment]] = {}


def _alignment(st: _Structure, ref: _Structure) -> _Alignment:
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


def _difference(
    terms: tuple[_Structure, np.ndarray], ref: tuple[_Structure, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The terms of ``terms`` minus those of ``ref`` where they differ: sorted columns and
    their values."""
    (st, values), (ref_st, ref_values) = terms, ref
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


@dataclass(frozen=True, slots=True)
class Fit:
    """One PCA fit of the history.

    Attributes:
        columns: the history's non-zero columns, sorted; the components are over these.
        mean: mean of the fitted rows over ``columns``.
        components: ``(dims, len(columns))``, orthonormal rows, zero rows past the rank.
        variance: variance of the history along each component, shape ``(dims,)``.
        total: total variance of the fitted rows (the sum over all directions).
        rows: history rows when it was fit.
    """

    columns: np.ndarray
    mean: np.ndarray
    components: np.ndarray
    variance: np.ndarray
    total: float
    rows: int

    @property
    def explained(self) -> np.ndarray:
        """Fraction of the history's variance along each component, shape ``(dims,)``."""
        return self.variance / self.total if self.total > 0 else np.zeros_like(self.variance)


class CodeEmbedding:
    """PCA of the run's programs' terms (see the module docs), refit as the history grows.

    Args:
        dims: number of components, the archive's descriptor length (default 16).
        growth: refit when the history has grown by this factor since the last fit; must
            be > 1 (default 1.25, Cluster-Elites' re-cluster schedule).
        fit_rows: at most this many rows, spread evenly over the history, are used to
            fit the components (default 2,048); every row is projected.
        max_columns: the fit keeps at most this many columns, those of highest variance
            on the fitted rows (default 2,048), which bounds its cost however many
            different tokens a long run of rewrites produces.

    Attributes:
        fit: the current :class:`Fit`; ``None`` before the first.
        fits: number of refits so far.
        fit_seconds: total wall time spent refitting and re-projecting.
    """

    kind = "embedding"
    scaled = True  # components share the terms' unit: archives must not rescale them

    def __init__(
        self, *, dims: int = 16, growth: float = 1.25, fit_rows: int = 2048, max_columns: int = 2048
    ) -> None:
        for name, value, low in (
            ("dims", dims, 1),
            ("fit_rows", fit_rows, 2),
            ("max_columns", max_columns, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if not (isinstance(growth, int | float) and math.isfinite(growth) and growth > 1.0):
            raise ValueError(
                f"growth must be a finite number > 1 (a refit schedule), got {growth!r}"
            )
        self.dims = dims
        self.growth = float(growth)
        self.fit_rows = fit_rows
        self.max_columns = max_columns
        self.fit: Fit | None = None
        self.fits = 0
        self.fit_seconds = 0.0
        self._reference: tuple[_Structure, np.ndarray] | None = None
        self._next_fit = 1
        # The history as growable CSR buffers: row i is data[ptr[i]:ptr[i + 1]] at cols.
        self._ptr = [0]
        self._cols = np.empty(1024, dtype=np.int32)
        self._data = np.empty(1024)

    def __len__(self) -> int:
        """Number of history rows."""
        return len(self._ptr) - 1

    # -- adding ---------------------------------------------------------------------------

    def add(self, code: str) -> np.ndarray:
        """Append ``code`` to the history; its embedding under the current fit, ``(dims,)``.

        The first code added is the reference every row is a difference from.
        """
        terms = _terms(code)
        if self._reference is None:
            self._reference = terms
        cols, vals = _difference(terms, self._reference)
        end = self._ptr[-1]
        if end + len(cols) > len(self._cols):
            size = max(2 * len(self._cols), end + len(cols))
            self._cols = np.resize(self._cols, size)
            self._data = np.resize(self._data, size)
        self._cols[end : end + len(cols)] = cols
        self._data[end : end + len(cols)] = vals
        self._ptr.append(end + len(cols))
        return self._project_one(cols, vals)

    def __call__(self, program: Program) -> np.ndarray:
        """:meth:`add` the program's code (the descriptor protocol of the archives)."""
        return self.add(program.code)

    def due(self) -> bool:
        """Whether the history has grown enough since the last fit to refit now."""
        return len(self) >= self._next_fit

    # -- fitting --------------------------------------------------------------------------

    def refit(self) -> np.ndarray:
        """Fit the components on the history and re-project every row, ``(rows, dims)``."""
        t0 = time.perf_counter()
        n = len(self)
        x = self._matrix()
        columns = np.unique(x.indices) if x.nnz else np.empty(0, dtype=np.int32)
        sample = np.unique(np.linspace(0, n - 1, min(n, self.fit_rows)).round().astype(np.int64))
        local = x[:, columns] if len(columns) else sp.csr_matrix((n, 0))
        fitted = local[sample].toarray()
        mean = fitted.mean(axis=0) if len(sample) else np.zeros(len(columns))
        centred = fitted - mean
        var = (centred**2).sum(axis=0)
        if len(columns) > self.max_columns:  # keep the most varied columns
            keep = np.sort(np.argsort(-var, kind="stable")[: self.max_columns])
            columns, mean, centred, var = columns[keep], mean[keep], centred[:, keep], var[keep]
            local = local[:, keep]
        total = float(var.sum()) / max(len(sample), 1)
        components, variance = _principal(centred, self.dims)
        prev = self.fit
        if prev is not None:
            components = _align(components, columns, prev)
        self.fit = Fit(columns, mean, components, variance, total, n)
        out = np.zeros((n, self.dims))
        if len(columns):
            out[:] = local @ components.T - mean @ components.T
        self.fits += 1
        self._next_fit = max(n + 1, math.ceil(n * self.growth))
        self.fit_seconds += time.perf_counter() - t0
        return out

    def _matrix(self) -> sp.csr_matrix:
        end = self._ptr[-1]
        return sp.csr_matrix(
            (self._data[:end], self._cols[:end], np.asarray(self._ptr, dtype=np.int64)),
            shape=(len(self), _COLUMNS),
        )

    def _project_one(self, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
        fit = self.fit
        if fit is None or len(fit.columns) == 0:
            return np.zeros(self.dims)
        pos = np.searchsorted(fit.columns, cols)
        pos = np.minimum(pos, len(fit.columns) - 1)
        known = fit.columns[pos] == cols
        row = np.zeros(len(fit.columns))
        row[pos[known]] = vals[known]
        return fit.components @ (row - fit.mean)

    # -- describing -----------------------------------------------------------------------

    def explained(self) -> float:
        """Fraction of the history's variance the ``dims`` components keep (0 before a fit)."""
        return float(self.fit.explained.sum()) if self.fit is not None else 0.0

    def axis_names(self) -> tuple[str, ...]:
        """One name per dimension, with the share of the history's variance along it."""
        shares = self.fit.explained if self.fit is not None else np.zeros(self.dims)
        return tuple(f"code PC{i + 1} ({s:.0%} of variance)" for i, s in enumerate(shares))


def _principal(centred: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``dims`` principal directions of ``centred`` rows and the variance along each.

    From the eigenvectors of the smaller of the covariance and Gram matrices; zero rows
    past the rank. Each direction's sign is fixed so its largest-magnitude entry is positive.
    """
    m, c = centred.shape
    components = np.zeros((dims, c))
    variance = np.zeros(dims)
    if m < 2 or c == 0:
        return components, variance
    if c <= m:
        w, v = np.linalg.eigh(centred.T @ centred)
        order = np.argsort(-w, kind="stable")[:dims]
        vecs = v[:, order].T
        vals = w[order]
    else:
        w, u = np.linalg.eigh(centred @ centred.T)
        order = np.argsort(-w, kind="stable")[:dims]
        vals = w[order]
        keep = vals > 0
        vecs = np.zeros((len(order), c))
        vecs[keep] = (centred.T @ u[:, order[keep]] / np.sqrt(vals[keep])).T
    tol = max(float(vals.max(initial=0.0)), 0.0) * 1e-10
    good = vals > tol
    vecs, vals = vecs[good], vals[good]
    big = np.argmax(np.abs(vecs), axis=1)
    vecs *= np.sign(vecs[np.arange(len(vecs)), big])[:, None]
    components[: len(vecs)] = vecs
    variance[: len(vals)] = vals / m
    return components, variance


def _align(components: np.ndarray, columns: np.ndarray, prev: Fit) -> np.ndarray:
    """Flip components that point against the previous fit's, so axes keep their direction."""
    common, a, b = np.intersect1d(columns, prev.columns, return_indices=True)
    if len(common) == 0:
        return components
    dots = components[:, a] @ prev.components[:, b].T
    k = min(len(components), len(prev.components))
    flip = np.diag(dots[:k, :k]) < 0
    out = components.copy()
    out[:k][flip] *= -1
    return out
