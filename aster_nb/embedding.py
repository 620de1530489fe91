"""A code embedding fit on a run's history: the default descriptor when the evaluator gives none.

An archive's cells only matter if the descriptor moves when the search changes a program.
Most edits of a tuned program -- the offline model's and an LLM's alike -- change a
constant, which code size or the share of numeric tokens cannot see (measured: every
archive then had one cell). So a program is described by what such edits change:

* **each numeric literal, at its site**, its value on a log scale, so a change by a
  factor moves it by the same step at any magnitude;
* **the token pairs**, counted: swapping an operator, adding or deleting a line moves these
  (details in :mod:`aster_nb.terms`).

A program's row is the difference of its terms from those of the first program seen (the
run's initial program): a handful of non-zero entries, hashed (CRC-32) into 2**20 columns,
so the history is a sparse matrix that costs one row of a few entries per program. The
terms and the rows are made in :mod:`aster_nb.terms`.

The embedding is principal component analysis (PCA) of that history, refit whenever the
history has grown by ``growth`` (the same geometric schedule as Cluster-Elites'
re-clustering, so the cost stays amortized) and with every row re-projected at each refit.
The first ``dims`` components are the directions in which the run's programs actually
differ; they keep the units above (PCA rotates, it does not rescale), so archives cluster
them as they are, without standardizing. PCA is fit on at most ``fit_rows`` rows spread
evenly over the history; projecting all rows is one sparse product.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .program import Program
from .terms import COLUMNS, Terms, code_terms, difference, terms

__all__ = ["CodeEmbedding", "Fit", "code_terms"]


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
        self._reference: Terms | None = None
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
        mine = terms(code)
        if self._reference is None:
            self._reference = mine
        cols, vals = difference(mine, self._reference)
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
            shape=(len(self), COLUMNS),
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
