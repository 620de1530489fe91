"""Descriptors: code-derived ones, the code embedding, and the choice of descriptor."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aster_nb.embedding import CodeEmbedding, code_terms
from aster_nb.features import (
    CODE_FEATURE_NAMES,
    DEFAULT_DESCRIPTOR,
    CodeDescriptor,
    MetricsDescriptor,
    archive_descriptor,
    code_features,
    describe,
    make_descriptor,
    resolve_descriptor,
)
from aster_nb.program import EvalResult, Program, Status
from aster_nb.store import Store
from aster_nb.task import Task, TaskError

from .conftest import write_task

COMPUTED = '''
import math

def pack(n):
    """Place n circles on a ring."""
    out = []
    for i in range(n):
        angle = 2 * math.pi * i / n
        out.append((0.5 + 0.3 * math.cos(angle), 0.5 + 0.3 * math.sin(angle)))
    return out
'''

HARD_CODED = """
def pack(n):
    return [(0.1, 0.1), (0.1, 0.3), (0.1, 0.5), (0.3, 0.1), (0.3, 0.3), (0.3, 0.5),
            (0.5, 0.1), (0.5, 0.3), (0.5, 0.5), (0.7, 0.1), (0.7, 0.3), (0.7, 0.5)][:n]
"""


def test_deterministic_and_two_dimensional() -> None:
    f = code_features(COMPUTED)
    assert f == code_features(COMPUTED) == code_features(str(COMPUTED))
    assert len(f) == len(CODE_FEATURE_NAMES) == 2
    assert all(isinstance(x, float) and math.isfinite(x) for x in f)


def test_structurally_different_code_differs() -> None:
    computed, table = code_features(COMPUTED), code_features(HARD_CODED)
    assert table[1] > 3 * computed[1]  # hard-coded numbers dominate the table's tokens
    bigger = code_features(COMPUTED + COMPUTED.replace("def pack", "def pack2"))
    assert bigger[0] > computed[0] + 0.5  # twice the code: log size up by ~log(2)
    assert code_features("x = 1\n") != code_features("for i in range(3):\n    print(i)\n")


def test_syntax_errors_do_not_raise() -> None:
    for bad in ["def f(:\n    return 1\n", "x = (1, 2,\n", '"""never closed', "\x00", "if x\n"]:
        size, numeric = code_features(bad)
        assert math.isfinite(size) and size >= 0.0
        assert 0.0 <= numeric <= 1.0
    # Broken code of about the same length lands near its parseable version on size.
    ok = code_features(COMPUTED)
    broken = code_features(COMPUTED.replace("def pack(n):", "def pack(n:"))
    assert abs(broken[0] - ok[0]) < 1.0
    assert abs(broken[1] - ok[1]) < 0.01  # all tokens are read: only the ")" is missing


def test_empty_code() -> None:
    size, numeric = code_features("")
    assert numeric == 0.0 and size >= 0.0


def test_describe_prefers_the_evaluator() -> None:
    with_feats = EvalResult(status=Status.OK, score=1.0, features=(3, 4.5))
    assert describe(COMPUTED, with_feats) == (3.0, 4.5)
    without = EvalResult(status=Status.OK, score=1.0)
    assert describe(COMPUTED, without) == code_features(COMPUTED)


# -- the code embedding -------------------------------------------------------------------------

TUNED = '''"""A docstring with 123 in it."""
STEPS = 30
RATE = 0.05  # a comment with 7 in it


def run(x):
    return min(x * RATE, STEPS) + 2.5
'''


def _sites(code: str) -> dict[str, float]:
    return {k: v for k, v in code_terms(code).items() if k.startswith("n:")}


def test_terms_name_each_literal_by_its_site_and_ignore_comments_and_docstrings() -> None:
    sites = _sites(TUNED)
    assert len(sites) == 3  # 30, 0.05 and 2.5; not 123 (docstring) nor 7 (comment)
    changed = _sites(TUNED.replace("RATE = 0.05", "RATE = 0.1"))
    diff = {k for k in sites if sites[k] != changed.get(k)}
    assert len(diff) == 1 and "RATE" in next(iter(diff))  # one site moved, none renamed
    # a factor 2 moves the value by about log 2, whatever the magnitude
    assert changed[next(iter(diff))] - sites[next(iter(diff))] == pytest.approx(np.log(2), rel=0.05)
    assert code_terms(TUNED.replace("# a comment with 7 in it", "# other words")) == code_terms(
        TUNED
    )
    pairs = {k for k in code_terms(TUNED) if k.startswith("p:")}
    swapped = {k for k in code_terms(TUNED.replace("min(", "max(")) if k.startswith("p:")}
    assert pairs != swapped and _sites(TUNED.replace("min(", "max(")) == sites


def test_terms_never_raise_on_broken_code() -> None:
    for bad in ['x = "never closed', "def f(:\n", '"""open docstring\nx = 1', "\x00", "", "1e"]:
        assert isinstance(code_terms(bad), dict)


def _embedded(codes: list[str], dims: int = 4) -> tuple[CodeEmbedding, np.ndarray]:
    e = CodeEmbedding(dims=dims)
    for c in codes:
        e.add(c)
    return e, e.refit()


def test_embedding_separates_programs_that_differ_only_in_constants() -> None:
    codes = [TUNED.replace("STEPS = 30", f"STEPS = {s}") for s in (30, 31, 60, 3000)]
    e, x = _embedded(codes)
    assert x.shape == (4, 4) and e.fits == 1 and len(e) == 4
    d = np.linalg.norm(x - x[0], axis=1)
    assert 0 < d[1] < d[2] < d[3]  # nearby values near, orders of magnitude far
    assert d[3] == pytest.approx(np.log(100), rel=0.05)  # the units are log-ratios
    assert e.explained() == pytest.approx(1.0)  # one site varies: one component keeps it all
    assert e.axis_names()[0] == "code PC1 (100% of variance)"
    # the size/numeric descriptor cannot see any of this
    assert len({CodeDescriptor()(Program(code=c)).tobytes() for c in codes}) == 1


def test_embedding_refits_on_schedule_and_projects_new_rows_with_the_last_fit() -> None:
    e = CodeEmbedding(dims=2, growth=2.0)
    due = []
    for i in range(9):
        e.add(TUNED.replace("RATE = 0.05", f"RATE = {0.05 * (i + 1)}"))
        due.append(e.due())
        if e.due():
            e.refit()
    assert due == [True, True, False, True, False, False, False, True, False]
    y = e.add(TUNED.replace("RATE = 0.05", "RATE = 7.5"))
    assert y.shape == (2,) and np.isfinite(y).all() and abs(y[0]) > 0
    unseen = e.add(TUNED.replace("+ 2.5", "+ 99.0"))  # a site that never varied: not seen yet
    assert np.allclose(unseen, e.add(TUNED))


def test_embedding_validation() -> None:
    for kw, msg in [
        ({"dims": 0}, "dims"),
        ({"growth": 1.0}, "growth"),
        ({"fit_rows": 1}, "fit_rows"),
    ]:
        with pytest.raises(ValueError, match=msg):
            CodeEmbedding(**kw)


# -- descriptor choice ----------------------------------------------------------------------


def test_metrics_descriptor_keeps_the_first_programs_keys() -> None:
    d = MetricsDescriptor()

    def p(**m: float) -> Program:
        return Program(code=f"# {m}").evaluated(EvalResult(status=Status.OK, score=1.0, metrics=m))

    assert d(p(b=2.0, a=1.0)).tolist() == [1.0, 2.0] and d.axis_names() == ("a", "b")
    assert d(p(a=5.0, c=9.0)).tolist() == [5.0, 0.0]  # b missing: 0; c is new: ignored
    with pytest.raises(ValueError, match="reports metrics"):
        MetricsDescriptor()(p())


def test_descriptor_resolution_and_the_record_in_the_store(tmp_path) -> None:
    assert resolve_descriptor("auto", has_features=True) == "features"
    assert resolve_descriptor("auto", has_features=False) == DEFAULT_DESCRIPTOR == "embedding"
    assert resolve_descriptor("metrics", has_features=True) == "metrics"
    with pytest.raises(ValueError, match=r"named in task\.toml"):
        resolve_descriptor("features", has_features=False)
    with pytest.raises(ValueError, match="one of"):
        resolve_descriptor("fetaures", has_features=True)
    assert make_descriptor("features") is None
    assert isinstance(make_descriptor("embedding"), CodeEmbedding)
    store = Store(tmp_path / "r.sqlite")
    assert archive_descriptor(Task.load("circle_packing_bare"), store) == "embedding"
    assert store.meta("descriptor") == {"kind": "embedding", "choice": "auto"}
    # once recorded, the run keeps it whatever the task says now (a resumed run, a replay)
    assert archive_descriptor(Task.load("circle_packing"), store) == "embedding"
    other = Store(tmp_path / "s.sqlite")
    assert archive_descriptor(Task.load("circle_packing"), other) == "features"


def test_task_toml_chooses_the_descriptor(tmp_path) -> None:
    def task(toml: str) -> Task:
        return write_task(
            tmp_path / str(abs(hash(toml))),
            program="X = 1\n",
            evaluator="def evaluate(path):\n    return {'score': 1.0}\n",
            toml=toml,
        )

    assert task('name = "t"\n').descriptor == "auto"
    assert task('name = "t"\ndescriptor = "metrics"\n').descriptor == "metrics"
    with pytest.raises(TaskError, match="descriptor must be one of"):
        task('name = "t"\ndescriptor = "embeding"\n')
    with pytest.raises(TaskError, match=r"needs the evaluator's features named in \[features\]"):
        task('name = "t"\ndescriptor = "features"\n')
    named = task('name = "t"\ndescriptor = "features"\n[features]\nnames = ["a"]\n')
    assert named.descriptor == "features"
