"""The benchmark tasks: circle packing from a bare start, and the deceptive trap.

Evaluators run in-process here (the sandbox is tested elsewhere): these programs are ours.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from aster_nb.task import Task, builtin_tasks


def _evaluator(name: str) -> ModuleType:
    task = Task.load(name)
    spec = importlib.util.spec_from_file_location(f"evaluator_{name}", task.evaluator_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path: Path, name: str, code: str) -> dict:
    path = tmp_path / "program.py"
    path.write_text(code)
    return _evaluator(name).evaluate(str(path))


@pytest.mark.parametrize("name", ["circle_packing_bare", "deceptive_trap"])
def test_featureless_tasks_load_and_choose_the_default_descriptor(name: str) -> None:
    task = Task.load(name)
    assert name in builtin_tasks() and task.feature_names == () and task.descriptor == "auto"
    assert len(task.area_names) == 1 and task.statement.startswith("# ")


def test_bare_packing_scores_zero_until_the_last_circle_is_placed(tmp_path: Path) -> None:
    code = Task.load("circle_packing_bare").initial_code
    start = _run(tmp_path, "circle_packing_bare", code)
    assert start["score"] == 0.0 and "features" not in start
    assert start["metrics"]["valid"] == 0.0 and start["metrics"]["min_radius"] == 0.0
    placed = _run(tmp_path, "circle_packing_bare", code.replace("range(16)", "range(17)"))
    assert placed["score"] == pytest.approx(0.9597642158615118, abs=1e-9)
    assert placed["metrics"]["valid"] == 1.0 and placed["metrics"]["violation"] == 0.0
    assert set(placed["metrics"]) == set(start["metrics"])  # one key set: a usable descriptor


def test_bare_packing_is_strict(tmp_path: Path) -> None:
    ev = _evaluator("circle_packing_bare")
    c = np.array([[0.25 + 0.5 * (i % 2), 0.1 + 0.8 * (i // 2) / 13] for i in range(26)])
    r = np.full(26, 0.01)
    ok = ev.check_packing(c, r)
    assert ok["score"] == pytest.approx(0.26)
    r[3] = 0.25 + 1e-12  # crosses the left side by 1e-12
    bad = ev.check_packing(c, r)
    assert bad["score"] == 0.0 and bad["metrics"]["violation"] > 0.0
    assert ev.check_packing(c[:25], r[:25])["score"] == 0.0
    assert ev.check_packing("x", r)["metrics"]["valid"] == 0.0


def test_deceptive_landscape_is_continuous_with_a_trap_and_a_higher_basin() -> None:
    h = _evaluator("deceptive_trap").h
    for u in (1.0, 2.0, 6.0):  # the pieces meet
        assert h(u - 1e-9) == pytest.approx(h(u + 1e-9), abs=1e-6)
    us = np.linspace(-1, 9, 2001)
    values = np.array([h(u) for u in us])
    trap = values[us <= 1.5].max()
    assert trap == pytest.approx(1.0) and values.max() == pytest.approx(3.0)
    # from the trap to the real basin every program is worse until u = 6
    between = values[(us > 1.0) & (us < 6.0)]
    assert between.max() < trap and between.min() == pytest.approx(0.2, abs=1e-3)


def test_deceptive_scores_and_rejects(tmp_path: Path) -> None:
    ev = _evaluator("deceptive_trap")
    code = Task.load("deceptive_trap").initial_code
    assert _run(tmp_path, "deceptive_trap", code)["score"] == 0.0
    e = math.e
    trapped = ev.score_values({"a": e, "b": e, "c": e})
    assert trapped["score"] == pytest.approx(3.0) and trapped["metrics"]["trapped"] == 3.0
    crossed = ev.score_values({"a": e**7, "b": e, "c": e})
    assert crossed["score"] == pytest.approx(5.0) and crossed["metrics"]["crossed"] == 1.0
    for bad in ({"a": 0.0, "b": 1.0, "c": 1.0}, {"a": 1.0, "b": 1.0}, {"a": True, "b": 1, "c": 1}):
        assert ev.score_values(bad)["valid"] is False
    assert ev.score_values([1, 2, 3])["valid"] is False
