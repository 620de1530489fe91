"""Forking a run from a stored program: a new store linked to its parent, which stays as it
was; the fork starts from that program, keeps the parent's settings but for overrides, and
reopens as made. Real sandbox, real SQLite, the offline model."""

from __future__ import annotations

import html
import sqlite3
from pathlib import Path

import pytest

from aster_nb.errors import UserInputError
from aster_nb.run import Run
from aster_nb.runfork import ForkOrigin


def not_initial_program(run: Run) -> str:
    """A program a worker made (not the initial one), with a score."""
    df = run.history()
    made = df[(df["origin"] != "initial") & (df["status"] == "ok")]
    assert len(made), "the parent's round made no scored program to fork from"
    return str(made.sort_values("score").iloc[len(made) // 2]["id"])


async def test_fork_starts_from_the_program_and_links_its_parent(tmp_path: Path) -> None:
    parent_path = tmp_path / "parent.sqlite"
    async with await Run.create(
        "toy", path=parent_path, workers=2, agents=2, evaluations_per_round=6, seed=3
    ) as parent:
        await parent.step()
        chosen = not_initial_program(parent)
        program = parent.store.get(chosen)
        assert program is not None
        rows_before = parent.store.count()
        async with await parent.fork(chosen, workers=1, evaluations_per_round=4) as child:
            # a new store, beside the parent's, linked to it and to the program
            assert child.store.path != parent.store.path
            assert child.store.path.parent == parent_path.parent
            assert child.parent == ForkOrigin(
                parent_run=str(parent_path.resolve()),
                parent_program=chosen,
                parent_round=program.round,
                parent_score=program.score,
                initial_code=program.code,
                created=child.parent.created if child.parent else 0.0,
            )
            assert parent.parent is None, "a run made by create has no parent"
            # same task and settings, but the overrides
            assert child.cfg.task == parent.cfg.task and child.cfg.seed == 3
            assert child.cfg.workers == 1 and child.cfg.evaluations_per_round == 4
            assert child.cfg.agents == parent.cfg.agents
            # it starts from the program: the initial evaluation is of its code
            assert child.best is not None and child.best.code == program.code
            assert child.task.initial_code == program.code
            assert child.initial_result is not None and child.initial_result.score == pytest.approx(
                program.score
            )
            r = await child.step()
            first = child.store.programs()[0]
            assert first.id == chosen and first.origin == "initial"
            assert r.best.score is not None and r.best.score >= program.score
        # the parent's store gained nothing from the fork
        assert parent.store.count() == rows_before
        fork_path = child.store.path

    # reopened, the fork still starts from the parent's program, not the task's
    async with await Run.open(fork_path) as again:
        assert again.parent is not None and again.parent.parent_program == chosen
        assert again.task.initial_code == program.code
        assert again.rounds_done == 1
        await again.step()
        assert again.rounds_done == 2


async def test_fork_leaves_the_parent_store_untouched(tmp_path: Path) -> None:
    parent_path = tmp_path / "parent.sqlite"
    async with await Run.create(
        "toy", path=parent_path, workers=1, agents=2, evaluations_per_round=4
    ) as parent:
        await parent.step()
        chosen = not_initial_program(parent)
    async with await Run.open(parent_path) as parent:
        before_rows = parent.store.count()
        async with await parent.fork(chosen, path=tmp_path / "child.sqlite") as child:
            await child.step()
    db = sqlite3.connect(f"file:{parent_path}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT COUNT(*) FROM programs").fetchone()[0] == before_rows
        assert db.execute("SELECT value FROM meta WHERE key='fork'").fetchone() is None
    finally:
        db.close()
    child_db = sqlite3.connect(f"file:{tmp_path / 'child.sqlite'}?mode=ro", uri=True)
    try:
        (link,) = child_db.execute("SELECT value FROM meta WHERE key='fork'").fetchone()
    finally:
        child_db.close()
    assert chosen in link and str(parent_path.resolve()) in link


async def test_fork_refuses_bad_ids_and_settings(tmp_path: Path) -> None:
    async with await Run.create(
        "toy", path=tmp_path / "p.sqlite", workers=1, agents=2, evaluations_per_round=4
    ) as parent:
        await parent.step()
        with pytest.raises(UserInputError, match=r"no program 'nope'.*history\(\)\['id'\]"):
            await parent.fork("nope")
        with pytest.raises(UserInputError, match="a stored program's id"):
            await parent.fork(42)  # type: ignore[arg-type]
        good = parent.history()["id"].iloc[0]
        with pytest.raises(UserInputError, match=r"cannot override \['task'\]"):
            await parent.fork(good, task="circle_packing")
        with pytest.raises(UserInputError, match=r"cannot override \['rounds'\].*workers"):
            await parent.fork(good, rounds=3)
        with pytest.raises(FileExistsError):
            await parent.fork(good, path=parent.store.path)
        # nothing was made by the refused forks
        assert sorted(p.name for p in tmp_path.glob("*.sqlite")) == ["p.sqlite"]


async def test_dashboard_forks_from_a_clicked_program(tmp_path: Path) -> None:
    """The map's click (as plotly.js reports it) selects a program; the fork button makes
    a run from it, kept on ``dashboard.forked``; "start the fork" runs its round."""
    from aster_nb.ui import Dashboard

    async with await Run.create(
        "toy", path=tmp_path / "p.sqlite", workers=1, agents=2, evaluations_per_round=6
    ) as parent:
        await parent.step()
        db = Dashboard(parent, rounds=1)
        view, panel = db.archive_map, db.archive_map.fork_panel
        assert panel.button.disabled and db.forked is None
        with pytest.raises(ValueError, match="no program selected"):
            panel.fork()
        fig = view.figure
        centres = fig.data[view.bins + 2]
        i = next(k for k, e in enumerate(centres.customdata) if e)
        fig._js2py_pointsCallback = {
            "event_type": "plotly_click",
            "points": {
                "trace_indexes": [view.bins + 2],
                "point_indexes": [i],
                "xs": [centres.x[i]],
                "ys": [centres.y[i]],
            },
            "device_state": {},
            "selector": None,
        }
        clicked = centres.customdata[i]
        assert view.selected == clicked and panel.program_id == clicked
        assert not panel.button.disabled
        # a fork that fails says why in the panel and in the dashboard's errors
        panel.select("0" * 16)
        with pytest.raises(UserInputError):
            await panel.fork()
        assert "fork failed: UserInputError: no program" in html.unescape(panel.result.value)
        assert len(db.errors) == 1 and db.forked is None
        db.sink.clear()
        view.select(clicked)
        child = await panel.fork()
        async with child:  # closed even when a check fails: a live sandbox would hang exit
            assert db.forked is child and child.parent is not None
            assert child.parent.parent_program == clicked
            shown = html.unescape(panel.result.value)
            assert f"Run.open({str(child.store.path)!r})" in shown
            await panel.start_fork()
            assert child.store.programs()[0].id == clicked and child.rounds_done == 1
            assert db.errors == [] and parent.store.meta("fork") is None
        db.close()


async def test_a_damaged_fork_link_is_a_store_error(tmp_path: Path) -> None:
    from aster_nb.store import Store, StoreError

    async with await Run.create(
        "toy", path=tmp_path / "p.sqlite", workers=1, agents=2, evaluations_per_round=4
    ) as parent:
        await parent.step()
        chosen = not_initial_program(parent)
        child = await parent.fork(chosen)
        path = child.store.path
        await child.close()
    with Store(path) as s:
        s.set_meta("fork", {"parent_run": "x"})
    with pytest.raises(StoreError, match="fork link in its meta table is malformed"):
        await Run.open(path)
