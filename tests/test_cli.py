"""The command line, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "task",
    "initial_score",
    "best_score",
    "evaluations",
    "failed",
    "archive",
    "coverage",
    "cells",
    "store",
}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aster_nb", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_tasks_lists_builtins(tmp_path: Path) -> None:
    r = _cli("tasks", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("circle_packing", "erdos_min_overlap", "toy"):
        assert name in r.stdout
    assert "- layout:" in r.stdout, "surface areas are listed with their descriptions"


def test_run_ends_with_a_json_line(tmp_path: Path) -> None:
    r = _cli(
        "run",
        "toy",
        "--budget",
        "30",
        "--agents",
        "3",
        "--out",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(summary) >= KEYS
    assert summary["evaluations"] == 30 and summary["coverage"] == 1.0
    assert summary["best_score"] > summary["initial_score"]
    assert Path(summary["store"]).is_file()
    assert "evals" in r.stderr and "best" in r.stderr, "progress goes to stderr while it runs"


def test_task_folder_path_and_bad_input(tmp_path: Path) -> None:
    r = _cli(
        "run",
        str(ROOT / "aster_nb" / "tasks" / "toy"),
        "--budget",
        "5",
        "--agents",
        "2",
        "--quiet",
        "--archive",
        "greedy",
        "--out",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["archive"] == "greedy"
    bad = _cli("run", "no_such_task", cwd=tmp_path)
    assert bad.returncode == 2 and "expected a built-in name" in bad.stderr
    bad = _cli("run", "toy", "--budget", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "--budget must be >= 1" in bad.stderr


def test_planners_workers_agents_end_to_end(tmp_path: Path) -> None:
    import sqlite3

    r = _cli(
        "run",
        "toy",
        "--planners",
        "2",
        "--workers",
        "4",
        "--agents",
        "8",
        "--rounds",
        "2",
        "--budget",
        "320",
        "--out",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["rounds"] == 2 and s["planners"] == 2 and s["workers"] == 8
    assert s["best_round"] in (0, 1) and s["best_score"] > s["initial_score"]
    assert "round 1 done" in r.stderr
    with sqlite3.connect(s["store"]) as db:
        rows = db.execute("SELECT origin, planner, worker FROM programs").fetchall()
    assert all(p for _, p, _ in rows), "every program names its planner"
    edits = [(p, w) for o, p, w in rows if o == "edit"]
    assert {w for _, w in edits} == {f"p{j}.w{i}" for j in range(2) for i in range(4)}
    assert all(w.startswith(p + ".") for p, w in edits)


def test_resume_errors(tmp_path: Path) -> None:
    r = _cli("resume", str(tmp_path / "missing.sqlite"), cwd=tmp_path)
    assert r.returncode == 2 and "no run store" in r.stderr


def test_claude_model_through_the_sdk_env_vars(tmp_path: Path) -> None:
    """--model claude-… uses the real SDK, which reads ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL."""
    import os

    key = "sk-ant-api03-" + "Kx9" * 12 + "-CLITEST"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.messages_server", "--offline", "--lifetime", "120"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = json.loads(server.stdout.readline())["url"]
        env = {**os.environ, "ANTHROPIC_API_KEY": key, "ANTHROPIC_BASE_URL": url}
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "aster_nb",
                "run",
                "toy",
                "--model",
                "claude-haiku-4-5",
                "--workers",
                "2",
                "--rounds",
                "2",
                "--budget",
                "40",
                "--agents",
                "3",
                "--max-usd",
                "2",
                "--out",
                str(tmp_path),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["model"] == "claude-haiku-4-5" and 0 < s["usd"] <= 2 and s["tokens"] > 0
    assert s["best_score"] > s["initial_score"], "real edits came back through HTTP"
    assert key not in r.stdout and key not in r.stderr
    for f in tmp_path.glob("*.sqlite*"):
        assert key.encode() not in f.read_bytes(), f"the key reached {f.name}"


def test_unordered_is_accepted_stored_and_kept_on_resume(tmp_path: Path) -> None:
    import sqlite3

    r = _cli("run", "toy", "--unordered", "--budget", "12", "--agents", "3", "--quiet",
             "--out", str(tmp_path), cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["evaluations"] == 12 and {"isolation", "network"} <= set(s)

    def meta(key: str) -> object:
        with sqlite3.connect(s["store"]) as db:
            (value,) = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(value)

    assert meta("ordered") is False and meta("isolation") == s["isolation"]
    again = _cli("resume", s["store"], "--rounds", "1", "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert meta("ordered") is False, "a resumed run keeps its ordering"


def test_a_seed_fixes_every_field_of_the_json_line_but_timings_and_surplus(
    tmp_path: Path,
) -> None:
    # Different model latencies and evaluation concurrency change how many surplus attempts
    # are under way when a round's budget is met, and so what their (billed) calls spent;
    # that is reported apart, in discarded*, and nothing else may change.
    lines = []
    for latency, concurrency in (("0", "1"), ("0.02", "2")):
        r = _cli(
            "run", "toy", "--workers", "2", "--agents", "4", "--rounds", "2", "--budget", "24",
            "--seed", "3", "--latency", latency, "--concurrency", concurrency,
            "--out", str(tmp_path / latency), "--quiet",
            cwd=tmp_path,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        lines.append(json.loads(r.stdout.strip().splitlines()[-1]))
    timing = {"seconds", "store", "discarded", "discarded_tokens", "discarded_usd"}
    a, b = ({k: v for k, v in s.items() if k not in timing} for s in lines)
    assert a == b
    assert a["tokens"] > 0 and all(s["discarded_tokens"] >= 0 for s in lines)
