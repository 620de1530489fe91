from __future__ import annotations

import sqlite3
from pathlib import Path

from aster_nb.program import EvalResult, Program, Status
from aster_nb.store import Store


def _prog(code: str, score: float | None, status: Status = Status.OK) -> Program:
    r = EvalResult(
        status=status,
        score=score,
        metrics={"m": 1.5},
        features=(0.1, 0.2),
        error=None if status is Status.OK else "boom",
    )
    return Program(code=code, parents=("p0",), origin="edit", worker="w0", agent=2).evaluated(
        r, (0.1, 0.2)
    )


def test_round_trip_and_wal(tmp_path: Path) -> None:
    s = Store(tmp_path / "r.sqlite")
    p = _prog("x = 1\n", 3.0)
    assert s.add_program(p) is True
    assert s.add_program(p) is False, "identical code is one program"
    q = s.get(p.id)
    assert q is not None and q.code == p.code and q.score == 3.0 and q.parents == ("p0",)
    assert q.result.metrics == {"m": 1.5} and q.descriptor == (0.1, 0.2) and q.agent == 2
    assert p.id in s and "nope" not in s
    # WAL: a second connection reads what the first committed, without closing it.
    with sqlite3.connect(s.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM programs").fetchone()[0] == 1
    s.close()


def test_history_and_best(tmp_path: Path) -> None:
    s = Store(tmp_path / "r.sqlite")
    s.add_program(_prog("a = 1\n", 1.0))
    s.add_program(_prog("a = 2\n", None, Status.INVALID))
    s.add_program(_prog("a = 3\n", 2.0))
    df = s.history()
    assert list(df["status"]) == ["ok", "invalid", "ok"]
    assert list(df["best_so_far"].ffill()) == [1.0, 1.0, 2.0]
    assert s.best().score == 2.0
    assert s.count() == 3
    s.set_meta("config", {"k": 1})
    assert s.meta("config") == {"k": 1}
    s.close()


def test_history_reads_new_rows_and_results_landing_on_pending_ones(tmp_path: Path) -> None:
    import pandas.testing as pdt

    s = Store(tmp_path / "r.sqlite")
    pending = Program(code="b = 0\n", worker="w1", round=0)  # no result yet
    s.add_program(pending)
    s.add_program(_prog("b = 1\n", 1.0))
    assert list(s.history()["status"]) == ["pending", "ok"]
    # Another connection (a second process) stores the result and a new program.
    other = Store(tmp_path / "r.sqlite")
    other.add_program(pending.evaluated(EvalResult(status=Status.OK, score=5.0), None))
    other.add_program(_prog("b = 2\n", None, Status.ERROR))
    df = s.history()
    assert list(df["status"]) == ["ok", "ok", "error"]
    assert (
        list(df["score"].fillna(-1)) == [5.0, 1.0, -1]
        and list(df["best_so_far"].ffill()) == [5.0] * 3
    )
    assert df["features"][1] == [0.1, 0.2] and df["metrics"][1] == {"m": 1.5}
    # The same frame as a store that reads everything at once.
    fresh = Store(tmp_path / "r.sqlite")
    pdt.assert_frame_equal(df, fresh.history())
    empty = Store(tmp_path / "empty.sqlite")
    assert list(empty.history().columns) == list(df.columns) and len(empty.history()) == 0
    for store in (other, fresh, empty, s):
        store.close()


def test_scores_are_the_history_columns_as_arrays(tmp_path: Path) -> None:
    import numpy as np

    s = Store(tmp_path / "r.sqlite")
    assert len(s.scores()) == 0
    pending = Program(code="c = 0\n", worker="w1", round=0)
    s.add_program(pending)
    s.add_program(_prog("c = 1\n", 1.0))
    s.add_program(_prog("c = 2\n", None, Status.ERROR))
    first = s.scores()
    assert list(first.status) == ["pending", "ok", "error"] and np.isnan(first.score[0])
    s.add_program(pending.evaluated(EvalResult(status=Status.OK, score=3.0), None))
    t, h = s.scores(), s.history()
    assert list(t.id) == list(h["id"]) and list(t.worker) == list(h["worker"])
    assert list(t.status) == ["ok", "ok", "error"]
    assert np.array_equal(t.score, h["score"].to_numpy(dtype=float), equal_nan=True)
    assert np.array_equal(t.created, h["created"].to_numpy(dtype=float))
    assert t.descriptor == list(h["descriptor"])
    assert list(s.scores(upto=2).id) == list(h["id"][:2])
    s.close()


def test_evaluations_count_programs_with_a_result_once(tmp_path: Path) -> None:
    s = Store(tmp_path / "r.sqlite")
    pending = Program(code="b = 0\n", worker="w1")
    s.add_program(pending)
    assert s.evaluations() == 0, "a program waiting for its result is no evaluation yet"
    s.add_program(pending.evaluated(EvalResult(status=Status.OK, score=1.0), None))
    s.add_program(_prog("b = 1\n", None, Status.TIMEOUT))
    s.add_program(_prog("b = 1\n", None, Status.TIMEOUT))  # identical code: one program
    assert s.evaluations() == 2
    assert Store(tmp_path / "r.sqlite").evaluations() == 2, "reopened, counted from the file"
    s.close()


def test_a_store_from_before_handoff_reports_resumes(tmp_path: Path) -> None:
    """A store written before the handoffs table had its ``report`` column (and before the
    spend was kept) is checked, reopened and resumed; its old handoffs keep no report."""
    import json

    from aster_nb import cli
    from aster_nb.store import check_run_store

    out = tmp_path / "runs"
    assert (
        cli.main(["run", "toy", "--budget", "4", "--agents", "2", "--quiet", "--out", str(out)])
        == 0
    )
    (path,) = out.glob("*.sqlite")
    with sqlite3.connect(path) as db:  # as the version before wrote it
        db.execute("ALTER TABLE handoffs DROP COLUMN report")
        db.execute("DELETE FROM meta WHERE key='spend'")
    check_run_store(path)
    assert cli.main(["resume", str(path), "--rounds", "1", "--quiet"]) == 0
    with sqlite3.connect(path) as db:
        reports = [r for (r,) in db.execute("SELECT report FROM handoffs ORDER BY seq")]
    assert reports[0] is None and reports[-1] is not None
    assert json.loads(reports[-1])["evaluations"] == 4
