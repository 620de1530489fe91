"""The archive benchmark's measures: when a run last climbed, and the paired comparison
against greedy that says whether an archive's choices paid."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest

from aster_nb.task import Task


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "archives.py"
    spec = importlib.util.spec_from_file_location("bench_archives", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_last_gain_ignores_the_invalid_start_and_raises_below_the_share() -> None:
    b = _bench()
    inf = -math.inf
    # invalid, a flat valid start, a raise at evaluation 4, then only a crawl of 1e-5
    curve = [inf, 0.0, 0.0, 1.0, 1.0, 1.00001, 1.00002]
    assert b.last_gain(curve) == 4
    assert b.last_gain(curve, share=1e-6) == 7
    assert b.last_gain([inf, inf]) is None
    assert b.last_gain([0.5, 0.5, 0.5]) is None


def _run(archive: str, seed: int, best: float) -> dict:
    curve = [0.0] * 199 + [best]
    return {
        "task": "circle_packing_bare",
        "archive": archive,
        "seed": seed,
        "initial": 0.0,
        "best": best,
        "curve": curve,
        "cells_curve": [1] * 200,
        "features": [],
        "own_coverage": 1.0,
        "cells": 1,
        "filled": 1,
        "multi_cell_from": None,
        "seconds": 1.0,
    }


def test_the_summary_pairs_each_archive_with_greedy_by_seed() -> None:
    b = _bench()
    runs = {
        "greedy": [_run("greedy", s, v) for s, v in enumerate([1.0, 2.0, 3.0])],
        # seed order differs: pairing must go by seed, not position
        "cluster": [_run("cluster", s, v) for s, v in [(2, 3.5), (0, 1.5), (1, 2.5)]],
    }
    out = b.summarize(Task.load("circle_packing_bare"), runs, 200)["archives"]
    assert "vs_greedy" not in out["greedy"]
    pair = out["cluster"]["vs_greedy"]
    assert pair["seeds"] == 3
    assert math.isclose(pair["mean"], 0.5)
    assert pair["ci95"] == [0.5, 0.5]  # every paired difference is 0.5
    assert out["cluster"]["last_gain"] == [200, 200, 200]


def test_preflight_stops_before_any_run_when_a_task_cannot_run_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The protein task without its data folder: its evaluator cannot import, and every run
    # would spend its budget on failures. The sandbox is real; only the data path is wrong.
    b = _bench()
    monkeypatch.setenv("ASTER_PROTEINGYM", str(tmp_path / "nowhere"))
    monkeypatch.setenv("ASTER_PROTEINGYM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as e:
        b.preflight(["protein_scoring"])
    message = str(e.value)
    assert "task 'protein_scoring' cannot run here" in message
    assert "ASTER_PROTEINGYM" in message and "leave it out of --tasks" in message


def test_preflight_passes_a_task_that_runs() -> None:
    _bench().preflight(["deceptive_trap"])  # returns: no SystemExit
