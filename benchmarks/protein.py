"""protein_scoring with the offline model: what a search of 300 evaluations finds.

For each seed, one CLI run (``python -m aster_nb run protein_scoring``: 2 workers, 3 rounds,
4 agents, the offline model, default concurrency) spends ``--budget`` evaluations from the
task's initial program. Reported per seed and as mean ± std over seeds:

* ``train``: the training score (ProteinGym-averaged Spearman over the training assays) of
  the initial program and of the run's best program;
* ``heldout``: the held-out assays' figure of the same two programs (the search never sees
  it as a score; it is what the run's best program does on proteins it was not chosen on);
* ``eval_seconds``: seconds one evaluation took in the sandbox (mean and 95th percentile
  over the run's evaluations), and ``wall_s`` of the whole run;
* ``published``: ProteinGym's published models on the same assays, averaged the same way.

    python benchmarks/protein.py [--seeds 3] [--budget 300] [--json out.json]

Needs the ProteinGym folder (``ASTER_PROTEINGYM``, default ``../shared/data/proteingym``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a plain checkout too
TASK_DIR = ROOT / "aster_nb" / "tasks" / "protein_scoring"
sys.path.insert(0, str(TASK_DIR))

import protein_data  # noqa: E402
import protein_metrics  # noqa: E402

from aster_nb.store import Store  # noqa: E402

PUBLISHED = (
    "Site-Independent",
    "ESM-1v (ensemble)",
    "EVE (ensemble)",
    "TranceptEVE L",
    "ProSST (K=2048)",
)


def published(cache: Path, data: Path) -> dict[str, dict[str, float]]:
    """ProteinGym's per-assay Spearman of ``PUBLISHED``, averaged over each split as the
    evaluator averages."""
    import pandas as pd

    meta, _ = protein_data.read_inputs(cache)
    table = pd.read_csv(data / "reference" / "DMS_substitutions_Spearman_DMS_level.csv")
    table = table.set_index("DMS ID")
    out: dict[str, dict[str, float]] = {}
    for split in ("train", "heldout"):
        rows = [r for r in meta["assays"] if r["split"] == split]
        for model in PUBLISHED:
            value, _ = protein_metrics.aggregate(
                [float(table.loc[r["assay"], model]) for r in rows],
                [r["uniprot"] for r in rows],
                [r["selection_type"] for r in rows],
            )
            out.setdefault(model, {})[split] = round(value, 4)
    return out


def one_run(seed: int, budget: int, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "aster_nb", "run", "protein_scoring", "--workers", "2"]
    cmd += ["--rounds", "3", "--agents", "4", "--budget", str(budget), "--seed", str(seed)]
    cmd += ["--out", str(out), "--quiet"]
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=7200)
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"seed {seed}: the run failed:\n{done.stderr[-3000:]}")
    s = json.loads(done.stdout.strip().splitlines()[-1])
    seconds = sorted(p.result.seconds for p in Store(s["store"]).programs() if p.result)
    return {
        "seed": seed,
        "evaluations": s["evaluations"],
        "failed": s["failed"],
        "initial": {
            "train": s["initial_score"],
            "heldout": s["initial_metrics"]["heldout_spearman"],
        },
        "best": {"train": s["best_score"], "heldout": s["best_metrics"]["heldout_spearman"]},
        "eval_seconds": {
            "mean": round(statistics.fmean(seconds), 3),
            "p95": round(seconds[int(0.95 * (len(seconds) - 1))], 3),
            "max": round(seconds[-1], 3),
        },
        "wall_s": round(wall, 1),
        "isolation": s["isolation"],
    }


def _mean_std(values: list[float]) -> dict[str, float]:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 4), "std": round(sd, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    data = protein_data.data_dir()
    cache = protein_data.ensure_cache(data, subprocess_build=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(seed, args.budget, Path(tmp)) for seed in range(args.seeds)]
    result = {
        "task": "protein_scoring",
        "budget": args.budget,
        "seeds": args.seeds,
        "initial": runs[0]["initial"],
        "best_train": _mean_std([r["best"]["train"] for r in runs]),
        "best_heldout": _mean_std([r["best"]["heldout"] for r in runs]),
        "eval_seconds_mean": round(statistics.fmean(r["eval_seconds"]["mean"] for r in runs), 3),
        "published": published(cache, data),
        "runs": runs,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
