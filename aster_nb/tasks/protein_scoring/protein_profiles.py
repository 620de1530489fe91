"""Per-position amino-acid distributions ("profiles") for the proteins that have one.

Two frozen zero-shot models give a distribution over the 20 amino acids at each position of
the wild type, and the programs of ``protein_scoring`` may use it:

* **an alignment's site-independent model** (P53_HUMAN, PTEN_HUMAN, SCN5A_HUMAN; EVE's
  alignments): the position-specific frequencies of the focus columns (upper case in the
  a2m file), each sequence weighted by 1 / (number of sequences at >= 80% identity to it,
  ``THETA = 0.2`` as plmc and EVcouplings use), over 21 states (the 20 amino acids and the
  gap), mixed with the uniform distribution at weight ``PSEUDO = 0.5`` (the pseudocount
  weight of mean-field DCA). Its log-ratio ``log p(mt) - log p(wt)`` is the
  site-independent baseline ProteinGym reports; measured against ProteinGym's numbers in
  the task README.
* **ESM-1v** (BLAT_ECOLX): the file of Meier et al. holds the 5 models' wild-type-marginal
  scores ``log p(mt) - log p(wt)`` for every substitution at 262 of 263 positions; their
  mean over the models is ProteinGym's "ESM-1v (ensemble)" score, and the distribution
  with exactly those log-ratios is the softmax of the 19 means and 0 for the wild type.

A profile is an ``(L, 20)`` array of natural-log probabilities in ``ALPHABET`` order, with
``NaN`` rows where the model says nothing (outside the alignment's focus columns, outside
the region ESM-1v was scored on). Only numpy is used, so this module runs anywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ALPHABET = "ACDEFGHIKLMNPQRSTVWY"
GAP = 20  # the 21st state: gap, or any letter that is not one of the 20 amino acids
THETA = 0.2
PSEUDO = 0.5
_BLOCK = 1024  # rows per block of the identity computation

_LUT = np.full(256, GAP, dtype=np.uint8)
for _i, _a in enumerate(ALPHABET):
    _LUT[ord(_a)] = _i
    _LUT[ord(_a.lower())] = _i


def read_a2m(path: str | Path) -> tuple[list[str], list[str]]:
    """Headers and aligned rows of an a2m/FASTA alignment (rows joined across lines)."""
    headers: list[str] = []
    rows: list[list[str]] = []
    with open(path, encoding="ascii") as f:
        for line in f:
            line = line.strip()
            if line.startswith(">"):
                headers.append(line[1:])
                rows.append([])
            elif line and rows:
                rows[-1].append(line)
    if not rows:
        raise ValueError(f"{path}: no sequences")
    return headers, ["".join(r) for r in rows]


def focus_columns(header: str, query: str) -> tuple[np.ndarray, np.ndarray]:
    """Column indices of the focus (upper case) columns of the query row, and the 1-based
    positions in the full sequence they stand for (``NAME/start-end`` in the header).

    In a2m, ``.`` and lower case letters are insertions relative to the focus sequence;
    every letter of the query (either case) is one residue.
    """
    try:
        start = int(header.split("/")[1].split("-")[0])
    except (IndexError, ValueError) as e:
        raise ValueError(f"alignment header {header!r} is not NAME/start-end") from e
    cols, positions = [], []
    pos = start
    for i, c in enumerate(query):
        if c in ".-":
            continue
        if c.isupper():
            cols.append(i)
            positions.append(pos)
        pos += 1
    return np.asarray(cols, dtype=np.int64), np.asarray(positions, dtype=np.int64)


def encode(rows: list[str], cols: np.ndarray) -> np.ndarray:
    """The rows' letters at ``cols`` as state indices (``N x L``, uint8, gap = 20)."""
    width = len(rows[0])
    out = np.empty((len(rows), len(cols)), dtype=np.uint8)
    for n, r in enumerate(rows):
        if len(r) != width:
            raise ValueError(f"alignment row {n} has {len(r)} columns, the query {width}")
        out[n] = _LUT[np.frombuffer(r.encode("ascii"), dtype=np.uint8)[cols]]
    return out


def _one_hot(x: np.ndarray) -> np.ndarray:
    n, length = x.shape
    out = np.zeros((n, length * (GAP + 1)), dtype=np.float32)
    out[np.arange(n)[:, None], np.arange(length) * (GAP + 1) + x] = 1.0
    return out


def sequence_weights(x: np.ndarray, theta: float = THETA) -> np.ndarray:
    """1 / (number of rows at identity >= 1 - theta, itself included), identity counted
    over all ``L`` focus columns with the gap as a state (as plmc does).

    Exact, in blocks of rows: the identity of two rows is the dot product of their one-hot
    codes, so each pair of blocks is one float32 matrix product (counts below 2^24 are exact).
    """
    n, length = x.shape
    need = (1.0 - theta) * length - 1e-3
    neighbours = np.zeros(n, dtype=np.int64)
    blocks = [(s, min(s + _BLOCK, n)) for s in range(0, n, _BLOCK)]
    hot = [_one_hot(x[s:e]) for s, e in blocks]
    for i, (si, ei) in enumerate(blocks):
        for j in range(i, len(blocks)):
            close = (hot[i] @ hot[j].T) >= need
            neighbours[si:ei] += close.sum(axis=1)
            if j != i:
                sj, ej = blocks[j]
                neighbours[sj:ej] += close.sum(axis=0)
    return 1.0 / neighbours


def alignment_profile(path: str | Path, length: int) -> np.ndarray:
    """The site-independent model of the alignment at ``path`` as an ``(length, 20)``
    log-probability profile of the full sequence (NaN rows outside the focus columns)."""
    headers, rows = read_a2m(path)
    cols, positions = focus_columns(headers[0], rows[0])
    if positions.max() > length:
        raise ValueError(f"{path}: the alignment reaches position {positions.max()} > {length}")
    x = encode(rows, cols)
    w = sequence_weights(x)
    counts = np.zeros((x.shape[1], GAP + 1))
    for state in range(GAP + 1):
        counts[:, state] = ((x == state) * w[:, None]).sum(axis=0)
    freq = counts / counts.sum(axis=1, keepdims=True)
    p = (1.0 - PSEUDO) * freq + PSEUDO / (GAP + 1)
    logp = np.log(p[:, :GAP])
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))  # renormalized over the 20
    out = np.full((length, len(ALPHABET)), np.nan)
    out[positions - 1] = logp
    return out


def esm1v_profile(mutants: list[str], scores: np.ndarray, sequence: str) -> np.ndarray:
    """The ``(len(sequence), 20)`` log-probability profile whose log-ratios are ``scores``
    (one row per mutant ``A24C``, one column per ESM-1v model; averaged over the models).

    A position gets a row only when all 19 substitutions are scored; else it stays NaN.
    """
    mean = np.asarray(scores, dtype=np.float64).mean(axis=1)
    ratio = np.full((len(sequence), len(ALPHABET)), np.nan)
    for m, s in zip(mutants, mean, strict=True):
        wt, pos, mt = m[0], int(m[1:-1]), m[-1]
        if sequence[pos - 1] != wt:
            raise ValueError(f"ESM-1v mutant {m}: the wild type has {sequence[pos - 1]} there")
        ratio[pos - 1, ALPHABET.index(mt)] = s
    for pos, wt in enumerate(sequence):
        if wt in ALPHABET:
            ratio[pos, ALPHABET.index(wt)] = 0.0
        else:
            ratio[pos] = np.nan
    full = ~np.isnan(ratio).any(axis=1)
    out = np.full_like(ratio, np.nan)
    r = ratio[full]
    top = r.max(axis=1, keepdims=True)
    out[full] = r - top - np.log(np.exp(r - top).sum(axis=1, keepdims=True))  # log-softmax
    return out
