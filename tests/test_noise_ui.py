"""The dashboard's side of noisy, slow evaluations: the live curves, error bars on the
timeline and the evaluations in flight on the status line, from a real run."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aster_nb.run import Run
from aster_nb.runconfig import RunStatus
from aster_nb.ui import Dashboard, ProgressView, StatusLine
from aster_nb.ui.status import status_html

from .test_noise import NOISY, variant
from .test_ui import drained


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    r = await Run.create(
        str(NOISY), path=tmp_path / "n.sqlite", workers=1, agents=2, evaluations_per_round=4, seed=1
    )
    yield r
    await r.close()


async def test_dashboard_plots_reported_values_and_error_bars(run: Run) -> None:
    board = Dashboard(run)
    assert board.progress is not None and "progress" in board.views
    await run.step()
    await drained(board.views.values())
    board.refresh()
    curves = board.progress.curves
    assert curves, "the run's reports reached the live plot"
    points = next(iter(curves.values()))
    assert [s for s, _ in points] == [0, 10, 20, 30, 40, 50, 60, 70][: len(points)]
    fig = board.progress.figure
    assert len(fig.data) == len(curves) and fig.layout.yaxis.title.text == "loss"
    # the base is the first best, confirmed on 3 seeds: its marker has an error bar
    new_best = next(t for t in board.timeline.figure.data if t.name.startswith("new best"))
    assert new_best.error_y.visible and new_best.error_y.array[0] == pytest.approx(0.01)
    board.close()
    # opened again (a reopened run, say): the current best's stored curves, one per seed
    again = ProgressView(run)
    best = [k for k in again.curves if k[0] == "best"]
    assert sorted(seed for _, _, seed in best) == [0, 1, 2]
    assert [t.name for t in again.figure.data][:1] == ["current best seed 0"]
    again.close()


async def test_status_line_shows_evaluations_in_flight_and_the_oldest_age(run: Run) -> None:
    slow = variant(run.task, SLEEP=0.25)  # 8 steps: 2 s
    job = asyncio.ensure_future(run.executor.submit(slow, seed=7))
    await asyncio.sleep(1.2)
    line = StatusLine(run)
    line.refresh()
    age = re.search(r"1 evaluating · oldest (\d+) s", line.line.value)
    assert age is not None and 1 <= int(age.group(1)) <= 3, line.line.value
    await job
    line.refresh()
    assert "evaluating" not in line.line.value
    line.close()


def test_status_html_ages() -> None:
    s = RunStatus(state="running", round=1, evaluations=3, attempts_per_s=1.0, best_score=None)
    assert "3 evaluating · oldest 4 min" in status_html(s, in_flight=3, oldest=250.0)
    assert "evaluating" not in status_html(s)
