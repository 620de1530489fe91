"""The built-in tasks: loading, initial scores, and what their evaluators accept and reject.

Evaluators run in-process here (the sandbox is tested elsewhere): these programs are ours.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from aster_nb.blocks import replace_block
from aster_nb.task import Task, builtin_tasks

INITIAL_SCORES = {
    "circle_packing": 0.9162362324746927,
    "erdos_min_overlap": -0.43477781674756716,
    "toy": -12.75,
}
AREAS = {
    "circle_packing": ("layout", "radii", "refine"),
    "erdos_min_overlap": ("shape", "refine"),
    "toy": ("alpha", "beta"),
}


def _module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _evaluator(task: str) -> ModuleType:
    return _module(Task.load(task).evaluator_path, f"evaluator_{task}")


def _program(task: str) -> ModuleType:
    return _module(Task.load(task).root / "initial_program.py", f"program_{task}")


def _write(tmp_path: Path, code: str) -> str:
    path = tmp_path / "program.py"
    path.write_text(code)
    return str(path)


# ---------------------------------------------------------------------------- all tasks


def test_builtin_tasks_are_listed():
    assert set(INITIAL_SCORES) <= set(builtin_tasks())


@pytest.mark.parametrize("name", sorted(INITIAL_SCORES))
def test_task_loads_with_its_surface_areas(name):
    task = Task.load(name)
    assert task.name == name
    assert task.area_names == AREAS[name]
    assert all(a.description for a in task.surface_areas)
    assert len(task.feature_names) == 2
    assert task.feature_bounds is not None and len(task.feature_bounds) == 2
    assert task.target is not None and task.target > INITIAL_SCORES[name]
    assert task.noise == 0.0
    assert task.statement.startswith("# ")
    # what figures need: a description per feature (the axis titles), the score's meaning
    # and the best known score, on the score's side of the target (higher is better)
    assert len(task.feature_descriptions) == 2 and all(task.feature_descriptions)
    assert task.score_description and task.record_source
    assert task.record is not None and task.record > task.target


def test_records_are_in_score_units():
    # Erdős' problem minimises M; its score is -M, so the record M <= 0.380876 is -0.380876
    assert Task.load("erdos_min_overlap").record == -0.380876
    assert Task.load("circle_packing").record == 2.635983


@pytest.mark.parametrize("name", sorted(INITIAL_SCORES))
def test_initial_program_scores_as_documented(name):
    task = Task.load(name)
    result = _evaluator(name).evaluate(str(task.root / "initial_program.py"))
    assert result.get("valid", True), result
    assert result["score"] == pytest.approx(INITIAL_SCORES[name], abs=1e-9)
    assert all(isinstance(v, float) for v in result["metrics"].values())
    features = result["features"]
    assert len(features) == 2 and all(math.isfinite(f) for f in features)
    # the README states the initial score to 10 significant digits
    shown = f"{abs(INITIAL_SCORES[name]):.10f}".rstrip("0").rstrip(".")
    assert shown in task.statement


@pytest.mark.parametrize("name", sorted(INITIAL_SCORES))
def test_missing_entry_function_is_invalid(name, tmp_path):
    result = _evaluator(name).evaluate(_write(tmp_path, "x = 1\n"))
    assert result["valid"] is False
    assert "defines no function" in result["reason"]


# ---------------------------------------------------------------------- circle packing


def _grid_packing() -> tuple[np.ndarray, np.ndarray]:
    """A hand-made valid packing in dyadic numbers, so every check is exact.

    A 4 x 4 grid of radius 1/8, a circle of radius 1/32 in each of the 9 interior gaps
    (room: sqrt(2)/8 - 1/8 > 1/32) and one of radius 1/128 in the bottom-left corner.
    """
    grid = [(0.125 + 0.25 * i, 0.125 + 0.25 * j) for i in range(4) for j in range(4)]
    gaps = [(0.25 * i, 0.25 * j) for i in range(1, 4) for j in range(1, 4)]
    centers = np.array([*grid, *gaps, (1 / 64, 1 / 64)])
    radii = np.array([0.125] * 16 + [1 / 32] * 9 + [1 / 128])
    return centers, radii


GRID_SUM = 16 / 8 + 9 / 32 + 1 / 128  # 2.2890625


def test_hand_made_packing_gets_its_exact_sum():
    ev = _evaluator("circle_packing")
    centers, radii = _grid_packing()
    result = ev.check_packing(centers, radii)
    assert result["score"] == GRID_SUM == 2.2890625
    assert result["metrics"]["min_radius"] == 1 / 128
    assert result["metrics"]["max_radius"] == 0.125
    assert result["metrics"]["min_gap"] == 0.0  # the grid circles touch exactly
    cv, near_wall = result["features"]
    assert cv == pytest.approx(np.std(radii) / np.mean(radii))
    assert near_wall == pytest.approx(12 / 26)  # the rim of the grid; the corner one is 1/128 off


def test_reported_sum_is_not_trusted(tmp_path):
    centers, radii = _grid_packing()
    code = (
        "import numpy as np\n"
        f"C = np.array({centers.tolist()})\n"
        f"R = np.array({radii.tolist()})\n"
        "def run_packing():\n"
        "    return C, R, 100.0\n"
    )
    result = _evaluator("circle_packing").evaluate(_write(tmp_path, code))
    assert result["score"] == GRID_SUM


def test_overlap_by_1e_12_is_rejected():
    ev = _evaluator("circle_packing")
    centers, radii = _grid_packing()
    i = 5  # grid circle at (0.375, 0.375): touches four grid neighbours, far from the walls
    assert tuple(centers[i]) == (0.375, 0.375)
    radii[i] += 1e-12
    result = ev.check_packing(centers, radii)
    assert result["valid"] is False
    assert "overlap by 1e-12" in result["reason"]
    assert f"and {i} " in result["reason"] or f"circles {i} and" in result["reason"]
    assert result["metrics"]["max_overlap"] == pytest.approx(1e-12, rel=1e-3)


def test_circle_outside_by_1e_12_is_rejected():
    ev = _evaluator("circle_packing")
    centers, radii = _grid_packing()
    centers[0, 0] -= 1e-12  # circle 0 touched the left side; now it crosses it
    result = ev.check_packing(centers, radii)
    assert result["valid"] is False
    assert result["reason"].startswith("circle 0 ")
    assert "left" in result["reason"] and "1e-12" in result["reason"]


def test_circle_outside_on_the_top_is_named():
    ev = _evaluator("circle_packing")
    centers, radii = _grid_packing()
    centers[3, 1] += 1e-12  # grid circle (0.125, 0.875) touched the top
    result = ev.check_packing(centers, radii)
    assert result["valid"] is False
    assert result["reason"].startswith("circle 3 ") and "top" in result["reason"]


@pytest.mark.parametrize("bad_radius", [0.0, -0.01])
def test_non_positive_radius_is_rejected(bad_radius):
    ev = _evaluator("circle_packing")
    centers, radii = _grid_packing()
    radii[25] = bad_radius
    result = ev.check_packing(centers, radii)
    assert result["valid"] is False
    assert result["reason"].startswith("circle 25 has radius") and "<= 0" in result["reason"]


@pytest.mark.parametrize("where", ["center", "radius"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_values_are_rejected(where, value):
    ev = _evaluator("circle_packing")
    centers, radii = _grid_packing()
    if where == "center":
        centers[7, 1] = value
    else:
        radii[7] = value
    result = ev.check_packing(centers, radii)
    assert result["valid"] is False
    assert "circle 7 is not finite" in result["reason"]


@pytest.mark.parametrize(
    ("centers", "radii", "expected"),
    [
        (np.full((25, 2), 0.5), np.full(25, 0.01), "centers must have shape (26, 2)"),
        (np.full((26, 3), 0.5), np.full(26, 0.01), "centers must have shape (26, 2)"),
        (np.full(52, 0.5), np.full(26, 0.01), "centers must have shape (26, 2)"),
        (np.full((26, 2), 0.5), np.full((26, 1), 0.01), "radii must have shape (26,)"),
        (np.full((26, 2), 0.5), np.full(27, 0.01), "radii must have shape (26,)"),
        ([[0.5, 0.5], [0.5]], np.full(26, 0.01), "not numeric arrays"),
        (np.full((26, 2), 0.5), ["a"] * 26, "not numeric arrays"),
    ],
)
def test_wrong_shapes_are_rejected(centers, radii, expected):
    result = _evaluator("circle_packing").check_packing(centers, radii)
    assert result["valid"] is False
    assert expected in result["reason"]


def test_return_value_that_is_not_a_pair_is_rejected(tmp_path):
    code = "def run_packing():\n    return 2.6\n"
    result = _evaluator("circle_packing").evaluate(_write(tmp_path, code))
    assert result["valid"] is False
    assert "must return (centers, radii)" in result["reason"]


def test_program_exceptions_propagate(tmp_path):
    code = "def run_packing():\n    raise RuntimeError('boom')\n"
    with pytest.raises(RuntimeError, match="boom"):
        _evaluator("circle_packing").evaluate(_write(tmp_path, code))


@pytest.mark.parametrize(
    "changes",
    [
        {"ITERATIONS": 300, "GROWTH_RATE": 1.0},
        {"INNER_COUNT": 40},
        {"INNER_COUNT": -3, "OUTER_STRETCH": -1.0},
        {"INNER_RADIUS": 0.0, "OUTER_RADIUS": 0.0},
        {"CENTER_X": 5.0, "CENTER_Y": float("nan")},
        {"WALL_FRACTION": -1.0},
        {"WALL_FRACTION": 3.0, "GROWTH_RATE": 7.0, "GROWTH_PASSES": 3},
        {"STEP": 10.0, "ITERATIONS": 50},
    ],
)
def test_circle_program_stays_valid_when_constants_change(changes):
    program = _program("circle_packing")
    for name, value in changes.items():
        setattr(program, name, value)
    with np.errstate(all="ignore"):
        centers, radii = program.run_packing()
    result = _evaluator("circle_packing").check_packing(centers, radii)
    assert result.get("valid", True), result
    assert result["score"] > 0


def test_more_search_raises_the_circle_score():
    program = _program("circle_packing")
    program.ITERATIONS = 600
    centers, radii = program.run_packing()
    score = _evaluator("circle_packing").check_packing(centers, radii)["score"]
    assert score > INITIAL_SCORES["circle_packing"] + 0.8


# ------------------------------------------------------------------------------- Erdős


def _continuous_overlap(h: np.ndarray, k: float) -> float:
    """∫ h(x) (1 - h(x + k)) dx for real k, integrating step against step exactly."""
    n = len(h)
    edges = np.arange(n + 1) * (2.0 / n)
    total = 0.0
    for i in range(n):
        for j in range(n):
            # x in step i and x + k in step j
            lo = max(edges[i], edges[j] - k)
            hi = min(edges[i + 1], edges[j + 1] - k)
            if hi > lo:
                total += h[i] * (1.0 - h[j]) * (hi - lo)
    return total


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_constant_half_has_bound_one_half(n):
    # h = 1/2 on [0, 2]: ∫ (1/2)(1/2) over the overlap of [0, 2] and [-k, 2 - k], i.e.
    # (2 - |k|) / 4, largest at k = 0
    result = _evaluator("erdos_min_overlap").overlap_bound(np.full(n, 0.5))
    assert result["score"] == pytest.approx(-0.5, abs=1e-15)
    assert result["metrics"]["bound"] == pytest.approx(0.5, abs=1e-15)
    assert result["metrics"]["n"] == n
    assert result["features"][0] == pytest.approx(0.5)  # middle mass
    assert result["features"][1] == pytest.approx(0.0)  # total variation


def test_heights_are_rescaled_to_integral_one():
    ev = _evaluator("erdos_min_overlap")
    assert ev.overlap_bound([3.0, 3.0, 3.0])["metrics"]["bound"] == pytest.approx(0.5)


def test_haugland_two_step_function_gives_four_ninths():
    # h = 1/3 on [0, 1), 2/3 on [1, 2] (Haugland's best 2-step function): the shift -1
    # gives (2/3)(2/3) and the shift 0 gives (1/3)(2/3) + (2/3)(1/3), both 4/9 (dx = 1)
    ev = _evaluator("erdos_min_overlap")
    for heights in ([1 / 3, 2 / 3], [1.0, 2.0]):
        assert ev.overlap_bound(heights)["metrics"]["bound"] == pytest.approx(4 / 9, abs=1e-15)


def test_height_exactly_one_is_valid():
    # h = 1 on [0, 1), 0 after: with k = 1 the whole of h meets 1 - h = 1 on [1, 2]
    result = _evaluator("erdos_min_overlap").overlap_bound([1.0, 0.0])
    assert result["metrics"]["bound"] == pytest.approx(1.0)


def test_float_rounding_above_one_is_tolerated():
    # a program that normalizes itself can be off by a few ulps; 1e-10 is well inside
    result = _evaluator("erdos_min_overlap").overlap_bound([0.0, 1.0 + 1e-10, 1.0 - 1e-10, 0.0])
    assert result.get("valid", True), result
    assert result["metrics"]["max_height"] == pytest.approx(1.0 + 1e-10, abs=1e-15)


def test_bound_is_the_max_over_all_real_shifts():
    rng = np.random.default_rng(3)
    h = rng.uniform(0.2, 0.8, size=7)
    h /= h.sum() * 2 / len(h)
    bound = _evaluator("erdos_min_overlap").overlap_bound(h)["metrics"]["bound"]
    ks = np.concatenate([rng.uniform(-2, 2, 300), np.arange(-7, 8) * (2 / 7)])
    values = [_continuous_overlap(h, k) for k in ks]
    assert max(values) == pytest.approx(bound, abs=1e-12)


@pytest.mark.parametrize("factor", [2, 3])
def test_bound_is_invariant_under_refining_the_steps(factor):
    ev = _evaluator("erdos_min_overlap")
    rng = np.random.default_rng(0)
    h = rng.uniform(0.0, 1.0, size=37)
    coarse = ev.overlap_bound(h)
    fine = ev.overlap_bound(np.repeat(h, factor))
    assert fine["metrics"]["bound"] == pytest.approx(coarse["metrics"]["bound"], abs=1e-12)
    assert fine["features"][0] == pytest.approx(coarse["features"][0], abs=1e-12)


def test_fft_correlation_matches_the_direct_one():
    ev = _evaluator("erdos_min_overlap")
    rng = np.random.default_rng(1)
    n = ev.DIRECT_LIMIT + 5
    h = rng.uniform(0.0, 1.0, size=n)
    direct = float(np.max(np.correlate(h, 1.0 - h, mode="full")))
    assert ev._max_correlation(h) == pytest.approx(direct, rel=1e-12)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], "empty"),
        ([[0.5, 0.5], [0.5, 0.5]], "1-D"),
        ([0.5, float("nan"), 0.5], "step 1 of 3 is nan"),
        ([0.5, float("inf")], "must be finite"),
        ([0.5, -1e-12, 0.5], "step 1 of 3 has height -1e-12 < 0"),
        ([0.0, 0.0], "every height is 0"),
        ([1.0, 0.0, 0.0, 0.0], "step 0 of 4 has height 2.0 > 1"),
        ([0.0, 1.0 + 1e-6, 1.0 - 1e-6, 0.0], "step 1 of 4 has height 1.000001 > 1"),
        (["a", "b"], "not a numeric array"),
    ],
)
def test_invalid_step_functions_are_rejected(values, expected):
    result = _evaluator("erdos_min_overlap").overlap_bound(values)
    assert result["valid"] is False
    assert expected in result["reason"]


@pytest.mark.parametrize(
    "changes",
    [
        {"NUM_STEPS": 1},
        {"NUM_STEPS": 0},
        {"NUM_STEPS": -5},
        {"NUM_STEPS": 7.6, "RUN_LENGTH": 100},
        {"WIDTH": 0.0},
        {"POWER": 50.0, "HEIGHT": 1e6},
        {"HEIGHT": -3.0, "TILT": 1e300},
        {"CENTER": float("nan")},
        {"STEP": 100.0, "ITERATIONS": 30, "RUN_LENGTH": 0},
    ],
)
def test_erdos_program_stays_valid_when_constants_change(changes):
    program = _program("erdos_min_overlap")
    for name, value in changes.items():
        setattr(program, name, value)
    with np.errstate(all="ignore"):
        h = program.construct_function()
    result = _evaluator("erdos_min_overlap").overlap_bound(h)
    assert result.get("valid", True), result
    assert 0.0 < result["metrics"]["bound"] <= 1.0


def test_more_search_lowers_the_erdos_bound():
    program = _program("erdos_min_overlap")
    program.ITERATIONS = 300
    result = _evaluator("erdos_min_overlap").overlap_bound(program.construct_function())
    assert result["metrics"]["bound"] < -INITIAL_SCORES["erdos_min_overlap"] - 0.03


# --------------------------------------------------------------------------------- toy


def test_toy_optimum_scores_zero(tmp_path):
    task = Task.load("toy")
    code = replace_block(task.initial_code, "alpha", "A = 3.0\nC = 0.5\n")
    code = replace_block(code, "beta", "B = -1.5\nD = 2.0\n")
    result = _evaluator("toy").evaluate(_write(tmp_path, code))
    assert result["score"] == 0.0
    assert result["features"] == [3.0, -1.5]


def test_toy_blocks_improve_independently(tmp_path):
    task = Task.load("toy")
    ev = _evaluator("toy")
    alpha = replace_block(task.initial_code, "alpha", "A = 3.0\nC = 0.5\n")
    beta = replace_block(task.initial_code, "beta", "B = -1.5\nD = 2.0\n")
    base = INITIAL_SCORES["toy"]
    gain_alpha = ev.evaluate(_write(tmp_path, alpha))["score"] - base
    gain_beta = ev.evaluate(_write(tmp_path, beta))["score"] - base
    assert gain_alpha == 4.25 and gain_beta == 8.5
    assert base + gain_alpha + gain_beta == 0.0


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"a": 1.0, "b": 1.0, "c": 0.0}, "'d' must be a number"),
        ({"a": float("nan"), "b": 1.0, "c": 0.0, "d": 0.0}, "'a' must be finite"),
        ({"a": "3", "b": 1.0, "c": 0.0, "d": 0.0}, "'a' must be a number"),
        ({"a": True, "b": 1.0, "c": 0.0, "d": 0.0}, "'a' must be a number"),
        ([3.0, -1.5, 0.5, 2.0], "must return a dict"),
    ],
)
def test_toy_rejects_bad_output(values, expected):
    result = _evaluator("toy").score_values(values)
    assert result["valid"] is False
    assert expected in result["reason"]
