"""Evaluator of ``protein_scoring``: zero-shot variant-effect prediction on ProteinGym.

The program defines ``score_variants(v) -> array``: one number per variant of one assay,
higher meaning fitter. ``v`` carries only what a zero-shot method may use (see
:class:`Variants`): the wild-type sequence, the substitutions, and where one exists a frozen
model's per-position distribution. The score is the mean Spearman correlation between the
numbers and the measured fitness over the training assays, averaged as ProteinGym does
(:mod:`protein_metrics`); the held-out assays' figure is reported in the metrics only.

How the labels stay out of the program's reach, although it runs inside this process:

1. At import (once per sandbox server) only label-free inputs are loaded
   (:mod:`protein_data`'s cache, ``inputs.npz``); the labels file is opened but not read.
2. ``evaluate`` forks a guarded child (:mod:`aster_nb.guard`): every file descriptor but
   stdout, stderr and an answer pipe is closed and a seccomp filter refuses every ``open``,
   ``exec``, ``fork`` and ``socket``. The program is compiled and run there, on every
   assay, and only float arrays come back.
3. Only then does this process read the labels and score the predictions.

So the program's memory holds no label at any time, its process cannot open a file or start
one that could, and the variants come sorted by position and residue, never in the assay
file's order. The modules a program may import are those loaded here before the fork
(``ALLOWED_IMPORTS``): importing another one needs a file.
"""

from __future__ import annotations

import bisect  # noqa: F401  (ALLOWED_IMPORTS: loaded here so a program can import them)
import collections  # noqa: F401
import dataclasses
import functools  # noqa: F401
import heapq  # noqa: F401
import io
import itertools  # noqa: F401
import math
import operator  # noqa: F401
import os
import random  # noqa: F401
import re  # noqa: F401
import statistics  # noqa: F401
import string  # noqa: F401
import typing  # noqa: F401
from pathlib import Path

import numpy as np
import protein_data
import protein_metrics

from aster_nb.guard import load_program, run_guarded

ENTRY = "score_variants"
ALLOWED_IMPORTS = (
    "numpy", "math", "itertools", "functools", "collections", "statistics", "re",
    "random", "heapq", "bisect", "operator", "string", "dataclasses", "typing",
)  # fmt: skip
ALPHABET = protein_data.ALPHABET


@dataclasses.dataclass(frozen=True, slots=True)
class Variants:
    """The single-substitution variants of one assay, as the program sees them.

    Attributes:
        sequence: the wild-type sequence (one letter per residue).
        positions: 0-based position of each variant's substitution (int array).
        wt: the wild-type residue of each variant, as an index into ``alphabet``.
        mt: the substituted residue, as an index into ``alphabet``.
        mutants: each variant as ProteinGym writes it, e.g. ``"P72R"`` (1-based).
        profile: ``(len(sequence), 20)`` natural-log probabilities of the amino acids at
            each position under a frozen model (columns in ``alphabet`` order; rows of
            ``NaN`` where it says nothing), or ``None`` for proteins without one.
        profile_kind: ``"alignment"`` (a site-independent model of a multiple sequence
            alignment), ``"esm1v"`` (the ESM-1v protein language model), or ``None``.
        alphabet: ``"ACDEFGHIKLMNPQRSTVWY"``.
    """

    sequence: str
    positions: np.ndarray
    wt: np.ndarray
    mt: np.ndarray
    mutants: tuple[str, ...]
    profile: np.ndarray | None
    profile_kind: str | None
    alphabet: str = ALPHABET


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.flags.writeable = False
    return a


def _variants(meta: dict, arrays: dict[str, np.ndarray]) -> list[Variants]:
    out = []
    for r in meta["assays"]:
        s = slice(r["offset"], r["offset"] + r["n"])
        pos, wt, mt = (arrays[k][s].astype(np.int64) for k in ("positions", "wt", "mt"))
        seq = r["sequence"]
        profile = arrays.get(f"profile_{r['uniprot']}") if r["profile"] else None
        out.append(
            Variants(
                sequence=seq,
                positions=_readonly(pos),
                wt=_readonly(wt),
                mt=_readonly(mt),
                mutants=tuple(
                    f"{seq[p]}{p + 1}{ALPHABET[m]}" for p, m in zip(pos, mt, strict=True)
                ),
                profile=None if profile is None else _readonly(profile),
                profile_kind=r["profile"],
            )
        )
    return out


DATA = protein_data.data_dir()
CACHE = protein_data.ensure_cache(DATA, subprocess_build=True)
META, _ARRAYS = protein_data.read_inputs(CACHE)
ASSAYS = META["assays"]
VARIANTS = _variants(META, _ARRAYS)
TOTAL = sum(r["n"] for r in ASSAYS)
# opened now, read only after a program's predictions are in; the guarded child closes it
_LABELS_FD = os.open(CACHE / "labels.npz", os.O_RDONLY | os.O_CLOEXEC)


def _predict(source: str, path: str) -> list[np.ndarray]:
    """Run the program on every assay (in the guarded child)."""
    entry = load_program(source, path, name="protein_program").get(ENTRY)
    if not callable(entry):
        raise NameError(f"the program defines no function {ENTRY}(variants)")
    return [np.asarray(entry(v), dtype=np.float64) for v in VARIANTS]


def _labels() -> np.ndarray:
    size = os.fstat(_LABELS_FD).st_size
    with np.load(io.BytesIO(os.pread(_LABELS_FD, size, 0))) as z:
        return z["scores"]


def _check(predictions: list[np.ndarray]) -> str | None:
    """Why the predictions cannot be scored, or None."""
    if len(predictions) != len(ASSAYS):
        return f"expected {len(ASSAYS)} arrays, got {len(predictions)}"
    for r, p in zip(ASSAYS, predictions, strict=True):
        if p.size != r["n"]:
            return f"{ENTRY} returned {p.size} numbers for an assay of {r['n']} variants"
        if not np.isfinite(p).all():
            bad = int((~np.isfinite(p)).sum())
            return f"{ENTRY} returned {bad} non-finite numbers (of {r['n']}) for an assay"
    return None


def score_predictions(predictions: list[np.ndarray], labels: np.ndarray) -> dict:
    """The evaluator's result for per-assay predictions (in ``ASSAYS`` order)."""
    rho = [
        protein_metrics.spearman(p, labels[r["offset"] : r["offset"] + r["n"]])
        for r, p in zip(ASSAYS, predictions, strict=True)
    ]
    metrics: dict[str, float] = {}
    for split in ("train", "heldout"):
        idx = [i for i, r in enumerate(ASSAYS) if r["split"] == split]
        overall, per_type = protein_metrics.aggregate(
            [rho[i] for i in idx],
            [ASSAYS[i]["uniprot"] for i in idx],
            [ASSAYS[i]["selection_type"] for i in idx],
        )
        metrics[f"{split}_spearman"] = overall
        metrics[f"{split}_assays"] = float(len(idx))
        if split == "train":
            metrics.update({f"train_{t}": v for t, v in per_type.items()})
    train = [i for i, r in enumerate(ASSAYS) if r["split"] == "train"]
    with_profile = [rho[i] for i in train if ASSAYS[i]["profile"]]
    without = [rho[i] for i in train if not ASSAYS[i]["profile"]]
    metrics["train_with_profile"] = float(np.mean(with_profile))
    metrics["train_without_profile"] = float(np.mean(without))
    # the agents see this output: training assays only, never a held-out one
    width = max(len(ASSAYS[i]["assay"]) for i in train)
    print("Spearman per training assay:")
    for i in train:
        print(f"  {ASSAYS[i]['assay']:<{width}}  {rho[i]:+.3f}")
    return {
        "score": metrics["train_spearman"],
        "metrics": metrics,
        "features": [metrics["train_with_profile"], metrics["train_without_profile"]],
    }


def _predict_guarded(source: str, program_path: str) -> list[np.ndarray]:
    """:func:`_predict` in a guarded child; its arrays, checked for shape here."""

    def child(_send) -> tuple[dict, bytes]:
        out = [
            np.ascontiguousarray(a, dtype=np.float64).ravel()
            for a in _predict(source, program_path)
        ]
        return {"sizes": [a.size for a in out]}, b"".join(a.tobytes() for a in out)

    header, payload = run_guarded(child, max_payload=8 * TOTAL)
    sizes = header.get("sizes")
    if (
        not isinstance(sizes, list)
        or not all(isinstance(n, int) and n >= 0 for n in sizes)
        or 8 * sum(sizes) != len(payload)
    ):
        raise RuntimeError("the program's process sent a malformed answer")
    flat = np.frombuffer(payload, dtype=np.float64)
    return list(np.split(flat, np.cumsum(sizes)[:-1])) if sizes else []


def evaluate(program_path: str) -> dict:
    """Score the program at ``program_path`` (see the module)."""
    source = Path(program_path).read_text(encoding="utf-8")
    predictions = _predict_guarded(source, program_path)
    if (reason := _check(predictions)) is not None:
        return {"valid": False, "reason": reason}
    result = score_predictions(predictions, _labels())
    if not math.isfinite(result["score"]):
        return {"valid": False, "reason": "the training Spearman is not a number"}
    return result
