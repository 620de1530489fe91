"""The quick-start notebook in a real JupyterLab, driven by Playwright in Debian's Chromium.

Runs all cells, then checks in the page that the live dashboard drew the archive map, the
timeline, the handoff feed and the best diff; clicks Pause and sees the status change;
edits a worker's goal, clicks Apply and finds that goal, set by the researcher, in the
run's SQLite store. Screenshots go to ``$ASTER_NB_ARTIFACTS`` (default ``tests/artifacts``).
Everything is local: the widget front-ends (ipywidgets, plotly's FigureWidget, our
anywidgets) must load without network, and any widget error in the page fails the test.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .jupyter_support import (
    Lab,
    jupyter_lab,
    lab_page,
    notebook_lab,
    run_all_cells,
)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "quick_start.ipynb"
WORKER = "p0.w0"
EDITOR = ".aster-goal-" + WORKER.replace(".", "-")

# Generous: CI has 2 cores shared by the kernel, its sandbox, the server and Chromium.
PAGE_TIMEOUT_MS = 60_000
CONTENT_TIMEOUT_MS = 120_000

pytestmark = [
    # skipped without chromium or Playwright, failed under `make test` (see conftest.py)
    pytest.mark.browser(playwright=True),
    pytest.mark.timeout(240),
]

# A widget front-end that failed to load or render says so in the console ("Failed to load
# model class", "Error displaying widget", "[anywidget] ...", plotly errors, ...).
WIDGET_ERROR_WORDS = ("widget", "model class", "plotly", "comm")


def artifacts_dir() -> Path:
    d = Path(os.environ.get("ASTER_NB_ARTIFACTS") or REPO / "tests" / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    root = tmp_path / "lab"
    root.mkdir()
    assert NOTEBOOK.is_file(), f"the browser test opens {NOTEBOOK}, which does not exist"
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    with jupyter_lab(root) as server:
        yield server


def researcher_goals(root: Path, worker: str) -> list[str]:
    """Goals of ``worker`` set by the researcher, read from the run's store (read-only)."""
    stores = sorted(glob.glob(str(root / "runs" / "*.sqlite")))
    assert len(stores) <= 1, f"the notebook should make one run store, found {stores}"
    if not stores:
        return []
    db = sqlite3.connect(f"file:{stores[0]}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute(
            "SELECT goal FROM goals WHERE worker = ? AND set_by = 'researcher' ORDER BY seq",
            (worker,),
        ).fetchall()
    finally:
        db.close()
    return [r[0] for r in rows]


# Predicates evaluated in the page (each returns true once the view has real content).
MAP_FILLED = """() => {
  const paths = document.querySelectorAll('.aster-archive-map .js-plotly-plot path.js-fill');
  return [...paths].some(p => (p.getAttribute('d') || '').split('L').length > 3);
}"""
TIMELINE_LINES = """() => {
  const gd = document.querySelector('.aster-timeline .js-plotly-plot');
  if (!gd || !gd._fullData) return false;
  const drawn = gd.querySelector('path.js-line') || gd.querySelector('canvas');
  return !!drawn && gd._fullData.some(
    t => t.visible === true && String(t.mode || '').includes('lines') && (t._length || 0) >= 2);
}"""
HANDOFFS = """() => [...document.querySelectorAll('.aster-handoffs .aster-handoff')]
  .some(h => h.innerText.trim().length > 0)"""
DIFF_LINES = """() => {
  const body = document.querySelector('.aster-diff .aster-diff-body');
  if (!body) return false;
  const lines = body.innerText.split('\\n');
  return lines.some(l => /^[+-]/.test(l) && !/^(\\+\\+\\+|---)/.test(l));
}"""
# JupyterLab renders an error output as stderr text: tell a traceback from a warning.
CELL_ERRORS = """(() => [...document.querySelectorAll(
    ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")]
  .map(o => o.innerText)
  .filter(t => /Traceback \\(most recent call last\\)|^(\\w+\\.)*\\w*(Error|Exception|Interrupt)\\b/m.test(t)))()"""
STATUS_TEXT = "() => (document.querySelector('.aster-status') || {innerText: ''}).innerText"
# What each plotly figure in the dashboard holds: a FigureWidget whose model never got its
# state shows empty default axes with no trace and no title.
FIGURES = """() => [...document.querySelectorAll('.aster-dashboard .js-plotly-plot')].map(gd => ({
  view: (gd.closest('.aster-archive-map') ? 'archive map' : '') +
        (gd.closest('.aster-timeline') ? 'timeline' : ''),
  traces: (gd.data || []).length,
  points: (gd._fullData || []).map(t => t._length || 0).reduce((a, b) => a + b, 0),
  title: (gd.querySelector('.gtitle') || {textContent: null}).textContent,
}))"""
EMPTY_FIGURE_HINT = (
    "a dashboard figure has no trace at all: its FigureWidget model never received its "
    "state. anywidget (0.9-0.11) rejects a model whose ESM takes over 2 s to load and then "
    "silently drops every later update to it; plotly's FigureWidget ESM is a 5 MB bundle "
    "(1.7-2.6 s to import in this Chromium on a loaded 2-core machine) and sends the figure "
    "as updates after the comm opened. Fix in aster_nb/ui: a FigureWidget whose _esm is a "
    "small wrapper that imports plotly's bundle once per page inside render()."
)


def test_quick_start_in_jupyterlab(lab: Lab) -> None:
    shots = artifacts_dir()
    goal = f"Researcher goal {os.getpid()}-{time.time_ns()}: shrink the largest circle first."

    with lab_page(lab, viewport=(1600, 1800), timeout_ms=PAGE_TIMEOUT_MS) as (
        page,
        page_errors,
        console_errors,
    ):

        def wait_for(what: str, predicate: str, timeout: int = CONTENT_TIMEOUT_MS) -> None:
            try:
                page.wait_for_function(predicate, timeout=timeout, polling=250)
            except Exception as e:
                page.screenshot(path=shots / "browser-failure.png")
                try:
                    figs, status = page.evaluate(FIGURES), page.evaluate(STATUS_TEXT)
                    cells = page.evaluate(CELL_ERRORS)
                except Exception as probe:  # a crashed page still deserves the first error
                    figs, status, cells = [], f"(page not readable: {probe})", []
                hint = EMPTY_FIGURE_HINT if any(f["traces"] == 0 for f in figs) else ""
                raise AssertionError(
                    f"{what} did not appear within {timeout / 1000:.0f} s. {hint}\n"
                    f"status: {status!r}\nfigures: {figs}\n"
                    f"cell errors: {cells}\npage errors: {page_errors}\nconsole errors: {console_errors[-5:]}\n"
                    f"screenshot: {shots / 'browser-failure.png'}\n"
                    f"server log:\n{lab.log_tail(30)}"
                ) from e

        run_all_cells(page, lab, NOTEBOOK.name)

        wait_for(
            "the dashboard (.aster-dashboard) or a cell error",
            f"() => !!document.querySelector('.aster-dashboard') || ({CELL_ERRORS}).length",
        )
        assert not (tracebacks := page.evaluate(CELL_ERRORS)), f"a cell raised: {tracebacks}"
        wait_for("filled cells in the archive map", MAP_FILLED)
        wait_for("score lines in the timeline", TIMELINE_LINES)
        wait_for("a handoff with text in the handoff feed", HANDOFFS)
        wait_for("diff lines in the best-program diff", DIFF_LINES)
        dashboard = page.locator(".aster-dashboard")
        page.screenshot(path=shots / "browser-1-rendered.png", full_page=True)
        dashboard.screenshot(path=shots / "browser-1-dashboard.png")

        state = page.evaluate(STATUS_TEXT)
        assert "running" in state, (
            f"the run should still be running when the dashboard has content, to test "
            f"Pause; status: {state!r} (the quick-start notebook must run more rounds)"
        )
        page.click(".aster-btn-pause")
        wait_for(
            "'paused' in the status line after clicking Pause",
            f"() => ({STATUS_TEXT})().includes('paused')",
            timeout=PAGE_TIMEOUT_MS,
        )
        page.screenshot(path=shots / "browser-2-paused.png", full_page=True)

        page.fill(f"{EDITOR} textarea", goal)
        page.click(f"{EDITOR} .aster-goal-apply")
        deadline = time.monotonic() + 30
        while goal not in (found := researcher_goals(lab.root, WORKER)):
            assert time.monotonic() < deadline, (
                f"after Apply, the store has no goal {goal!r} set by the researcher for "
                f"{WORKER}; researcher goals: {found}"
            )
            time.sleep(0.25)
        wait_for(
            f"'researcher' in {WORKER}'s goal editor after Apply",
            f"() => document.querySelector('{EDITOR}').innerText.includes('researcher')",
            timeout=PAGE_TIMEOUT_MS,
        )
        page.screenshot(path=shots / "browser-3-goal-applied.png", full_page=True)
        dashboard.screenshot(path=shots / "browser-3-dashboard.png")

        # What the page shows as errors: cell tracebacks, the dashboard's error area,
        # widgets that could not be displayed.
        assert not (tracebacks := page.evaluate(CELL_ERRORS)), f"a cell raised: {tracebacks}"
        shown = [t for t in page.locator(".aster-errors").all_inner_texts() if t.strip()]
        assert not shown, f"the dashboard shows errors: {shown}"
        body = page.inner_text("body")
        assert "Error displaying widget" not in body, "a widget could not be displayed"

    assert not page_errors, f"uncaught errors in the page: {page_errors}"
    widget_errors = [m for m in console_errors if any(w in m.lower() for w in WIDGET_ERROR_WORDS)]
    assert not widget_errors, f"widget front-end errors in the browser console: {widget_errors}"


# -- the grid map's geometry, read from the rendered page --------------------------------------

GRID_NOTEBOOK = "grid_map.ipynb"
GRID_CELLS = (
    "from aster_nb.run import Run\nfrom aster_nb.ui import Dashboard\n\n"
    'run = await Run.create("circle_packing", workers=1, agents=4, evaluations_per_round=48,'
    ' archive="grid", seed=0)\nawait run.step()',
    "dashboard = Dashboard(run)\ndashboard",
)
# The archive map's plotly graph div as drawn: its traces' data (typed arrays arrive
# base64-encoded as {dtype, bdata} or already decoded), split into rings at the NaN gaps,
# and where the title and the toolbar are on the page.
MAP_DATA = """() => {
  const gd = document.querySelector('.aster-archive-map .js-plotly-plot');
  if (!gd || !gd.data || gd.data.length < 4) return null;
  const types = {f4: Float32Array, f8: Float64Array, i4: Int32Array, u4: Uint32Array,
                 i2: Int16Array, u2: Uint16Array, i1: Int8Array, u1: Uint8Array};
  const arr = v => {
    if (v == null) return [];
    if (Array.isArray(v)) return v;
    if (ArrayBuffer.isView(v)) return Array.from(v);
    if (v.bdata !== undefined) {
      const bin = atob(v.bdata), bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      return Array.from(new types[v.dtype](bytes.buffer));
    }
    return [];
  };
  const rings = t => {
    const xs = arr(t.x), ys = arr(t.y), out = [[]];
    xs.forEach((x, i) => {
      if (x === null || Number.isNaN(x)) out.push([]); else out[out.length - 1].push([x, ys[i]]);
    });
    return out.filter(r => r.length);
  };
  const n = gd.data.length, bins = n - 3, pts = gd.data[bins + 1], cen = gd.data[bins + 2];
  const box = el => { if (!el) return null; const r = el.getBoundingClientRect();
                      return [r.left, r.top, r.right, r.bottom]; };
  return {
    filled: gd.data.slice(0, bins).map(rings).flat(),
    empty: rings(gd.data[bins]),
    px: arr(pts.x), py: arr(pts.y), pid: arr(pts.customdata),
    cx: arr(cen.x), cy: arr(cen.y), cid: arr(cen.customdata),
    title: (gd.layout.title || {}).text || '',
    titleBox: box(gd.querySelector('.gtitle')),
    modebarBox: box(gd.querySelector('.modebar')),
    figureBox: box(gd),
    titleLayout: JSON.stringify((gd._fullLayout || {}).title || null),
  };
}"""


def point_in_ring(ring: list[list[float]], x: float, y: float, tol: float = 1e-6) -> bool:
    """Whether (x, y) lies in the convex ring (closed: first vertex repeated), up to ``tol``
    of its size."""
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    size = (max(xs) - min(xs)) * (max(ys) - min(ys)) or 1.0
    cross = [
        (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0]) for a, b in itertools.pairwise(ring)
    ]
    return all(c >= -tol * size for c in cross) or all(c <= tol * size for c in cross)


def check_grid_geometry(drawn: dict) -> dict[str, int]:
    """Every elite's point lies inside the box drawn for its cell, every box of the 10 x 10
    grid is drawn once, and the title counts the archive's cells; returns the counts."""
    elites = [
        (x, y, i) for x, y, i in zip(drawn["cx"], drawn["cy"], drawn["cid"], strict=True) if i
    ]
    point = {i: (x, y) for x, y, i in zip(drawn["px"], drawn["py"], drawn["pid"], strict=True)}
    assert len(drawn["filled"]) == len(elites) > 1, (
        f"{len(drawn['filled'])} filled boxes drawn for {len(elites)} elites"
    )
    assert len(drawn["filled"]) + len(drawn["empty"]) == 100, "a 10 x 10 grid draws 100 boxes"
    for cx, cy, elite in elites:
        (box,) = [r for r in drawn["filled"] if point_in_ring(r, cx, cy, -1e-6)]
        assert elite in point, f"elite {elite} is not among the map's points"
        assert point_in_ring(box, *point[elite]), (
            f"elite {elite} at {point[elite]} lies outside its box {box}"
        )
    assert f"{len(elites)}/100 cells filled" in drawn["title"], drawn["title"]
    return {"elites": len(elites), "boxes": len(drawn["filled"]) + len(drawn["empty"])}


def overlap(a: list[float] | None, b: list[float] | None) -> bool:
    if a is None or b is None:
        return False
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.fixture
def grid_lab(tmp_path: Path) -> Iterator[Lab]:
    with notebook_lab(tmp_path, GRID_NOTEBOOK, GRID_CELLS) as server:
        yield server


def test_grid_map_geometry_in_jupyterlab(grid_lab: Lab) -> None:
    """A grid run's dashboard in a real JupyterLab: the map's plotly data as the page has
    it puts every elite inside the box drawn for its cell, draws all 100 boxes, counts the
    archive's cells in its title, and the toolbar does not cover the title."""
    shots = artifacts_dir()
    with lab_page(grid_lab, viewport=(1400, 1600)) as (page, page_errors, _):
        run_all_cells(page, grid_lab, GRID_NOTEBOOK)
        try:
            page.wait_for_function(
                f"() => ({MAP_FILLED})() || ({CELL_ERRORS}).length",
                timeout=CONTENT_TIMEOUT_MS,
                polling=250,
            )
        except Exception as e:
            page.screenshot(path=shots / "browser-grid-failure.png", full_page=True)
            raise AssertionError(
                f"the grid run's map did not fill; page errors: {page_errors}\n"
                f"server log:\n{grid_lab.log_tail(30)}"
            ) from e
        assert not (tracebacks := page.evaluate(CELL_ERRORS)), f"a cell raised: {tracebacks}"
        drawn = page.evaluate(MAP_DATA)
        assert drawn is not None, "no archive map graph div with its traces in the page"
        counts = check_grid_geometry(drawn)
        # the toolbar shows on hover; it must sit above the title, not on it
        page.hover(".aster-archive-map .js-plotly-plot .nsewdrag")
        page.wait_for_timeout(300)
        drawn = page.evaluate(MAP_DATA)
        assert drawn["modebarBox"] is not None and drawn["titleBox"] is not None
        assert not overlap(drawn["modebarBox"], drawn["titleBox"]), (
            f"the toolbar {drawn['modebarBox']} covers the title {drawn['titleBox']} "
            f"(figure {drawn['figureBox']}, title layout {drawn['titleLayout']})"
        )
        page.locator(".aster-archive-map").screenshot(path=shots / "browser-grid-map.png")
        page.locator(".aster-dashboard").screenshot(path=shots / "browser-grid-dashboard.png")
    assert not page_errors, f"uncaught errors in the page: {page_errors}"
    assert counts["boxes"] == 100


# -- steering by explicit areas, from the goal editor's checkboxes -----------------------------

STEER_NOTEBOOK = "steer_areas.ipynb"
STEER_CELLS = (
    "from aster_nb.run import Run\nfrom aster_nb.ui import Dashboard\n\n"
    'run = await Run.create("circle_packing", workers=1, agents=2, evaluations_per_round=40,'
    " latency=0.02, seed=0)",
    # paused before its first attempt: every attempt the test reads follows the steer
    "runner = run.start(rounds=1)\nrun.pause()\ndashboard = Dashboard(run)\ndashboard",
)
AREA_EDITOR = ".aster-goal-p0-w0"


def steered_attempts(root: Path) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """The researcher's goals of p0.w0 as ``(areas, areas_by)`` and the areas edited by
    the attempts that started after the last of them, read from the run's store."""
    import json

    (store,) = glob.glob(str(root / "*.sqlite")) or glob.glob(str(root / "runs" / "*.sqlite"))
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
    try:
        goals = db.execute(
            "SELECT areas, areas_by, at FROM goals WHERE worker='p0.w0' AND set_by='researcher'"
            " ORDER BY seq"
        ).fetchall()
        if not goals:
            return [], []
        rows = db.execute(
            "SELECT areas FROM attempts WHERE worker='p0.w0' AND program_id IS NOT NULL"
            " AND started > ? ORDER BY n",
            (goals[-1][2],),
        ).fetchall()
    finally:
        db.close()
    return [(g[0], g[1]) for g in goals], [json.loads(r[0]) for r in rows]


@pytest.fixture
def steer_lab(tmp_path: Path) -> Iterator[Lab]:
    with notebook_lab(tmp_path, STEER_NOTEBOOK, STEER_CELLS) as server:
        yield server


def test_steer_by_area_checkboxes_in_jupyterlab(steer_lab: Lab) -> None:
    """In a real JupyterLab: untick every area but `refine` in the goal editor, Apply,
    Resume; the store records the researcher's areas, the attempts after the steer edit only
    `refine`, and the editor shows the resolved areas. Then replay to evaluation 0: the
    banner says REPLAY, the dashboard is marked, the handoff feed is empty, the goal editor
    shows the goal of then, read-only, and the diff the best of then; live restores."""
    shots = artifacts_dir()
    with lab_page(steer_lab, viewport=(1400, 1600)) as (page, page_errors, _):
        run_all_cells(page, steer_lab, STEER_NOTEBOOK)
        page.wait_for_function(
            f"() => !!document.querySelector('{AREA_EDITOR} .aster-goal-area-refine input')"
            f" || ({CELL_ERRORS}).length",
            timeout=CONTENT_TIMEOUT_MS,
            polling=250,
        )
        assert not (tracebacks := page.evaluate(CELL_ERRORS)), f"a cell raised: {tracebacks}"
        shown = page.inner_text(f"{AREA_EDITOR} .aster-goal-areas")
        assert "layout, radii, refine" in shown, f"before: every area, got {shown!r}"
        page.uncheck(f"{AREA_EDITOR} .aster-goal-area-layout input")
        page.uncheck(f"{AREA_EDITOR} .aster-goal-area-radii input")
        page.fill(f"{AREA_EDITOR} textarea", "Refine harder; keep the `layout` code as is.")
        page.click(f"{AREA_EDITOR} .aster-goal-apply")
        page.wait_for_function(
            f"() => document.querySelector('{AREA_EDITOR} .aster-goal-areas')"
            ".innerText.includes('areas: refine (chosen by researcher)')",
            timeout=PAGE_TIMEOUT_MS,
        )
        page.click(".aster-btn-pause")  # Resume
        deadline = time.monotonic() + CONTENT_TIMEOUT_MS / 1000
        while len((found := steered_attempts(steer_lab.root))[1]) < 6:
            assert time.monotonic() < deadline, f"too few attempts after the steer: {found}"
            time.sleep(0.5)
        goals, edited = found
        assert goals[-1] == ('["refine"]', "researcher"), goals
        assert all(set(a) <= {"refine"} for a in edited), f"edits outside refine: {edited}"
        assert sum(a == ["refine"] for a in edited) >= 3, edited
        page.locator(AREA_EDITOR).screenshot(path=shots / "browser-steer-areas.png")

        # Replay: back to evaluation 0, before the round's handoff, the feed is empty and
        # a banner says the dashboard shows the past; live brings both back.
        page.wait_for_function(HANDOFFS, timeout=CONTENT_TIMEOUT_MS, polling=250)
        readout = page.locator(".aster-replay .widget-readout")
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type("0")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => { const b = document.querySelector('.aster-replay-banner');"
            " return b && b.offsetParent !== null && b.innerText.includes('REPLAY')"
            " && b.innerText.includes('after evaluation 0 of'); }",
            timeout=PAGE_TIMEOUT_MS,
        )
        page.wait_for_function(f"() => !({HANDOFFS})()", timeout=PAGE_TIMEOUT_MS)
        assert "aster-replaying" in (page.get_attribute(".aster-dashboard", "class") or "")
        # the whole dashboard: the goals as then, read-only, and the best as then
        page.wait_for_function(
            "() => (document.querySelector('.aster-diff-title') || {innerText: ''})"
            ".innerText.includes('as after evaluation 0')",
            timeout=PAGE_TIMEOUT_MS,
        )
        assert page.is_disabled(f"{AREA_EDITOR} textarea"), "the past cannot be steered"
        past_goal = page.input_value(f"{AREA_EDITOR} textarea")
        assert "Refine harder" not in past_goal, f"replay shows the later steer: {past_goal!r}"
        page.locator(".aster-dashboard").screenshot(path=shots / "browser-replay.png")
        page.check(".aster-replay input[type=checkbox]")  # live
        page.wait_for_function(HANDOFFS, timeout=PAGE_TIMEOUT_MS)
        page.wait_for_function(
            "() => { const b = document.querySelector('.aster-replay-banner');"
            " return !b || b.offsetParent === null; }",
            timeout=PAGE_TIMEOUT_MS,
        )
        page.wait_for_function(
            f"() => !document.querySelector('{AREA_EDITOR} textarea').disabled",
            timeout=PAGE_TIMEOUT_MS,
        )
        now = page.input_value(f"{AREA_EDITOR} textarea")
        assert "Refine harder" in now, f"live shows the researcher's goal again: {now!r}"
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


# -- forking a run from a clicked cell ---------------------------------------------------------

FORK_NOTEBOOK = "fork_cell.ipynb"
FORK_CELLS = (
    "from aster_nb.run import Run\nfrom aster_nb.ui import Dashboard\n\n"
    'run = await Run.create("circle_packing", workers=1, agents=4, evaluations_per_round=32,'
    ' archive="grid", seed=1)\nawait run.step()',
    "dashboard = Dashboard(run, rounds=1)\ndashboard",
)
# Where the first elite's cell centre is drawn, in page pixels (plotly's own axis maps).
ELITE_CENTRE = """() => {
  const gd = document.querySelector('.aster-archive-map .js-plotly-plot');
  if (!gd || !gd._fullLayout || !gd.data) return null;
  const cen = gd._fullData[gd._fullData.length - 1];
  const ids = Array.from(cen.customdata || []);
  const i = ids.findIndex(Boolean);
  if (i < 0) return null;
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
  return {x: r.left + xa._offset + xa.l2p(cen.x[i]), y: r.top + ya._offset + ya.l2p(cen.y[i]),
          id: ids[i]};
}"""

SITE_ROWS = """() => {
  const t = document.querySelector('.aster-handoffs .aster-handoff details[open] .aster-handoff-sites');
  return !!t && t.querySelectorAll('tr').length >= 2 && t.offsetParent !== null;
}"""


def fork_store(root: Path) -> tuple[Path, Path | None]:
    """The parent's store and the fork's (``None`` before the fork exists), in runs/."""
    stores = sorted(Path(p) for p in glob.glob(str(root / "runs" / "*.sqlite")))
    forks = [p for p in stores if "-fork-" in p.name]
    parents = [p for p in stores if "-fork-" not in p.name]
    assert len(parents) == 1 and len(forks) <= 1, f"expected one run and one fork: {stores}"
    return parents[0], forks[0] if forks else None


def read_fork(path: Path) -> tuple[dict, list[tuple[str, str]]]:
    """The fork link (meta 'fork') and the programs ``(id, origin)`` in storage order."""
    import json

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        (link,) = db.execute("SELECT value FROM meta WHERE key='fork'").fetchone()
        rows = db.execute("SELECT id, origin FROM programs ORDER BY seq").fetchall()
    finally:
        db.close()
    return json.loads(link), [(r[0], r[1]) for r in rows]


@pytest.fixture
def fork_lab(tmp_path: Path) -> Iterator[Lab]:
    with notebook_lab(tmp_path, FORK_NOTEBOOK, FORK_CELLS) as server:
        yield server


def test_fork_from_a_clicked_cell_in_jupyterlab(fork_lab: Lab) -> None:
    """In a real JupyterLab: the round's handoff shows its report's by-site table. Click an
    elite's cell centre on the map, the panel shows that
    program; click "fork from this program": a new store appears beside the run's, linked
    to it and to the program; "start the fork" runs its round, whose first program is the
    clicked one."""
    shots = artifacts_dir()
    with lab_page(fork_lab, viewport=(1400, 1600)) as (page, page_errors, _):
        run_all_cells(page, fork_lab, FORK_NOTEBOOK)
        page.wait_for_function(
            f"() => ({ELITE_CENTRE})() || ({CELL_ERRORS}).length",
            timeout=CONTENT_TIMEOUT_MS,
            polling=250,
        )
        assert not (tracebacks := page.evaluate(CELL_ERRORS)), f"a cell raised: {tracebacks}"
        # the round's handoff shows its report: the by-site table, open on the newest
        page.wait_for_function(SITE_ROWS, timeout=CONTENT_TIMEOUT_MS, polling=250)
        page.locator(".aster-handoffs").screenshot(path=shots / "browser-handoff-report.png")
        page.locator(".aster-archive-map").scroll_into_view_if_needed()
        centre = page.evaluate(ELITE_CENTRE)
        # plotly takes a click from its hover state: move there first, then click
        page.mouse.move(centre["x"], centre["y"])
        page.wait_for_timeout(300)
        page.mouse.click(centre["x"], centre["y"])
        page.wait_for_function(
            "() => !!document.querySelector('.aster-elite code')"
            " && !document.querySelector('button.aster-fork').disabled",
            timeout=PAGE_TIMEOUT_MS,
        )
        # plotly hands the click to the closest point: this centre, or a program on it
        clicked = page.inner_text(".aster-elite code")
        assert len(clicked) == 16, f"the elite panel shows no program id: {clicked!r}"
        page.locator(".aster-archive-map").screenshot(path=shots / "browser-fork-clicked.png")
        page.click("button.aster-fork")
        page.wait_for_function(
            "() => (document.querySelector('.aster-fork-result') || {innerText: ''})"
            ".innerText.includes('forked from')",
            timeout=CONTENT_TIMEOUT_MS,
        )
        shown = page.inner_text(".aster-fork-path")
        parent, child = fork_store(fork_lab.root)
        assert child is not None and child.name == Path(shown).name, (shown, child)
        link, programs = read_fork(child)
        assert link["parent_program"] == clicked, link
        assert Path(link["parent_run"]) == parent.resolve(), link
        page.click("button.aster-fork-start")
        deadline = time.monotonic() + CONTENT_TIMEOUT_MS / 1000
        while not programs:
            assert time.monotonic() < deadline, "the started fork stored no program"
            time.sleep(0.5)
            programs = read_fork(child)[1]
        assert programs[0] == (clicked, "initial"), programs[:3]
        page.locator(".aster-archive-map").screenshot(path=shots / "browser-fork.png")
        assert not [t for t in page.locator(".aster-errors").all_inner_texts() if t.strip()]
    assert not page_errors, f"uncaught errors in the page: {page_errors}"
