"""SIGKILL a real run at random moments: nothing it reported is lost, and resume finishes it."""

from __future__ import annotations

import json
import random
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

ID = re.compile(r"program ([0-9a-f]{16})")


def _run_and_kill(cmd: list[str], after: float | None) -> tuple[int, str, str]:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if after is not None:
        try:
            p.wait(timeout=after)
        except subprocess.TimeoutExpired:
            p.kill()
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err


def _stored(store: Path, ids: set[str]) -> set[str]:
    with sqlite3.connect(store) as db:
        return {i for i in ids if db.execute("SELECT 1 FROM programs WHERE id=?", (i,)).fetchone()}


def test_sigkill_loses_nothing_and_resume_finishes(tmp_path: Path) -> None:
    rng = random.Random(20261130)
    base = [sys.executable, "-m", "aster_nb"]
    cmd = [
        *base,
        "run",
        "toy",
        "--workers",
        "2",
        "--agents",
        "3",
        "--rounds",
        "4",
        "--budget",
        "480",
        "--latency",
        "0.03",
        "--out",
        str(tmp_path),
    ]
    code, _, err = _run_and_kill(cmd, after=rng.uniform(1.5, 3.0))
    assert code == -9, f"the first run must be killed mid-run (exit {code}): {err[-500:]}"
    store = Path(re.search(r"store: (\S+)", err).group(1))
    reported = set(ID.findall(err))
    assert reported, "progress lines report program ids before the kill"
    assert _stored(store, reported) == reported

    kills = 1
    for _ in range(3):  # resume, and kill again at a random moment
        code, out, err = _run_and_kill([*base, "resume", str(store)], after=rng.uniform(0.8, 2.5))
        ids = set(ID.findall(err))
        assert _stored(store, ids) == ids, "a program reported before the kill is missing"
        kills += code == -9
        if code == 0:
            break
    assert kills >= 2, "at least two kills landed mid-run"

    code, out, err = _run_and_kill([*base, "resume", str(store)], after=None)
    assert code == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["rounds"] == 4 and summary["best_score"] > summary["initial_score"]
    assert summary["best_round"] in range(4), "best_round survives reopening"
    assert summary["store"] == str(store)
    with sqlite3.connect(store) as db:
        rounds = [r[0] for r in db.execute("SELECT round FROM rounds ORDER BY seq")]
        assert rounds == [0, 1, 2, 3], "each round finished once, in order"
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
