"""The dashboard and its views, driven in-process on real runs (no browser, no kernel)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest

from aster_nb import figures
from aster_nb.events import ProgramEvaluated
from aster_nb.program import EvalResult, Program, Status, code_hash
from aster_nb.run import Run
from aster_nb.snapshot import map_snapshot, timeline
from aster_nb.ui import (
    ArchiveMapView,
    BestDiff,
    Controls,
    Dashboard,
    GoalEditors,
    HandoffFeed,
    ReplaySlider,
    StatusLine,
    Throttle,
    TimelineView,
)
from aster_nb.ui.diff import METRICS_SHOWN
from aster_nb.ui.figure import FigureWidget, plotly_bundle
from aster_nb.ui.frontend import asset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    r = await Run.create(
        "toy", path=tmp_path / "r.sqlite", workers=2, agents=3, evaluations=12, seed=1
    )
    yield r
    await r.close()


async def drained(views: Iterable[Any]) -> None:
    """Wait until no view has a redraw scheduled (a bounded number of loop turns)."""
    views = list(views)
    for _ in range(500):
        if not any(v.throttle.pending for v in views):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the views kept scheduling redraws")


async def until(predicate: Any, what: str) -> None:
    """Wait for a condition the views must reach while events keep coming (a running run
    keeps its views dirty, so waiting for "no redraw pending" could wait forever)."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never saw: {what}")


async def finished(tasks: Iterable[asyncio.Task[Any]]) -> None:
    for t in list(tasks):
        with contextlib.suppress(Exception):  # the view reports it; the tests check the report
            await t


def classes(widget: Any) -> set[str]:
    return set(widget._dom_classes)


def walk(widget: Any) -> Iterable[Any]:
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def text_of(widget: Any) -> str:
    """Everything a browser would show as text (values and descriptions of the tree)."""
    parts = []
    for x in walk(widget):
        for attr in ("value", "description"):
            v = getattr(x, attr, None)
            if isinstance(v, str) and not v.startswith("<style>"):
                parts.append(v)
    return "\n".join(parts)


# -- the DOM contract ---------------------------------------------------------------------


async def test_dashboard_follows_the_dom_contract(run: Run) -> None:
    db = Dashboard(run)
    assert "aster-dashboard" in classes(db)
    assert "aster-status" in classes(db.status) and "idle" in text_of(db.status)
    assert "aster-controls" in classes(db.controls)
    buttons = {b.description: classes(b) for b in walk(db.controls) if hasattr(b, "on_click")}
    assert buttons == {
        "Step": {"aster-btn-step"},
        "Start": {"aster-btn-start"},
        "Pause": {"aster-btn-pause"},
        "Stop": {"aster-btn-stop"},
    }
    assert "aster-goals" in classes(db.goals)
    editors = [x for x in walk(db.goals) if "aster-goal-editor" in classes(x)]
    assert {c for e in editors for c in classes(e)} == {
        "aster-goal-editor",
        "aster-goal-p0-w0",
        "aster-goal-p0-w1",
    }
    for e in editors:
        kinds = {type(x).__name__ for x in walk(e)}
        assert {"Textarea", "Checkbox", "Button"} <= kinds
        assert any("aster-goal-apply" in classes(x) for x in walk(e))
        assert "set by planner" in text_of(e)
    assert "aster-archive-map" in classes(db.archive_map)
    assert any(type(x).__name__ == "FigureWidget" for x in walk(db.archive_map))
    assert "aster-timeline" in classes(db.timeline)
    assert "aster-handoffs" in classes(db.handoffs)
    assert "aster-diff" in classes(db.diff) and "aster-replay" in classes(db.replay)
    # Last in a cell, the dashboard is displayed as a widget view.
    bundle = db._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == db.model_id
    db.close()


async def test_custom_widgets_load_their_shipped_front_end(run: Run) -> None:
    feed = HandoffFeed(run)
    assert feed._esm == (ROOT / "widgets" / "handoffs.js").read_text()
    assert feed._css == (ROOT / "widgets" / "handoffs.css").read_text()
    assert "aster-handoff" in feed._esm and "export default" in feed._esm
    assert "http" not in feed._esm, "no network: the ESM imports nothing"
    assert ".aster-state-paused" in asset("dashboard.css")
    feed.close()


async def test_figures_load_plotly_once_per_kernel_not_per_widget(run: Run) -> None:
    # plotly's own FigureWidget sends its 5 MB bundle as every figure's ESM; ours send a
    # small loader, and the bundle travels once, in one model.
    db = Dashboard(run)
    a, b = db.archive_map.figure, db.timeline.figure
    assert isinstance(a, go.FigureWidget) and isinstance(a, FigureWidget)
    assert a._esm == b._esm == (ROOT / "widgets" / "figure.js").read_text()
    assert len(a._esm) < 10_000 and "aster_resync" in a._esm
    bundle = plotly_bundle()
    assert a._aster_bundle == b._aster_bundle == bundle.model_id
    assert len(bundle.source) > 1_000_000 and "FigureModel" in bundle.source
    assert a._aster_key != b._aster_key

    # Once plotly's code has loaded, the front end asks for the whole figure: it gets the
    # current data (updates made meanwhile included), then a marker.
    await run.step()
    db.archive_map.refresh()
    sent: list[Any] = []
    a.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    a._handle_custom_msg({"type": "aster_resync"}, [])
    assert sent == [{"type": "aster_synced"}]
    programs = a._widget_data[db.archive_map.bins + 1]
    assert len(programs["x"]) == len(map_snapshot(run, db.archive_map.worker).points) > 0
    db.close()


# -- controls -----------------------------------------------------------------------------


async def test_step_runs_one_round_and_a_double_click_makes_one_task(run: Run) -> None:
    db = Dashboard(run)
    c = db.controls
    c.step_button.click()
    c.step_button.click()  # a double click, or a re-run: still one step
    assert len(c.tasks.tasks) == 1
    assert c.step_button.disabled and c.start_button.disabled and not c.stop_button.disabled
    await finished(c.tasks.tasks)
    await drained(db.views.values())
    assert run.status.round == 1 and db.errors == []
    assert not c.step_button.disabled and not c.start_button.disabled and c.stop_button.disabled
    status = text_of(db.status)
    assert "round 1" in status and f"{run.store.count():,} evaluations" in status
    assert f"best {run.status.best_score:.6g}" in status
    db.close()


async def test_start_pause_resume_stop_from_the_buttons(run: Run) -> None:
    db = Dashboard(run)
    c = db.controls
    c.start_button.click()
    runner = run.start()  # a cell re-run: the same runner, not a second one
    c.start_button.click()
    assert run.start() is runner
    while run.status.state != "running" and not runner.done():
        await asyncio.sleep(0.01)
    await until(lambda: "running" in text_of(db.status), "running in the status line")
    await until(lambda: not c.pause_button.disabled, "Pause enabled while running")
    assert c.step_button.disabled and c.start_button.disabled and not c.pause_button.disabled
    c.step_button.click()  # disabled in the page; a stray click starts nothing
    assert not c.tasks.tasks
    while run.store.count() < 10 and not runner.done():
        await asyncio.sleep(0.02)
    assert not runner.done(), run.status
    c.pause_button.click()
    assert run.status.state == "paused"
    await until(lambda: "paused" in text_of(db.status), "paused in the status line")
    await until(lambda: c.pause_button.description == "Resume", "Pause turning into Resume")
    c.pause_button.click()
    assert run.status.state == "running"
    await until(lambda: c.pause_button.description == "Pause", "Resume turning into Pause")
    c.stop_button.click()
    await finished(c.tasks.tasks)
    await drained(db.views.values())
    assert runner.done() and run.status.state == "stopped"
    assert "stopped" in text_of(db.status)
    assert c.stop_button.disabled and c.pause_button.disabled and not c.step_button.disabled
    assert db.errors == []
    db.close()


async def test_a_failing_step_is_shown_and_kept(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(budget: Any) -> Any:
        raise RuntimeError("the planner broke on purpose")

    monkeypatch.setattr(run.planner, "round", broken)
    db = Dashboard(run)
    db.controls.step_button.click()
    await finished(db.controls.tasks.tasks)
    await drained(db.views.values())
    assert [str(e) for e in db.errors] == ["the planner broke on purpose"]
    assert db.controls.errors is db.errors  # one sink for the whole dashboard
    shown = text_of(db.status)
    assert "failed" in shown and "RuntimeError: the planner broke on purpose" in shown
    assert "aster-errors" in classes(db.sink.widget) and "broke" in db.sink.widget.value
    # The view alone shows its own errors.
    alone = Controls(run)
    alone.step_button.click()
    await finished(alone.tasks.tasks)
    assert len(alone.errors) == 1 and "broke on purpose" in text_of(alone)
    alone.close()
    db.close()


# -- goals --------------------------------------------------------------------------------


async def test_apply_steers_and_planner_changes_respect_unsaved_edits(run: Run) -> None:
    goals = GoalEditors(run)
    ed = goals.editors["p0.w0"]
    assert ed.text.value == run.planner.goals["p0.w0"] and "set by planner" in ed.by.value
    ed.text.value = "  Improve `alpha` by halving A.  "
    ed.pin.value = False
    ed.apply.click()
    stored = run.store.goals()
    last = stored[stored["worker"] == "p0.w0"].iloc[-1]
    assert last["goal"] == "Improve `alpha` by halving A."
    assert last["set_by"] == "researcher" and last["pinned"] == 0
    assert "set by researcher" in ed.by.value and not ed.edited
    assert run.planner.goals.info("p0.w0").set_by == "researcher"

    # The planner revises both goals; p0.w1's editor holds an unsaved edit.
    other = goals.editors["p0.w1"]
    other.text.value = "my draft"
    run.planner.goals.set("p0.w0", "Planner: tune A.", by="planner")
    run.planner.goals.set("p0.w1", "Planner: tune B.", by="planner")
    await drained([goals])
    assert ed.text.value == "Planner: tune A." and "set by planner" in ed.by.value
    assert other.text.value == "my draft", "an unsaved edit is never overwritten"
    assert "set by planner" in other.by.value

    ed.text.value = "   "
    ed.apply.click()  # an empty goal: refused, and said so
    assert len(goals.errors) == 1 and "non-empty" in str(goals.errors[0])
    assert "non-empty" in goals.sink.widget.value
    goals.close()


async def test_goal_editor_area_checkboxes_steer_and_show_the_resolved_areas(run: Run) -> None:
    goals = GoalEditors(run)
    ed = goals.editors["p0.w0"]
    assert list(ed.areas) == ["alpha", "beta"], "one checkbox per surface area"
    assert ed.ticked == ("alpha",) and ed.resolved.value == "areas: alpha (chosen by planner)"
    # Words select nothing: a goal naming `beta` with the ticks untouched keeps `alpha`.
    ed.text.value = "Keep the `beta` code as is."
    ed.apply.click()
    assert run.goals.info("p0.w0").areas == ("alpha",)
    assert run.goals.info("p0.w0").areas_by == "planner", "untouched ticks choose nothing"
    ed.areas["alpha"].value, ed.areas["beta"].value = False, True
    ed.apply.click()
    g = run.goals.info("p0.w0")
    assert g.areas == ("beta",) and g.areas_by == "researcher"
    await drained([goals])
    assert ed.resolved.value == "areas: beta (chosen by researcher)" and not ed.edited
    assert run.store.goals().iloc[-1]["areas"] == '["beta"]'
    # The planner moves the worker: the ticks and the label follow.
    run.planner.goals.set("p0.w0", "Planner: both.", by="planner", areas=["alpha", "beta"])
    await drained([goals])
    assert (
        ed.ticked == ("alpha", "beta")
        and ed.resolved.value == "areas: alpha, beta (chosen by planner)"
    )
    ed.areas["alpha"].value = ed.areas["beta"].value = False
    ed.apply.click()  # no area ticked: refused, naming the task's areas
    assert len(goals.errors) == 1 and "['alpha', 'beta']" in str(goals.errors[0])
    assert run.goals.info("p0.w0").text == "Planner: both."
    goals.close()


# -- handoffs and diff --------------------------------------------------------------------


async def test_handoff_feed_newest_first_from_events_and_from_the_store(run: Run) -> None:
    feed = HandoffFeed(run)
    assert feed.entries == []
    await run.step()
    await run.step()
    await drained([feed])
    assert [(e["round"], e["worker"]) for e in feed.entries[:2]] == [(1, "p0.w1"), (1, "p0.w0")]
    assert [e["round"] for e in feed.entries] == [1, 1, 0, 0]
    for e in feed.entries:
        assert e["done"] and e["learned"] and e["concerns"] and e["goal"]
        assert isinstance(e["best_score"], float)
    again = HandoffFeed(run)  # a new feed starts from the store: the same entries
    assert again.entries == feed.entries
    feed.close()
    again.close()


async def test_best_diff_against_initial_and_previous_best(run: Run) -> None:
    view = BestDiff(run)
    assert "identical" in view.body.value  # the best is the initial program
    await run.step()
    first = run.best
    await drained([view])
    assert first is not None and first.id in view.title.value
    assert "initial" in view.body.value and "@@" in view.body.value
    view.toggle.value = "previous"
    start = code_hash(run.task.initial_code)  # round 0 started from the initial program
    assert f"previous best <code>{start}</code>" in view.title.value
    assert f"previous {start}" in view.body.value and "@@" in view.body.value
    await run.step()
    await drained([view])
    second = run.best
    assert second is not None and second.id != first.id
    assert f"previous best <code>{first.id}</code>" in view.title.value
    changed = [
        line
        for line in second.code.splitlines()
        if line not in first.code.splitlines() and line.strip()
    ]
    assert changed and all(_visible(line) in view.body.value for line in changed[:3])
    # the best's metrics beside the start's (toy reports a..d): what the score hides
    start_metrics = run.store.get(start).result.metrics
    for name in list(second.result.metrics)[:METRICS_SHOWN]:
        row = f"<td><code>{name}</code></td><td>{start_metrics[name]:.4g}</td>"
        assert row + f"<td>{second.result.metrics[name]:.4g}</td>" in view.metrics.value
    view.close()


def _visible(line: str) -> str:
    # Pygments wraps tokens in spans; compare one token-free stretch of the line
    import html

    return html.escape(line.strip().split()[0], quote=False)


# -- map, timeline, replay ----------------------------------------------------------------


def trace_xy(fig: Any) -> list[tuple[list[Any], list[Any]]]:
    return [
        (
            [] if t.x is None else [None if v is None else float(v) for v in t.x],
            [] if t.y is None else [None if v is None else float(v) for v in t.y],
        )
        for t in fig.data
    ]


def same_xy(a: Any, b: Any) -> bool:
    xa, xb = trace_xy(a), trace_xy(b)
    if len(xa) != len(xb):
        return False
    for (ax, ay), (bx, by) in zip(xa, xb, strict=True):
        for u, v in ((ax, bx), (ay, by)):
            if len(u) != len(v):
                return False
            fu = np.array([np.nan if q is None else q for q in u], dtype=float)
            fv = np.array([np.nan if q is None else q for q in v], dtype=float)
            if not np.allclose(fu, fv, equal_nan=True, atol=1e-5):
                return False
    return True


async def test_map_updates_in_place_and_a_click_shows_the_elite(run: Run) -> None:
    view = ArchiveMapView(run, worker="p0.w0")
    fig, traces = view.figure, list(view.figure.data)
    assert len(traces) == view.bins + 3
    await run.step()
    await drained([view])
    await run.step()
    await drained([view])
    assert view.figure is fig and len(fig.data) == len(traces)
    assert all(a is b for a, b in zip(fig.data, traces, strict=True)), "traces are never rebuilt"
    live = map_snapshot(run, "p0.w0")
    assert same_xy(fig, figures.archive_map_figure(live, bins=view.bins))
    assert len(fig.data[view.bins + 1].x) == len(live.points) > 0

    view.dropdown.value = "p0.w1"
    assert view.figure is fig
    assert same_xy(fig, figures.archive_map_figure(map_snapshot(run, "p0.w1"), bins=view.bins))

    # A click on a cell centre, as plotly.js reports it, shows that elite and its diff.
    centres = fig.data[view.bins + 2]
    i = next(k for k, e in enumerate(centres.customdata) if e)
    elite = run.store.get(centres.customdata[i])
    assert elite is not None and elite.parents
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
    assert view.selected == elite.id and view.errors == []
    assert elite.id in view.elite.value and f"parent {elite.parents[0]}" in view.elite.value
    with pytest.raises(KeyError, match="no program"):
        view.select("0" * 16)
    view.close()


async def test_replay_slider_draws_the_first_t_evaluations(run: Run) -> None:
    await run.step()
    await run.step()
    db = Dashboard(run)
    total = run.store.count()
    assert db.replay.slider.max == total and db.replay.upto is None
    points = db.archive_map.figure.data[db.archive_map.bins + 1]
    live_scale = (points.marker.cmin, points.marker.cmax)
    t = total // 3
    db.replay.seek(t)
    await drained(db.views.values())
    # one color scale for the run: a color means the same score in every frame
    assert (points.marker.cmin, points.marker.cmax) == live_scale
    assert db.replay.upto == t and db.archive_map.upto == t and db.timeline.upto == t
    then = map_snapshot(run, db.archive_map.worker, upto=t)
    assert 0 < len(then.points) < len(map_snapshot(run, db.archive_map.worker).points)
    assert same_xy(db.archive_map.figure, figures.archive_map_figure(then))
    assert same_xy(
        db.timeline.figure,
        figures.timeline_figure(timeline(run, upto=t), workers=sorted(run.workers)),
    )

    # Dragging the slider by hand leaves live mode too; "live" comes back to the run.
    db.replay.follow()
    db.replay.slider.value = 5
    await drained(db.views.values())
    assert not db.replay.live.value and db.archive_map.upto == 5
    db.replay.follow()
    await run.step()
    await drained(db.views.values())
    assert db.replay.slider.value == db.replay.slider.max == run.store.count() > total
    assert same_xy(
        db.archive_map.figure, figures.archive_map_figure(map_snapshot(run, db.archive_map.worker))
    )
    assert db.errors == []
    db.close()


async def test_replay_says_so_and_rewinds_the_handoff_feed(run: Run) -> None:
    await run.step()
    await run.step()
    db = Dashboard(run)
    hand = run.handoffs()
    assert list(hand["round"]) == [0, 0, 1, 1] and hand["programs"].notna().all()
    assert "aster-replaying" not in classes(db) and db.replay.banner.layout.display == "none"
    assert [e["round"] for e in db.handoffs.entries] == [1, 1, 0, 0]
    # After round 0's handoffs were written and before round 1's: only round 0's show.
    t = int(hand["programs"].iloc[1])
    assert t < int(hand["programs"].iloc[2])
    db.replay.seek(t)
    await drained(db.views.values())
    assert db.handoffs.upto == t and [e["round"] for e in db.handoffs.entries] == [0, 0]
    assert "aster-replaying" in classes(db) and "aster-replaying" in classes(db.replay)
    assert db.replay.banner.layout.display is None
    assert f"REPLAY</b> · showing the run as after evaluation {t} of {run.store.count()}" in (
        db.replay.banner.value
    )
    db.replay.seek(int(hand["programs"].iloc[0]) - 1)
    await drained(db.views.values())
    assert db.handoffs.entries == [], "before the first handoff, none"
    # A handoff arriving while replaying waits for live; live shows every handoff again.
    await run.step()
    await drained(db.views.values())
    assert db.handoffs.entries == []
    db.replay.follow()
    await drained(db.views.values())
    assert [e["round"] for e in db.handoffs.entries] == [2, 2, 1, 1, 0, 0]
    assert "aster-replaying" not in classes(db) and db.replay.banner.value == ""
    assert db.errors == []
    db.close()


async def test_handoff_replay_places_old_rows_by_time(run: Run) -> None:
    """A store written before handoffs recorded their position places them by time."""
    from aster_nb.ui.handoffs import written_by

    await run.step()
    hand, hist = run.handoffs(), run.history()
    exact = written_by(hand, hist)
    assert list(exact) == list(hand["programs"])
    estimated = written_by(hand.drop(columns="programs"), hist)
    assert all(abs(int(e) - int(x)) <= 2 for e, x in zip(estimated, exact, strict=True)), (
        estimated,
        exact,
    )


async def test_timeline_toggle_switches_to_wall_time(run: Run) -> None:
    await run.step()
    view = TimelineView(run)
    fig = view.figure
    assert fig.layout.xaxis.title.text == "evaluations"
    view.toggle.value = "elapsed"
    assert view.figure is fig and fig.layout.xaxis.title.text == "wall time (s)"
    best = fig.data[len(run.workers)]
    assert best.name == "best" and max(best.x) <= timeline(run).frame["elapsed"].max() + 1e-6
    view.close()


async def test_a_reopened_run_renders_from_its_store(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    async with await Run.create(
        "toy", path=path, workers=2, agents=3, evaluations=12, seed=1
    ) as first:
        await first.step()
        await first.step()
        best, count = first.best, first.store.count()
        handoffs = HandoffFeed(first)
        stored = list(handoffs.entries)
        handoffs.close()
    async with await Run.open(path) as run:
        db = Dashboard(run)
        assert best is not None and run.best is not None and run.best.id == best.id
        status = text_of(db.status)
        assert "idle" in status and "round 2" in status and f"{count:,} evaluations" in status
        assert db.handoffs.entries == stored and len(stored) == 4
        assert best.id in db.diff.title.value
        assert db.replay.slider.max == count
        assert len(db.archive_map.figure.data[db.archive_map.bins + 1].x) > 0
        db.replay.seek(count // 2)
        await drained(db.views.values())
        half = map_snapshot(run, db.archive_map.worker, upto=count // 2)
        assert same_xy(db.archive_map.figure, figures.archive_map_figure(half))
        for name in run.workers:
            assert db.goals.editors[name].text.value == run.planner.goals[name]
        # It can go on from the buttons.
        db.controls.step_button.click()
        await finished(db.controls.tasks.tasks)
        await drained(db.views.values())
        assert "round 3" in text_of(db.status) and db.errors == []
        db.close()


# -- liveness -----------------------------------------------------------------------------


async def test_throttle_coalesces_a_burst_and_draws_the_last_state() -> None:
    state = {"now": 0, "drawn": []}
    th = Throttle(lambda: state["drawn"].append(state["now"]), interval=0.05)
    for i in range(1000):  # one burst inside one event handler: no loop turn in between
        state["now"] = i
        th.mark()
    assert th.draws == 0, "marking never draws inside the caller"
    await drained([th_view(th)])
    assert state["drawn"] == [999]

    # Marks spread over many loop turns: at most one draw per interval, plus the last.
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(1000, 2000):
        state["now"] = i
        th.mark()
        if i % 10 == 0:
            await asyncio.sleep(0.001)
    await drained([th_view(th)])
    elapsed = loop.time() - t0
    spread = state["drawn"][1:]
    assert spread[-1] == 1999, "the final state is always drawn"
    assert 1 <= len(spread) <= 2 + elapsed / th.interval, (len(spread), elapsed)
    assert th.marks == 2000

    th.close()
    th.mark()
    await asyncio.sleep(0.06)
    assert th.draws == 1 + len(spread), "a closed throttle draws nothing"


def th_view(th: Throttle) -> Any:
    class V:
        throttle = th

    return V()


async def test_a_thousand_events_cost_a_bounded_number_of_redraws(run: Run) -> None:
    db = Dashboard(run)
    await drained(db.views.values())
    before = {n: v.throttle.draws for n, v in db.views.items()}
    for n in range(1000):
        fake = Program(code=f"x = {n}\n", result=EvalResult(status=Status.OK, score=0.0))
        run.store.add_program(fake)  # as a worker does: stored, then reported
        run.bus.emit(ProgramEvaluated(program=fake, worker="p0.w0", n=n, improved=False))
    await drained(db.views.values())
    after = {n: v.throttle.draws for n, v in db.views.items()}
    # the views that follow evaluations redrew once for the whole burst; the others not at all
    assert {n: after[n] - before[n] for n in after} == {
        "status": 1,
        "controls": 0,
        "archive_map": 1,
        "timeline": 1,
        "replay": 1,
        "goals": 0,
        "handoffs": 0,
        "diff": 0,
    }
    assert "1,000 evaluations" in text_of(db.status)  # the store's count, redrawn once
    db.close()


async def test_close_unsubscribes_every_view(run: Run) -> None:
    subscribers = len(run.bus._subs)
    db = Dashboard(run)
    alone = [StatusLine(run), GoalEditors(run), ReplaySlider(run)]
    assert len(run.bus._subs) > subscribers
    db.close()
    for v in alone:
        v.close()
    assert len(run.bus._subs) == subscribers
    run.bus.emit(
        ProgramEvaluated(program=Program(code="y = 2\n"), worker="p0.w0", n=0, improved=False)
    )
    assert not any(v.throttle.pending for v in [*db.views.values(), *alone])
