"""Every exported figure, as a browser shows it: a screenshot of each in ``tests/artifacts``.

The figures are those the gallery (``scripts/gallery.py``) and ``notebooks/figures.ipynb``
export: a Cluster-Elites map, a grid map, the timeline (by evaluation and by wall time),
the archives' comparison and the best program's lineage, made from two real runs' stores
with the offline model. Each is exported to self-contained HTML
(:func:`aster_nb.figures.export`, plotly.js inlined, nothing from the network), opened in
Debian's Chromium through Playwright, and screenshotted; the page must have drawn data
in every figure and the PNG must be a real picture, not a blank page.
"""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .jupyter_support import CHROMIUM_ARGS, chromium_path
from .test_browser import artifacts_dir

REPO = Path(__file__).resolve().parents[1]
GALLERY = REPO / "scripts" / "gallery.py"
WORKER = "p0.w0"

pytestmark = [pytest.mark.browser(playwright=True), pytest.mark.timeout(300)]

# What plotly drew: the figure's traces and how many points they hold.
DRAWN = """() => {
  const gd = document.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullData || !gd.querySelector('.main-svg')) return null;
  return {traces: gd._fullData.length,
          points: gd._fullData.map(t => t._length || 0).reduce((a, b) => a + b, 0),
          title: (gd.querySelector('.gtitle') || {textContent: ''}).textContent};
}"""


def gallery_names() -> set[str]:
    """The figures the gallery script exports (its docstring's ``name.png`` table)."""
    return set(re.findall(r"``(\w+)\.png``", GALLERY.read_text()))


async def make_figures(tmp: Path) -> dict[str, Any]:
    """Two short runs (Cluster-Elites and grid), then every exported figure from the stores."""
    from aster_nb.figures import (
        archive_map_figure,
        comparison_figure,
        lineage_figure,
        timeline_figure,
    )
    from aster_nb.run import Run
    from aster_nb.snapshot import lineage, map_snapshot, timeline
    from aster_nb.store import Store

    stores = {}
    for kind in ("cluster", "grid"):
        path = tmp / f"{kind}.sqlite"
        async with await Run.create(
            "circle_packing",
            path=path,
            workers=1,
            agents=4,
            evaluations_per_round=24,
            archive=kind,
            seed=0,
        ) as run:
            for _ in range(2):
                await run.step()
        stores[kind] = Store(path)
    try:
        maps = {k: map_snapshot(s, WORKER) for k, s in stores.items()}
        lines = {k: timeline(s) for k, s in stores.items()}
        best = stores["cluster"].best()
        assert best is not None, "the cluster run stored no ok program"
        return {
            "map_cluster": archive_map_figure(maps["cluster"]),
            "map_grid": archive_map_figure(maps["grid"]),
            "timeline": timeline_figure(lines["cluster"]),
            "timeline_wall_time": timeline_figure(lines["cluster"], x="elapsed"),
            "comparison": comparison_figure(
                {"Cluster-Elites": maps["cluster"], "grid": maps["grid"]},
                {"Cluster-Elites": lines["cluster"].frame, "grid": lines["grid"].frame},
            ),
            "lineage": lineage_figure(lineage(stores["cluster"], best.id)),
        }
    finally:
        for s in stores.values():
            s.close()


def check_picture(png: bytes, name: str) -> dict[str, float]:
    """A real picture: a PNG of a figure's size with colours and ink, not a blank page."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    w, h = img.size
    assert w >= 400 and h >= 300, f"{name}: a {w}x{h} screenshot is too small for a figure"
    colours = len(img.getcolors(maxcolors=1 << 20) or [])
    rgb = np.asarray(img)
    ink = float((rgb.min(axis=2) < 200).mean())  # not white nor light grey
    # a blank page is one colour; plotly's empty axes with a title, a few dozen grey
    # levels and well under half a percent of ink (the sparsest figure here, a lineage
    # line, has about 0.9%): what the page drew is checked in the page (DRAWN)
    assert colours >= 32, f"{name}: {colours} colours: a blank or failed render"
    assert ink >= 0.005, f"{name}: {ink:.2%} of the pixels are drawn: an empty figure"
    return {"width": w, "height": h, "colours": colours, "ink": round(ink, 3)}


def test_every_exported_figure_screenshot(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from aster_nb.figures import export

    figures = asyncio.run(make_figures(tmp_path))
    # every figure the gallery exports is here (the notebook's timeline_wall_time too)
    assert gallery_names() <= set(figures), (gallery_names(), sorted(figures))
    shots = artifacts_dir()
    page_errors: list[str] = []
    seen: dict[str, dict[str, float]] = {}
    with sync_playwright() as p:
        # software WebGL: the maps' programs and the timelines are Scattergl traces
        args = [*CHROMIUM_ARGS, "--enable-unsafe-swiftshader"]
        browser = p.chromium.launch(executable_path=chromium_path(), args=args)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("pageerror", lambda e: page_errors.append(f"{e.name}: {e.message}"))
        page.route("http*://**", lambda route: route.abort())  # offline: a fetch fails the page
        try:
            for name, fig in figures.items():
                html = export(fig, tmp_path / f"{name}.html")
                page.goto(html.resolve().as_uri())
                page.wait_for_function(DRAWN, timeout=60_000, polling=200)
                drawn = page.evaluate(DRAWN)
                assert drawn["traces"] > 0 and drawn["points"] > 0, f"{name}: drew {drawn}"
                out = shots / f"figure-{name}.png"
                out.unlink(missing_ok=True)  # a stale file from an earlier run proves nothing
                page.locator(".js-plotly-plot").first.screenshot(path=out)
                seen[name] = check_picture(out.read_bytes(), name) | drawn
        finally:
            browser.close()
    assert not page_errors, f"errors in the figure pages: {page_errors}"
    assert {f"figure-{n}.png" for n in figures} <= {p.name for p in shots.glob("figure-*.png")}
    print(seen)
