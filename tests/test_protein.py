"""protein_scoring: the ProteinGym loader, ProteinGym's averaging, the profiles against
ProteinGym's published baselines, labels out of the program's reach, and a CLI run.

The data are read from the shared copy (the ``proteingym`` fixture in ``conftest.py``):
missing data fails these tests, it never skips them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from aster_nb.sandbox import LocalExecutor
from aster_nb.task import Task

from .conftest import PROTEIN_TASK

sys.path.insert(0, str(PROTEIN_TASK))
import protein_data
import protein_metrics

ROOT = Path(__file__).resolve().parents[1]
ATTACK = (Path(__file__).parent / "protein_attack.py").read_text()
CHANNELS = ("open_cache", "open_csv", "inherited_fd", "frames", "collector", "module_globals")
INITIAL_TRAIN, INITIAL_HELDOUT = 0.22902078522359598, 0.284343673687791
SPEARMAN_FILE = "reference/DMS_substitutions_Spearman_DMS_level.csv"


@pytest.fixture(scope="module")
def cache(proteingym: Path) -> Path:
    return protein_data.ensure_cache(proteingym, subprocess_build=True)


@pytest.fixture(scope="module")
def evaluator(cache: Path) -> ModuleType:
    """The task's evaluator, imported here (its programs run guarded all the same)."""
    spec = importlib.util.spec_from_file_location(
        "protein_evaluator_test", PROTEIN_TASK / "evaluator.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- the data


def test_a_missing_data_folder_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(protein_data.DataMissing, match="set ASTER_PROTEINGYM"):
        protein_data.data_dir(tmp_path)


def test_loader_reads_every_assay_with_datasets(proteingym: Path) -> None:
    assays = protein_data.load_assays(proteingym)
    files = sorted((proteingym / "dms").glob("*.csv"))
    assert len(assays) == len(files) == 87
    reference = {r["DMS_id"]: r for r in protein_data.load_reference(proteingym)}
    for stem, name in protein_data.ALIASES.items():
        assert (proteingym / "dms" / f"{stem}.csv").is_file() and name in assays
    for f in files:
        name = protein_data.ALIASES.get(f.stem, f.stem)
        raw = pd.read_csv(f)
        split = assays[name]
        assert split.column_names == ["mutant", "score"] and name in reference
        assert split["mutant"] == list(raw["mutant"])
        np.testing.assert_array_equal(np.asarray(split["score"]), raw["score"].to_numpy())


def test_the_cache_keeps_labels_apart(cache: Path) -> None:
    meta, arrays = protein_data.read_inputs(cache)
    assert set(arrays) == {"positions", "wt", "mt"} | {
        f"profile_{u}" for u in ("P53_HUMAN", "PTEN_HUMAN", "SCN5A_HUMAN", "BLAT_ECOLX")
    }
    assert "score" not in json.dumps(meta)
    rows = meta["assays"]
    assert sum(r["n"] for r in rows) == 358080 == len(arrays["positions"])
    assert {r["split"] for r in rows} == {"train", "heldout"}
    for r in rows:  # each assay's variants sorted by position, then residue: label-free
        s = slice(r["offset"], r["offset"] + r["n"])
        key = arrays["positions"][s].astype(np.int64) * 20 + arrays["mt"][s]
        assert (np.diff(key) > 0).all()
        assert r["split"] == ("heldout" if protein_data.is_heldout(r["uniprot"]) else "train")
    heldout = {r["uniprot"] for r in rows if r["split"] == "heldout"}
    assert not heldout & {r["uniprot"] for r in rows if r["split"] == "train"}
    assert len(heldout) == 17 and "PTEN_HUMAN" in heldout


# ------------------------------------------------------------------- Spearman, averaging


def test_spearman_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 6, size=50).astype(float)  # many ties, as BLOSUM62 gives
        b = rng.normal(size=50) + a
        expected = scipy.stats.spearmanr(a, b).statistic
        assert protein_metrics.spearman(a, b) == pytest.approx(expected, abs=1e-12)
    assert protein_metrics.spearman(np.ones(5), np.arange(5.0)) == 0.0


def test_aggregation_matches_a_hand_computation() -> None:
    values = [0.2, 0.4, 0.9, 0.1, 0.5, 0.3]
    proteins = ["A", "A", "B", "C", "C", "D"]
    types = ["Fit", "Fit", "Fit", "Bind", "Stab", "Stab"]
    overall, per_type = protein_metrics.aggregate(values, proteins, types)
    # Fit: mean(mean(A: 0.2, 0.4) = 0.3, B: 0.9) = 0.6; Bind: C = 0.1;
    # Stab: mean(C: 0.5, D: 0.3) = 0.4; overall: mean(0.6, 0.1, 0.4)
    assert per_type == pytest.approx({"Fit": 0.6, "Bind": 0.1, "Stab": 0.4})
    assert overall == pytest.approx((0.6 + 0.1 + 0.4) / 3)
    assert overall != pytest.approx(np.mean(values)), "not the plain mean over assays"


def test_aggregation_reproduces_proteingym_leaderboard(proteingym: Path) -> None:
    table = pd.read_csv(proteingym / SPEARMAN_FILE)
    ids, types = table["UniProt ID"].to_numpy(), table["Selection Type"].to_numpy()
    prosst, _ = protein_metrics.aggregate(table["ProSST (K=2048)"].to_numpy(), ids, types)
    assert round(prosst, 3) == 0.507  # the leaderboard's figure for ProSST (K=2048)


# ------------------------------------------------------------ profiles against ProteinGym


def test_profiles_reproduce_proteingym_baselines(proteingym: Path, cache: Path) -> None:
    meta, arrays = protein_data.read_inputs(cache)
    with np.load(cache / "labels.npz") as z:
        labels = z["scores"]
    published = pd.read_csv(proteingym / SPEARMAN_FILE).set_index("DMS ID")
    errors = {}
    for r in meta["assays"]:
        if r["profile"] is None:
            continue
        s = slice(r["offset"], r["offset"] + r["n"])
        profile = arrays[f"profile_{r['uniprot']}"]
        pos, wt, mt = arrays["positions"][s], arrays["wt"][s], arrays["mt"][s]
        ratio = profile[pos, mt] - profile[pos, wt]
        ratio = np.where(np.isfinite(ratio), ratio, np.nanmean(ratio))  # ProteinGym's fill
        column = "Site-Independent" if r["profile"] == "alignment" else "ESM-1v (ensemble)"
        ours = protein_metrics.spearman(ratio, labels[s])
        errors[r["assay"]] = (r["uniprot"], ours - published.loc[r["assay"], column])
    assert len(errors) == 11
    for assay, (uniprot, error) in errors.items():
        # SCN5A: ProteinGym's alignment covers 1611-1642, EVE's 1517-1793
        limit = {"BLAT_ECOLX": 0.015, "SCN5A_HUMAN": 0.05}.get(uniprot, 0.025)
        assert abs(error) <= limit, (assay, error)
    mean_abs = np.mean([abs(e) for u, e in errors.values() if u != "BLAT_ECOLX"])
    assert mean_abs <= 0.02, errors


# ------------------------------------------------------------------ labels out of reach

WEAK = '''
"""protein_scoring's evaluator made weak on purpose: labels loaded first, program in-process."""
import importlib.util
import sys
from pathlib import Path

REAL = Path({real!r})
sys.path.insert(0, str(REAL.parent))
_spec = importlib.util.spec_from_file_location("protein_evaluator_weak", REAL)
real = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = real
_spec.loader.exec_module(real)
LABELS = None


def evaluate(program_path):
    global LABELS
    labels = LABELS = real._labels()  # weak: the labels are in memory before the program runs
    predictions = real._predict(Path(program_path).read_text(), program_path)  # unguarded
    return real.score_predictions(predictions, labels)
'''


def _channels(stdout: str) -> dict[str, str]:
    lines = [ln.split(": ", 1) for ln in stdout.splitlines() if ln.startswith("channel ")]
    return {k.removeprefix("channel "): v for k, v in lines}


@pytest.mark.parametrize("isolate", [None, False], ids=["sandbox", "no-sandbox"])
async def test_labels_are_unreachable_from_the_program(proteingym: Path, isolate) -> None:
    task = Task.load("protein_scoring")
    async with LocalExecutor(
        evaluator=task.evaluator_path, limits=task.limits, env=task.env, isolate=isolate
    ) as ex:
        r = await ex.submit(ATTACK)
    assert r.ok, r.error
    seen = _channels(r.stdout)
    assert set(seen) == {*CHANNELS, "subprocess"}
    assert all(v.startswith("failed") for v in seen.values()), seen
    assert seen["open_cache"] == seen["open_csv"] == "failed (PermissionError)"
    assert r.score == 0.0 and r.metrics["heldout_spearman"] == 0.0


async def test_the_same_attack_reads_the_labels_of_a_weak_evaluator(
    proteingym: Path, tmp_path: Path
) -> None:
    task = Task.load("protein_scoring")
    weak = tmp_path / "weak_evaluator.py"
    weak.write_text(WEAK.format(real=str(task.evaluator_path)))
    async with LocalExecutor(evaluator=weak, limits=task.limits, env=task.env) as ex:
        r = await ex.submit(ATTACK)
    assert r.ok, r.error
    seen = _channels(r.stdout)
    assert seen["open_csv"] == seen["frames"] == seen["collector"] == "ok", seen
    assert seen["module_globals"] == seen["inherited_fd"] == seen["subprocess"] == "ok", seen
    assert r.score > 0.99 and r.metrics["heldout_spearman"] > 0.99


def test_the_variants_order_tells_nothing(evaluator: ModuleType) -> None:
    """A program that returns the variants' index (their order) learns nothing from it."""
    labels = evaluator._labels()
    for sign in (1.0, -1.0):
        predictions = [sign * np.arange(r["n"], dtype=float) for r in evaluator.ASSAYS]
        result = evaluator.score_predictions(predictions, labels)
        assert abs(result["score"]) < 0.15, result["metrics"]


# -------------------------------------------------------------------- the task, end to end


async def test_initial_program_in_the_sandbox(proteingym: Path) -> None:
    task = Task.load("protein_scoring")
    broken = task.initial_code.replace("def score_variants(v):", "def score(v):")
    short = task.initial_code.replace("return profile_score(v, tables)", "return tables[:1]")
    async with LocalExecutor.from_task(task) as ex:
        t0 = time.monotonic()
        r = await ex.submit(task.initial_code)
        first = time.monotonic() - t0
        bad, wrong = await ex.submit(broken), await ex.submit(short)
        assert ex.stats["isolation"] == "full"
    assert r.ok and r.score == pytest.approx(INITIAL_TRAIN, abs=1e-9)
    assert r.metrics["heldout_spearman"] == pytest.approx(INITIAL_HELDOUT, abs=1e-9)
    assert r.metrics["train_assays"] == 68 and r.metrics["heldout_assays"] == 19
    assert r.seconds < 10 and first < 10, (r.seconds, first)
    assert "Spearman per training assay" in r.stdout
    assert "PTEN_HUMAN" not in r.stdout, "a held-out assay is never shown"
    assert bad.status == "error" and "defines no function score_variants" in bad.error
    assert wrong.status == "invalid" and "returned 1 numbers" in (wrong.error or "")


def test_cli_run_improves_and_reports_the_heldout_figure(proteingym: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "aster_nb", "run", "protein_scoring", "--workers", "2"]
    cmd += ["--rounds", "2", "--agents", "2", "--budget", "24", "--seed", "0"]
    cmd += ["--out", str(tmp_path), "--quiet"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    s = json.loads(done.stdout.strip().splitlines()[-1])
    assert s["initial_score"] == pytest.approx(INITIAL_TRAIN, abs=1e-9)
    assert s["best_score"] > s["initial_score"] + 0.01
    assert s["initial_metrics"]["heldout_spearman"] == pytest.approx(INITIAL_HELDOUT, abs=1e-9)
    assert s["best_metrics"]["heldout_spearman"] > 0  # carried in the JSON line
    assert s["descriptor"] == "features"
