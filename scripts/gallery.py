"""The README's figure gallery, made from real runs with the offline model.

Runs ``--task`` (circle packing by default) twice with the same settings, once with
Cluster-Elites and once with a grid archive, ``--workers`` workers for ``--rounds`` rounds
of ``--budget`` evaluations each, then exports from the runs' stores alone (as a
write-up would) the figures of :mod:`aster_nb.figures`:

==========================  ===================================================================
``map_cluster.png``         a worker's Cluster-Elites map
``map_grid.png``            the grid archive's map: its every box, empty ones muted
``timeline.png``            best score per worker and overall, who set each new best, rounds,
                            merges, the task's target and record
``comparison.png``          both archives side by side on one color scale, and their curves
``lineage.png``             the ancestry of the best program
==========================  ===================================================================

and ``gallery.json``: the settings, each run's best score and evaluations, and the files.
PNGs are rendered by headless Chromium (:func:`aster_nb.figures.export`), offline.

Usage::

    python scripts/gallery.py [--out docs/gallery] [--task circle_packing] [--workers 2]
                              [--rounds 2] [--budget 60] [--agents 6] [--seed 0]
                              [--width 900] [--height 560] [--scale 1.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from aster_nb.figures import (
    archive_map_figure,
    comparison_figure,
    export,
    lineage_figure,
    timeline_figure,
)
from aster_nb.run import Run
from aster_nb.snapshot import lineage, map_snapshot, timeline
from aster_nb.store import Store
from aster_nb.task import Task

ARCHIVES = {"cluster": "Cluster-Elites", "grid": "grid"}
"""The archives run, and their names in the comparison."""
WORKER = "p0.w0"
"""The worker whose archive the maps show."""


async def run_once(
    task: str,
    archive: str,
    path: Path,
    *,
    workers: int,
    rounds: int,
    budget: int,
    agents: int,
    seed: int,
) -> None:
    """One run of ``task`` with ``archive``, stored at ``path``."""
    run = await Run.create(
        task,
        path=path,
        workers=workers,
        agents=agents,
        evaluations_per_round=budget,
        archive=archive,
        seed=seed,
    )
    try:
        for _ in range(rounds):
            await run.step()
    finally:
        await run.close()


async def make_gallery(
    out: Path,
    *,
    task: str = "circle_packing",
    workers: int = 2,
    rounds: int = 2,
    budget: int = 60,
    agents: int = 6,
    seed: int = 0,
    width: int = 900,
    height: int = 560,
    scale: float = 1.5,
) -> dict[str, Any]:
    """Run, export every figure into ``out`` and return what ``gallery.json`` holds."""
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "task": task,
        "workers": workers,
        "rounds": rounds,
        "evaluations_per_round": budget,
        "agents": agents,
        "seed": seed,
        "model": "offline",
    }
    with tempfile.TemporaryDirectory(prefix="aster-gallery-") as tmp:
        stores = {}
        for kind in ARCHIVES:
            path = Path(tmp) / f"{kind}.sqlite"
            await run_once(
                task,
                kind,
                path,
                workers=workers,
                rounds=rounds,
                budget=budget,
                agents=agents,
                seed=seed,
            )
            stores[kind] = Store(path)
        try:
            # from the stores alone, as figures for a write-up are made after a run
            maps = {kind: map_snapshot(s, WORKER) for kind, s in stores.items()}
            lines = {kind: timeline(s) for kind, s in stores.items()}
            best = stores["cluster"].best()
            assert best is not None, "the run stored no ok program"
            figures = {
                "map_cluster": archive_map_figure(maps["cluster"]),
                "map_grid": archive_map_figure(maps["grid"]),
                "timeline": timeline_figure(lines["cluster"], title=f"Best score · {task}"),
                "comparison": comparison_figure(
                    {ARCHIVES[k]: s for k, s in maps.items()},
                    {ARCHIVES[k]: tl.frame for k, tl in lines.items()},
                    title=f"Archives compared · {task} · {WORKER}",
                ),
                "lineage": lineage_figure(
                    lineage(stores["cluster"], best.id),
                    score_label=Task.load(task).score_description or "score",
                ),
            }
            files = {}
            for name, fig in figures.items():
                # the comparison is as wide as its panels need; a map's box is square, so
                # its figure is about as tall as wide; the others share one size
                size = {"width": width, "height": height}
                if name == "comparison":
                    size = {}
                elif name.startswith("map"):
                    size = {"width": round(height * 1.2), "height": round(height * 1.15)}
                path = export(fig, out / f"{name}.png", scale=scale, **size)
                files[name] = path.name
            runs = {
                kind: {
                    "best": float(tl.frame["best"].max()),
                    "evaluations": len(tl.frame),
                    "cells": maps[kind].cells_total,
                    "cells_filled": maps[kind].cells_filled,
                }
                for kind, tl in lines.items()
            }
        finally:
            for s in stores.values():
                s.close()
    summary = {"settings": settings, "runs": runs, "files": files}
    (out / "gallery.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--out", type=Path, default=Path("docs/gallery"))
    ap.add_argument("--task", default="circle_packing")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--budget", type=int, default=60, help="evaluations per worker per round")
    ap.add_argument("--agents", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=900)
    ap.add_argument("--height", type=int, default=560)
    ap.add_argument("--scale", type=float, default=1.5)
    a = ap.parse_args(argv)
    summary = asyncio.run(
        make_gallery(
            a.out,
            task=a.task,
            workers=a.workers,
            rounds=a.rounds,
            budget=a.budget,
            agents=a.agents,
            seed=a.seed,
            width=a.width,
            height=a.height,
            scale=a.scale,
        )
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
