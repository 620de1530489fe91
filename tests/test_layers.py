"""The package's shape, checked from its import graph (read with ``ast``; see ``layers.py``).

The layers, bottom up; a module imports from its own layer and the layers below::

    face      aster_nb (the package's __init__: the public names)
    ui        ui/                          ipywidgets, anywidget, plotly
    figures   figures/                     plotly
    run       run, runmake, runconfig, rungoals, runsummary, sync, snapshot, cli, __main__
    agents    agents/
    sandbox   sandbox/, executors
    parts     task, taskfile, resources, evalplan, taskstart, features, embedding, terms, geometry, archive/, store/, llm/
    records   errors, records, program, blocks, edits, control, events, prompts/
    tasks     tasks/ (built-in task folders: code run in the sandbox, importing nothing of ours)

The core (every layer but ``figures`` and ``ui``) never imports ipywidgets, anywidget or
plotly, even lazily; ``figures`` draws plain plotly and never imports a widget library.
Today's offences are listed below, each with the part of issue 11 that removes it; the
lists may only shrink (an entry that no longer happens fails the test until removed).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from .layers import (
    Import,
    Rules,
    check,
    forbidden,
    import_graph,
    oversized,
    private,
    unplaced,
    upward,
)

ROOT = Path(__file__).resolve().parent.parent / "aster_nb"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kit", ("aster_nb.guard", "aster_nb.datacache")),  # what task folders import
    ("tasks", ("aster_nb.tasks",)),
    (
        "records",
        (
            "aster_nb.errors",
            "aster_nb.records",
            "aster_nb.handoffreport",
            "aster_nb.program",
            "aster_nb.blocks",
            "aster_nb.edits",
            "aster_nb.control",
            "aster_nb.events",
            "aster_nb.prompts",
        ),
    ),
    (
        "parts",
        (
            "aster_nb.task",
            "aster_nb.taskfile",
            "aster_nb.resources",
            "aster_nb.evalplan",
            "aster_nb.taskstart",
            "aster_nb.features",
            "aster_nb.embedding",
            "aster_nb.terms",
            "aster_nb.geometry",
            "aster_nb.archive",
            "aster_nb.store",
            "aster_nb.llm",
        ),
    ),
    ("sandbox", ("aster_nb.sandbox",)),
    ("agents", ("aster_nb.agents",)),
    ("actors", ("aster_nb.actors",)),  # workers in Ray actors
    (
        "run",
        (
            "aster_nb.run",
            "aster_nb.runconfig",
            "aster_nb.runmake",
            "aster_nb.runfork",
            "aster_nb.runsummary",
            "aster_nb.runspend",
            "aster_nb.rungoals",
            "aster_nb.sync",
            "aster_nb.snapshot",
            "aster_nb.cli",
            "aster_nb.clidrive",
            "aster_nb.__main__",
        ),
    ),
    ("figures", ("aster_nb.figures",)),
    ("ui", ("aster_nb.ui",)),
    ("face", ("aster_nb",)),
)

UI_LIBRARIES = frozenset({"ipywidgets", "anywidget", "plotly"})
FORBIDDEN = {layer: UI_LIBRARIES for layer, _ in LAYERS if layer not in ("figures", "ui")} | {
    "figures": frozenset({"ipywidgets", "anywidget"})
}

ALLOWED_UPWARD: frozenset[str] = frozenset()  # issue 11 part 2 moved Handoff to records

# Ceilings: line counts of modules over the limit, each to be split by job. Issue 11 part 6
# split the last ones (worker.py, run.py, store.py); keep it empty.
ALLOWED_LONG: dict[str, int] = {}


def _names(path: str, module: str, names: str) -> set[str]:
    return {f"{path} -> {module}.{n}" for n in names.split()}


# Private names taken from another module; issue 11 part 6 makes each public or moves it.
ALLOWED_PRIVATE: frozenset[str] = frozenset()

RULES = Rules(
    package="aster_nb",
    layers=LAYERS,
    forbidden=FORBIDDEN,
    max_lines=400,
    allowed_upward=ALLOWED_UPWARD,
    allowed_long=ALLOWED_LONG,
    allowed_private=ALLOWED_PRIVATE,
)


def _report(problems: list[str]) -> str:
    return "\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def graph() -> list[Import]:
    return import_graph(ROOT)


def test_every_module_has_a_layer(graph: list[Import]) -> None:
    problems = unplaced(graph, ROOT, RULES)
    assert not problems, _report(problems)


def test_imports_run_down_the_layers(graph: list[Import]) -> None:
    problems = upward(graph, RULES)
    assert not problems, _report(problems)


def test_the_core_never_imports_a_ui_library(graph: list[Import]) -> None:
    problems = forbidden(graph, RULES)
    assert not problems, _report(problems)


def test_no_module_is_too_long() -> None:
    problems = oversized(ROOT, RULES)
    assert not problems, _report(problems)


def test_no_private_name_crosses_modules(graph: list[Import]) -> None:
    problems = private(graph, RULES)
    assert not problems, _report(problems)


def test_the_graph_sees_lazy_typing_and_dynamic_imports(graph: list[Import]) -> None:
    """Guards the reader itself on the real package: the imports it must not miss."""
    by_where = {(i.path, i.what): i.kind for i in graph}
    assert by_where[("aster_nb/sandbox/outcome.py", "aster_nb.sandbox.job.Job")] == "typing"
    assert by_where[("aster_nb/llm/__init__.py", "aster_nb.llm.anthropic.AnthropicModel")] == "lazy"
    assert any(i.source == "aster_nb.ui.figure" and i.target.startswith("plotly") for i in graph)


def test_the_graph_sees_imports_by_literal_name(tmp_path: Path) -> None:
    """``__import__("...")`` and ``importlib.import_module("...")`` of a literal name count
    (the package itself no longer has one to guard the reader with)."""
    root = _write(
        tmp_path,
        {
            "demo/__init__.py": "",
            "demo/b.py": "",
            "demo/c.py": "",
            "demo/a.py": """
                import importlib

                def f():
                    return __import__("demo.b", fromlist=["x"]), importlib.import_module("demo.c")
            """,
        },
    )
    found = {(i.path, i.what): i.kind for i in import_graph(root)}
    assert found[("demo/a.py", "demo.b")] == "lazy"
    assert found[("demo/a.py", "demo.c")] == "lazy"


# -- the checker can fail ---------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root / "demo"


DEMO = {
    "demo/__init__.py": "",
    "demo/low.py": """\
        from typing import TYPE_CHECKING

        from .base import VALUE

        if TYPE_CHECKING:
            from .high import Thing

        def f():
            import plotly.io  # a UI library in the core, lazily

            from demo import high  # upward, lazily
            return high._cache  # a private name, read through the module
        """,
    "demo/base.py": "VALUE = 1\n_hidden = 2\n",
    "demo/high.py": """\
        from .base import _hidden, VALUE
        from .sub import _helpers

        class Thing:
            pass
        """,
    "demo/sub/__init__.py": "",
    "demo/sub/_helpers.py": "X = 1\n",
    "demo/sub/inner.py": "from ._helpers import X\n",
    "demo/big.py": "x = 1\n" * 401,
    "demo/stray.py": "",
}
DEMO_LAYERS = (
    ("low", ("demo.low", "demo.base")),
    ("high", ("demo.high", "demo.big", "demo.sub")),
    ("face", ("demo",)),
)


def test_the_checker_reports_each_bad_import(tmp_path: Path) -> None:
    root = _write(tmp_path, DEMO)
    rules = Rules(package="demo", layers=DEMO_LAYERS, forbidden={"low": UI_LIBRARIES})
    assert list(check(root, rules)) == [
        "demo/stray.py: module demo.stray is in no layer; add it to LAYERS",
        "demo/low.py:6 imports demo.high (layer high) from layer low (for typing)",
        "demo/low.py:11 imports demo.high (layer high) from layer low (lazily)",
        "demo/low.py:9 imports plotly.io (lazily) from layer low, which never imports plotly",
        "demo/big.py has 401 lines, over 400: split it by job",
        "demo/high.py:1 imports private demo.base._hidden from demo.high",
        "demo/high.py:2 imports private demo.sub._helpers from demo.high",
        "demo/low.py:12 imports private demo.high._cache from demo.low (lazily)",
    ]


def test_allowed_offences_pass_and_stale_ones_fail(tmp_path: Path) -> None:
    root = _write(tmp_path, DEMO)
    rules = Rules(
        package="demo",
        layers=(
            *DEMO_LAYERS[:1],
            ("high", ("demo.high", "demo.big", "demo.sub", "demo.stray")),
            DEMO_LAYERS[2],
        ),
        allowed_upward=frozenset({"demo/low.py -> demo.high", "demo/low.py -> demo.gone"}),
        allowed_long={"demo/big.py": 401, "demo/high.py": 500},
        allowed_private=frozenset(
            {
                "demo/high.py -> demo.base._hidden",
                "demo/high.py -> demo.sub._helpers",
                "demo/low.py -> demo.high._cache",
                "demo/low.py -> demo.base._gone",
            }
        ),
    )
    assert list(check(root, rules)) == [
        "ALLOWED_UPWARD has 'demo/low.py -> demo.gone', which no longer happens: remove it",
        "ALLOWED_LONG has 'demo/high.py' (500), which now has 5 lines: remove it",
        "ALLOWED_PRIVATE has 'demo/low.py -> demo.base._gone', which no longer happens: remove it",
    ]
    (root / "big.py").write_text("x = 1\n" * 402)
    assert oversized(root, rules) == [
        "demo/big.py has 402 lines, over its ceiling of 401 in ALLOWED_LONG",
        "ALLOWED_LONG has 'demo/high.py' (500), which now has 5 lines: remove it",
    ]
