"""How the archives' ``add`` and Cluster-Elites' re-clustering scale with the history.

Feeds each archive ``--n`` programs (default 100,000) with skewed descriptors -- 90% in a
small box at one corner of the unit cube, the rest an exponential tail from that corner,
as edited programs crowd around their ancestors -- and random scores, for 2-, 8- and 16-D
descriptors. Programs are built before the clock starts, so only the archive is timed.

It also runs (unless ``--no-embedding``) Cluster-Elites over the default descriptor of a
task without features, the code embedding (16 dimensions), on ``--n`` synthetic programs: a
program of about 40 lines with 24 constants, each program its parent (a random earlier
one, recent ones likelier) with one to three constants multiplied by ``exp(N(0, 0.3))`` and
one time in ten an operator swapped. The embedding's tokenizing, refits and re-projections all happen
inside ``add``, so they are timed with the rest; the report splits the total into
describing a program (tokenizing, differencing, projecting: once per program, whatever the
history size), refitting the embedding, re-clustering, and placing programs in cells.

Reports, at the 1k / 10k / 100k checkpoints: total seconds, mean ``add`` time (with and
without the adds that triggered a re-cluster), the number of re-clusters, their total and
mean time and the cost of the latest one. It then compares ways to do the final
re-cluster (warm-started Lloyd with different iteration caps, cold k-means++, scikit-learn's
``MiniBatchKMeans``) on time and inertia, which is what ``ClusterElites.max_iter`` was
chosen from.

Usage::

    python benchmarks/archive_scaling.py [--n 100000] [--dims 2 8 16] [--no-embedding]
                                         [--plot scaling.png]

Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from typing import Any

import numpy as np
import sklearn
from sklearn.cluster import MiniBatchKMeans

from aster_nb.archive import ClusterElites, Greedy, GridElites
from aster_nb.archive.base import ArchiveBase
from aster_nb.archive.cluster import kmeanspp_extend, lloyd, nearest, sq_dist
from aster_nb.embedding import CodeEmbedding
from aster_nb.program import EvalResult, Program, Status

CHECKPOINTS = (1_000, 10_000, 100_000)


def skewed(n: int, dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    corner = rng.random(n) < 0.9
    tail = np.minimum(rng.exponential(0.15, (n, dims)), 1.0)
    x = np.where(corner[:, None], rng.random((n, dims)) * 0.05, tail)
    return x, rng.random(n)


def programs(x: np.ndarray, scores: np.ndarray) -> list[Program]:
    return [
        Program(code=f"p{i}").evaluated(
            EvalResult(status=Status.OK, score=float(s)), features=tuple(row.tolist())
        )
        for i, (row, s) in enumerate(zip(x, scores, strict=True))
    ]


def run_cluster(
    progs: list[Program], dims: int, seed: int, embedding: CodeEmbedding | None = None
) -> dict[str, Any]:
    a = ClusterElites(dims=None if embedding else dims, seed=seed, descriptor=embedding)
    checkpoints = [c for c in CHECKPOINTS if c <= len(progs)] or [len(progs)]
    add_s = np.empty(len(progs))
    recl_at: list[int] = []
    recl_s: list[float] = []
    recl_iters: list[int] = []
    out = []
    t_start = time.perf_counter()
    for i, p in enumerate(progs):
        before, before_s = a.reclusters, a.recluster_seconds
        t0 = time.perf_counter()
        a.add(p)
        add_s[i] = time.perf_counter() - t0
        if a.reclusters != before:
            recl_at.append(i + 1)
            recl_s.append(a.recluster_seconds - before_s)
            recl_iters.append(a.last_iterations)
        n = i + 1
        if n in checkpoints:
            is_recl = np.zeros(n, dtype=bool)
            is_recl[np.asarray(recl_at, dtype=np.int64) - 1] = True
            out.append(
                {
                    "n": n,
                    "total_s": round(time.perf_counter() - t_start, 3),
                    "add_s": round(float(add_s[:n].sum()), 3),
                    "mean_add_us": round(1e6 * float(add_s[:n].mean()), 2),
                    "mean_add_between_reclusters_us": round(
                        1e6 * float(add_s[:n][~is_recl].mean()), 2
                    ),
                    "reclusters": len(recl_at),
                    "recluster_total_s": round(sum(recl_s), 3),
                    "mean_recluster_ms": round(1e3 * sum(recl_s) / max(len(recl_s), 1), 2),
                    "last_recluster": {
                        "at_n": recl_at[-1],
                        "ms": round(1e3 * recl_s[-1], 2),
                        "lloyd_iterations": recl_iters[-1],
                    },
                    "cells": a.cells,
                    "coverage": a.coverage(),
                }
            )
            if embedding is not None:
                out[-1]["embedding_refits"] = embedding.fits
                out[-1]["embedding_refit_s"] = round(embedding.fit_seconds, 3)
                out[-1]["explained_variance"] = round(embedding.explained(), 4)
    return {
        "checkpoints": out,
        "reclusters": [
            {"n": n, "ms": round(1e3 * s, 3), "iterations": it}
            for n, s, it in zip(recl_at, recl_s, recl_iters, strict=True)
        ],
    }


# A program of the size and shape the offline model edits: named constants and a loop.
_TEMPLATE = "\n".join(
    [f"C{i} = {{c[{i}]!r}}  # constant {i}" for i in range(24)]
    + [
        "",
        "",
        "def run(xs):",
        "    total = 0.0",
        "    for i, x in enumerate(xs):",
        "        if x {op0} C0 and i < C1:",
        "            total += C2 * x ** C3 - C4 / (1.0 + abs(x - C5))",
        "        elif x {op1} C6:",
        "            total -= min(C7 * x, C8) + max(C9, C10 * i)",
        "        else:",
        "            total += (C11 + C12 * x) * (C13 - C14 * x) / (C15 + 1e-9)",
        "    scale = C16 * (1.0 + C17) ** 2 - C18",
        "    return total * scale + C19 * C20 - C21 / (1.0 + C22 * C23)",
        "",
        "",
        "def main():",
        "    xs = [0.1 * k for k in range(50)]",
        "    return run(xs)",
    ]
)


def synthetic_code(n: int, seed: int) -> list[str]:
    """``n`` programs, each an edit of a random earlier one (see the module docs)."""
    rng = np.random.default_rng(seed)
    consts = [np.ones(24)]
    ops = [("<", ">")]
    codes = [_TEMPLATE.format(c=[round(float(v), 6) for v in consts[0]], op0="<", op1=">")]
    for i in range(1, n):
        parent = int(i - 1 - min(i - 1, int(rng.exponential(50))))
        c = consts[parent].copy()
        k = rng.choice(24, size=int(rng.integers(1, 4)), replace=False)
        c[k] *= np.exp(0.3 * rng.normal(size=len(k)))
        op0, op1 = ops[parent]
        if rng.random() < 0.1:
            op0, op1 = (">" if op0 == "<" else "<"), op1
        consts.append(c)
        ops.append((op0, op1))
        codes.append(_TEMPLATE.format(c=[round(float(v), 6) for v in c], op0=op0, op1=op1))
    return codes


class _TimedEmbedding(CodeEmbedding):
    """The code embedding, timing :meth:`add` (tokenizing, differencing, projecting)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_seconds: list[float] = []  # cumulative, after each program

    def add(self, code: str) -> np.ndarray:
        t0 = time.perf_counter()
        out = super().add(code)
        prev = self.add_seconds[-1] if self.add_seconds else 0.0
        self.add_seconds.append(prev + time.perf_counter() - t0)
        return out


def run_embedding(n: int, seed: int) -> dict[str, Any]:
    codes = synthetic_code(n, seed)
    rng = np.random.default_rng(seed)
    progs = [
        Program(code=c).evaluated(EvalResult(status=Status.OK, score=float(s)))
        for c, s in zip(codes, rng.random(n), strict=True)
    ]
    embedding = _TimedEmbedding()
    res = run_cluster(progs, embedding.dims, seed, embedding)
    for cp in res["checkpoints"]:
        per = 1e6 / cp["n"]
        # rows, not programs: a duplicate program is not described again
        describe = embedding.add_seconds[min(cp["n"], len(embedding.add_seconds)) - 1]
        cp["describe_us_per_program"] = round(per * describe, 1)
        cp["refit_us_per_program"] = round(per * cp["embedding_refit_s"], 1)
        cp["recluster_us_per_program"] = round(per * cp["recluster_total_s"], 1)
        rest = cp["add_s"] - describe - cp["embedding_refit_s"] - cp["recluster_total_s"]
        cp["placing_us_per_program"] = round(per * rest, 1)
    res["program_lines"] = codes[0].count("\n") + 1
    return res


def run_simple(archive: ArchiveBase, progs: list[Program]) -> dict[str, Any]:
    t0 = time.perf_counter()
    for p in progs:
        archive.add(p)
    total = time.perf_counter() - t0
    res: dict[str, Any] = {
        "n": len(progs),
        "total_s": round(total, 3),
        "mean_add_us": round(1e6 * total / len(progs), 2),
        "elites": len(archive),
        "coverage": round(archive.coverage(), 6),
    }
    if isinstance(archive, GridElites):
        res["rebins"] = archive.rebins
    return res


def compare_reclusters(x: np.ndarray, seed: int) -> dict[str, Any]:
    """The last re-cluster at ``n = len(x)`` done several ways, from the same warm start.

    The warm start is what ClusterElites would hold: the centroids of an archive that has
    seen the first ``n / 1.25`` programs (its previous re-cluster).
    """
    n, dims = x.shape
    prev = ClusterElites(dims=dims, seed=seed)
    for i in range(int(n / 1.25)):
        prev.add(
            Program(code=f"w{i}").evaluated(
                EvalResult(status=Status.OK, score=0.0), features=tuple(x[i].tolist())
            )
        )
    mean, std = x.mean(axis=0), x.std(axis=0)
    z = (x - mean) / std
    k = min(prev.k_max, math.ceil(math.sqrt(n / 2)))
    warm = kmeanspp_extend(z, (prev.centroids - mean) / std, k, np.random.default_rng(seed))

    def inertia(c: np.ndarray) -> float:
        return float(sq_dist(z, c, nearest(z, c)).mean())

    results: dict[str, Any] = {}

    def record(name: str, fn: Any) -> None:
        t0 = time.perf_counter()
        c, iters = fn()
        results[name] = {"seconds": round(time.perf_counter() - t0, 4), "iterations": iters}
        results[name]["inertia"] = inertia(c)

    for cap in (1, 3, 10, 30):
        record(f"lloyd_warm_max_iter_{cap}", lambda cap=cap: _lloyd(z, warm, cap))
    record("lloyd_warm_converged", lambda: _lloyd(z, warm, 1000))

    def cold() -> tuple[np.ndarray, int]:
        init = kmeanspp_extend(z, np.empty((0, dims)), k, np.random.default_rng(seed))
        return _lloyd(z, init, 1000)

    record("lloyd_cold_kmeanspp_converged", cold)

    def minibatch() -> tuple[np.ndarray, int]:
        mb = MiniBatchKMeans(
            n_clusters=k, init=warm, n_init=1, batch_size=4096, random_state=seed
        ).fit(z)
        return mb.cluster_centers_, int(mb.n_iter_)

    record("sklearn_minibatch_warm", minibatch)

    best = min(r["inertia"] for r in results.values())
    for r in results.values():
        r["inertia_vs_best"] = round(r["inertia"] / best, 4)
        r["inertia"] = round(r["inertia"], 6)
    return {"n": n, "k": k, "methods": results}


def _lloyd(z: np.ndarray, init: np.ndarray, cap: int) -> tuple[np.ndarray, int]:
    c, _, iters = lloyd(z, init, max_iter=cap)
    return c, iters


def plot(report: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for dims, res in report["cluster"].items():
        rec = res["reclusters"]
        ns = np.array([r["n"] for r in rec])
        ms = np.array([r["ms"] for r in rec])
        ax1.plot(ns, np.cumsum(ms) / 1e3, marker=".", label=f"{dims}-D: re-cluster, cumulative")
        ax2.plot(ns, ms, marker=".", label=f"{dims}-D")
        cps = res["checkpoints"]
        ax1.plot(
            [c["n"] for c in cps], [c["add_s"] for c in cps], "s--", label=f"{dims}-D: all adds"
        )
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("history size (programs)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    ax1.set_ylabel("seconds")
    ax1.set_title("ClusterElites: cumulative cost")
    ax2.set_ylabel("ms per re-cluster")
    d = ClusterElites(dims=1)
    ax2.set_title(f"one re-cluster (growth {d.growth}, k <= {d.k_max}, max_iter {d.max_iter})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="history size to grow to")
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 8, 16], help="descriptor lengths")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default=None, help="write a PNG plot to this path")
    ap.add_argument("--no-compare", action="store_true", help="skip the re-cluster comparison")
    ap.add_argument(
        "--no-embedding", action="store_true", help="skip Cluster-Elites over the code embedding"
    )
    args = ap.parse_args()

    report: dict[str, Any] = {
        "n": args.n,
        "seed": args.seed,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "sklearn": sklearn.__version__,
        },
        "cluster": {},
        "grid": {},
        "greedy": {},
        "recluster_methods": {},
    }
    for dims in args.dims:
        x, s = skewed(args.n, dims, args.seed)
        progs = programs(x, s)
        report["cluster"][str(dims)] = run_cluster(progs, dims, args.seed)
        report["grid"][str(dims)] = run_simple(GridElites(dims=dims), progs)
        report["greedy"][str(dims)] = run_simple(Greedy(dims=dims), progs)
        if not args.no_compare:
            report["recluster_methods"][str(dims)] = compare_reclusters(x, args.seed)
    if not args.no_embedding:
        report["embedding"] = run_embedding(args.n, args.seed)
    if args.plot:
        plot(report, args.plot)
        report["plot"] = args.plot
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
