"""The public face: ``from aster_nb import ...`` names, loaded lazily, without the UI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import aster_nb


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


HEAVY = ("ipywidgets", "plotly", "anywidget", "pandas", "aster_nb.ui", "aster_nb.figures")


def test_importing_the_package_loads_nothing_heavy() -> None:
    mods = _modules_after("import aster_nb")
    assert not [m for m in mods if m.split(".")[0] in HEAVY or m in HEAVY]
    assert "aster_nb.run" not in mods  # even the core waits until a name is read


def test_the_core_stays_free_of_the_ui() -> None:
    mods = _modules_after(
        "from aster_nb import Run, SyncRun, Task, Store, Program, Worker, Planner, "
        "make_archive, OfflineModel, LocalExecutor"
    )
    assert not [m for m in mods if m.split(".")[0] in ("ipywidgets", "plotly", "anywidget")]
    assert not [m for m in mods if m.startswith(("aster_nb.ui", "aster_nb.figures"))]


def test_every_public_name_resolves_to_its_definition() -> None:
    from aster_nb.agents.context import Budget
    from aster_nb.records import Program
    from aster_nb.run import Run

    for name in aster_nb.__all__:
        if name == "Dashboard":
            continue  # the UI; tested with the widgets
        assert getattr(aster_nb, name) is not None, name
    assert aster_nb.Run is Run and aster_nb.Program is Program and aster_nb.Budget is Budget
    assert set(aster_nb.__all__) <= set(dir(aster_nb))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        aster_nb.Nope  # noqa: B018


def test_descriptor_is_the_archive_place_and_features_its_old_name() -> None:
    from aster_nb import EvalResult, Program, Status

    r = EvalResult(status=Status.OK, score=1.0, features=(0.5,))
    p = Program(code="x = 1\n").evaluated(r, (0.1, 0.2))
    assert p.descriptor == (0.1, 0.2) and not hasattr(p, "features")
    assert p.result is not None and p.result.features == (0.5,)
    assert Program(code="x = 1\n").evaluated(r, features=(3.0,)).descriptor == (3.0,)
    with pytest.raises(TypeError, match="not both"):
        Program(code="x = 1\n").evaluated(r, (1.0,), features=(2.0,))


def test_the_per_round_budget_has_its_name_and_the_old_one_warns() -> None:
    from aster_nb.run import RunConfig

    assert RunConfig(task="toy", evaluations_per_round=7).budget.evaluations == 7
    with pytest.warns(DeprecationWarning, match="evaluations_per_round"):
        cfg = RunConfig.renamed({"evaluations": 3}, warn=True)
    assert cfg == {"evaluations_per_round": 3}
    with pytest.raises(TypeError, match="not also its old name"):
        RunConfig.renamed({"evaluations": 3, "evaluations_per_round": 4}, warn=False)
    with pytest.raises(TypeError):
        RunConfig(task="toy", evaluations=3)  # type: ignore[call-arg]
