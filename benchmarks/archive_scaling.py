"""How the archives' ``add`` and Cluster-Elites' re-clustering scale with the history.

Feeds each archive ``--n`` programs (default 100,000) with skewed descriptors -- 90% in a
small box at one corner of the unit cube, the rest an exponential tail from that corner,
as edited programs crowd around their ancestors -- and random scores, for 2-D and 8-D
descriptors. Programs are built before the clock starts, so only the archive is timed.

Reports, at the 1k / 10k / 100k checkpoints: total seconds, mean ``add`` time (with and
without the adds that triggered a re-cluster), the number of re-clusters, their total and
mean time and the cost of the latest one. It then compares ways to do the final
re-cluster (warm-started Lloyd with different iteration caps, cold k-means++, scikit-learn's
``MiniBatchKMeans``) on time and inertia, which is what ``ClusterElites.max_iter`` was
chosen from.

Usage::

    python benchmarks/archive_scaling.py [--n 100000] [--dims 2 8] [--plot scaling.png]

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
from aster_nb.archive.cluster import _kmeanspp_extend, lloyd, nearest, sq_dist
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


def run_cluster(progs: list[Program], dims: int, seed: int) -> dict[str, Any]:
    a = ClusterElites(dims=dims, seed=seed)
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
    return {
        "checkpoints": out,
        "reclusters": [
            {"n": n, "ms": round(1e3 * s, 3), "iterations": it}
            for n, s, it in zip(recl_at, recl_s, recl_iters, strict=True)
        ],
    }


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
    warm = _kmeanspp_extend(z, (prev.centroids - mean) / std, k, np.random.default_rng(seed))

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
        init = _kmeanspp_extend(z, np.empty((0, dims)), k, np.random.default_rng(seed))
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
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 8], help="descriptor lengths")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default=None, help="write a PNG plot to this path")
    ap.add_argument("--no-compare", action="store_true", help="skip the re-cluster comparison")
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
    if args.plot:
        plot(report, args.plot)
        report["plot"] = args.plot
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
