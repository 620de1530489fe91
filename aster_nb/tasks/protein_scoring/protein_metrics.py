"""Spearman's rank correlation per assay, and ProteinGym's way of averaging it.

ProteinGym's leaderboard does not take the plain mean over assays, which would let the
proteins measured many times (four BLAT_ECOLX assays, four P53_HUMAN ones) and the
over-represented selection type (organismal fitness) dominate. It averages the per-assay
Spearman first within each (UniProt id, coarse selection type), then over the proteins of
each selection type, then over the selection types. :func:`aggregate` does the same.
Only numpy is used.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties getting the mean of the ranks they span."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    first = np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])
    starts = np.flatnonzero(first)
    ends = np.concatenate([starts[1:], [len(x)]])
    mean_rank = (starts + ends + 1) / 2.0  # ranks starts+1 .. ends, averaged
    out = np.empty(len(x))
    out[order] = np.repeat(mean_rank, ends - starts)
    return out


def spearman(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Spearman's rho (Pearson's r of the tie-averaged ranks); 0 when either side is constant."""
    a, b = ranks(prediction), ranks(truth)
    a -= a.mean()
    b -= b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def aggregate(
    values: Sequence[float], proteins: Sequence[str], selection_types: Sequence[str]
) -> tuple[float, dict[str, float]]:
    """ProteinGym's average of per-assay ``values``: within (protein, selection type), then
    within selection type, then across types. Returns it and the per-type averages."""
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for v, p, t in zip(values, proteins, selection_types, strict=True):
        cells[(t, p)].append(float(v))
    per_type: dict[str, list[float]] = defaultdict(list)
    for (t, _), vs in sorted(cells.items()):
        per_type[t].append(float(np.mean(vs)))
    types = {t: float(np.mean(vs)) for t, vs in sorted(per_type.items())}
    overall = float(np.mean(list(types.values()))) if types else float("nan")
    return overall, types
