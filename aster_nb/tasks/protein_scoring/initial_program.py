"""Zero-shot scoring of single amino-acid substitutions.

Entry point: ``score_variants(v) -> array``, one number per variant of one assay (higher
means fitter). ``v`` has ``sequence`` (the wild type), ``positions`` (0-based), ``wt`` and
``mt`` (residue indices into ``ALPHABET``), ``mutants`` (``"P72R"``), and for a few proteins
``profile``: an ``(L, 20)`` array of log-probabilities of each amino acid at each position
under a frozen model (``NaN`` rows where it says nothing; ``profile_kind`` is
``"alignment"`` or ``"esm1v"``), else ``None``. The evaluator ranks the numbers against
measured fitness (Spearman), assay by assay; no labels are ever available here.

Three parts: ``substitution`` scores the exchange of two residues from tables (BLOSUM62,
hydropathy, volume, charge), ``site`` weighs how much a position matters from the sequence
alone, and ``profile`` uses the frozen model where there is one. The tables below the
blocks are fixed data; the constants in the blocks are the knobs.
"""

import numpy as np

ALPHABET = "ACDEFGHIKLMNPQRSTVWY"

# EVOLVE-BLOCK-START substitution
# What replacing residue wt by mt costs, from tables alone (larger: better tolerated).
W_BLOSUM = 1.0  # BLOSUM62 log-odds: pairs exchanged often in evolution are tolerated
W_HYDRO = 0.0  # |change of hydropathy| (Kyte-Doolittle units)
W_VOLUME = 0.0  # |change of side-chain volume| (per 100 cubic angstrom)
W_CHARGE = 0.0  # |change of charge|
W_TO_PROLINE = 0.0  # extra cost of a proline, which breaks helices and strands
W_FROM_GLYCINE = 0.0  # extra cost of replacing a glycine (backbone flexibility)


def substitution_score(v):
    wt, mt = v.wt, v.mt
    s = W_BLOSUM * BLOSUM62[wt, mt]
    s = s - W_HYDRO * np.abs(HYDROPATHY[mt] - HYDROPATHY[wt])
    s = s - W_VOLUME * np.abs(VOLUME[mt] - VOLUME[wt]) / 100.0
    s = s - W_CHARGE * np.abs(CHARGE[mt] - CHARGE[wt])
    s = s - W_TO_PROLINE * (mt == PROLINE)
    s = s - W_FROM_GLYCINE * (wt == GLYCINE)
    return s


# EVOLVE-BLOCK-END


# EVOLVE-BLOCK-START site
# How much a position matters, from the sequence alone: a penalty (in standard deviations
# of the table score) for every substitution at a position that is likely buried, and a
# bonus near the ends of the chain, which are often disordered.
WINDOW = 7  # residues on each side whose mean hydropathy marks a buried stretch
W_BURIAL = 0.0  # penalty per unit of that local hydropathy (scaled to [-1, 1])
W_WT_HYDRO = 0.0  # penalty per unit of the wild-type residue's own hydropathy
TERMINUS = 0.05  # fraction of the length at each end counted as "near an end"
W_TERMINUS = 0.0  # bonus right at an end, fading to 0 at TERMINUS


def site_penalty(v):
    hyd = HYDROPATHY[sequence_indices(v.sequence)] / 4.5
    local = window_mean(hyd, int(WINDOW))[v.positions]
    penalty = W_BURIAL * local + W_WT_HYDRO * HYDROPATHY[v.wt] / 4.5
    edge = np.minimum(v.positions, len(v.sequence) - 1 - v.positions) / len(v.sequence)
    fade = np.clip(edge / max(TERMINUS, 1e-6), 0.0, 1.0)
    return penalty - W_TERMINUS * (1.0 - fade)


# EVOLVE-BLOCK-END


# EVOLVE-BLOCK-START profile
# Where a frozen model gives a distribution: its log-ratio log p(mt) - log p(wt), blended
# with the table score (both standardized within the assay).
W_PROFILE = 1.0  # the model's log-ratio
W_TABLES = 0.0  # the table score, where there is a profile
W_CONSERVATION = 0.0  # how much more a substitution costs at a low-entropy position
ESM_WEIGHT = 1.0  # multiplies W_PROFILE when the profile comes from ESM-1v


def profile_score(v, tables):
    rows = v.profile[v.positions]
    ratio = rows[np.arange(len(v.wt)), v.mt] - rows[np.arange(len(v.wt)), v.wt]
    entropy = -np.nansum(np.exp(rows) * rows, axis=1) / np.log(20.0)
    ratio = ratio * (1.0 + W_CONSERVATION * (1.0 - entropy))
    known = np.isfinite(ratio)
    weight = W_PROFILE * (ESM_WEIGHT if v.profile_kind == "esm1v" else 1.0)
    z_ratio = standardize(np.where(known, ratio, np.nanmean(ratio) if known.any() else 0.0))
    return np.where(known, weight * z_ratio + W_TABLES * tables, tables)


# EVOLVE-BLOCK-END


def score_variants(v):
    tables = standardize(substitution_score(v)) - site_penalty(v)
    if v.profile is None:
        return tables
    return profile_score(v, tables)


def standardize(x):
    x = np.asarray(x, dtype=float)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else x - x.mean()


def sequence_indices(sequence):
    return np.array([ALPHABET.find(c) for c in sequence]) % len(ALPHABET)


def window_mean(x, half):
    half = max(0, half)
    padded = np.concatenate([np.zeros(1), np.cumsum(x)])
    idx = np.arange(len(x))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(x))
    return (padded[hi] - padded[lo]) / (hi - lo)


# Fixed tables, in ALPHABET order.
_BLOSUM62_ORDER = "ARNDCQEGHILKMFPSTWYV"
_BLOSUM62_ROWS = """
 4 -1 -2 -2  0 -1 -1  0 -2 -1 -1 -1 -1 -2 -1  1  0 -3 -2  0
-1  5  0 -2 -3  1  0 -2  0 -3 -2  2 -1 -3 -2 -1 -1 -3 -2 -3
-2  0  6  1 -3  0  0  0  1 -3 -3  0 -2 -3 -2  1  0 -4 -2 -3
-2 -2  1  6 -3  0  2 -1 -1 -3 -4 -1 -3 -3 -1  0 -1 -4 -3 -3
 0 -3 -3 -3  9 -3 -4 -3 -3 -1 -1 -3 -1 -2 -3 -1 -1 -2 -2 -1
-1  1  0  0 -3  5  2 -2  0 -3 -2  1  0 -3 -1  0 -1 -2 -1 -2
-1  0  0  2 -4  2  5 -2  0 -3 -3  1 -2 -3 -1  0 -1 -3 -2 -2
 0 -2  0 -1 -3 -2 -2  6 -2 -4 -4 -2 -3 -3 -2  0 -2 -2 -3 -3
-2  0  1 -1 -3  0  0 -2  8 -3 -3 -1 -2 -1 -2 -1 -2 -2  2 -3
-1 -3 -3 -3 -1 -3 -3 -4 -3  4  2 -3  1  0 -3 -2 -1 -3 -1  3
-1 -2 -3 -4 -1 -2 -3 -4 -3  2  4 -2  2  0 -3 -2 -1 -2 -1  1
-1  2  0 -1 -3  1  1 -2 -1 -3 -2  5 -1 -3 -1  0 -1 -3 -2 -2
-1 -1 -2 -3 -1  0 -2 -3 -2  1  2 -1  5  0 -2 -1 -1 -1 -1  1
-2 -3 -3 -3 -2 -3 -3 -3 -1  0  0 -3  0  6 -4 -2 -2  1  3 -1
-1 -2 -2 -1 -3 -1 -1 -2 -2 -3 -3 -1 -2 -4  7 -1 -1 -4 -3 -2
 1 -1  1  0 -1  0  0  0 -1 -2 -2  0 -1 -2 -1  4  1 -3 -2 -2
 0 -1  0 -1 -1 -1 -1 -2 -2 -1 -1 -1 -1 -2 -1  1  5 -2 -2  0
-3 -3 -4 -4 -2 -2 -3 -2 -2 -3 -2 -3 -1  1 -4 -3 -2 11  2 -3
-2 -2 -2 -3 -2 -1 -2 -3  2 -1 -1 -2 -1  3 -3 -2 -2  2  7 -1
 0 -3 -3 -3 -1 -2 -2 -3 -3  3  1 -2  1 -1 -2 -2  0 -3 -1  4
"""
_perm = [_BLOSUM62_ORDER.index(a) for a in ALPHABET]
BLOSUM62 = np.array(_BLOSUM62_ROWS.split(), dtype=float).reshape(20, 20)[np.ix_(_perm, _perm)]
# Kyte & Doolittle (1982) hydropathy
HYDROPATHY = np.array([dict(
    A=1.8, C=2.5, D=-3.5, E=-3.5, F=2.8, G=-0.4, H=-3.2, I=4.5, K=-3.9, L=3.8,
    M=1.9, N=-3.5, P=-1.6, Q=-3.5, R=-4.5, S=-0.8, T=-0.7, V=4.2, W=-0.9, Y=-1.3,
)[a] for a in ALPHABET])  # fmt: skip
# side-chain volumes in cubic angstrom (Zamyatnin 1972)
VOLUME = np.array([dict(
    A=88.6, C=108.5, D=111.1, E=138.4, F=189.9, G=60.1, H=153.2, I=166.7, K=168.6,
    L=166.7, M=162.9, N=114.1, P=112.7, Q=143.8, R=173.4, S=89.0, T=116.1, V=140.0,
    W=227.8, Y=193.6,
)[a] for a in ALPHABET])  # fmt: skip
# side-chain charge at neutral pH
CHARGE = np.array([dict(D=-1.0, E=-1.0, H=0.1, K=1.0, R=1.0).get(a, 0.0) for a in ALPHABET])
PROLINE, GLYCINE = ALPHABET.index("P"), ALPHABET.index("G")
