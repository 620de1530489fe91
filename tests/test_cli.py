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
    # the budget's 30 new programs and the initial one (one worker: nothing to merge)
    assert summary["evaluations"] == 31
    assert summary["coverage"] is None, "Cluster-Elites fills every cell by construction"
    assert summary["best_score"] > summary["initial_score"]
    assert Path(summary["store"]).is_file()
    assert "evals" in r.stderr and "best" in r.stderr, "progress goes to stderr while it runs"
    # the last lines say how to open the run in JupyterLab, with the store's absolute path
    store = Path(summary["store"]).resolve()
    assert r.stderr.strip().splitlines()[-2:] == [
        f"    run = await Run.open({str(store)!r})",
        "    Dashboard(run)",
    ]
    assert "from aster_nb.ui import Dashboard" in r.stderr


def test_one_count_of_evaluations_and_the_spend_survive_reopening(tmp_path: Path) -> None:
    """The round lines, the JSON line, the reopened run's status and the snapshots give one
    number of evaluations (Store.evaluations: programs stored, the initial one included,
    identical code once); the spend is kept in the store, in all and per model."""
    import asyncio
    import re
    import sqlite3

    r = _cli("run", "toy", "--workers", "3", "--agents", "4", "--rounds", "2", "--budget", "60",
             "--seed", "1", "--out", str(tmp_path), cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    rounds = re.findall(r"round (\d+) done: .* evaluations (\d+) ", r.stderr)
    assert [int(n) for n, _ in rounds] == [0, 1]
    with sqlite3.connect(s["store"]) as db:
        stored = db.execute("SELECT COUNT(*) FROM programs").fetchone()[0]
        origins = dict(db.execute("SELECT origin, COUNT(*) FROM programs GROUP BY origin"))
        stats = [json.loads(v) for (v,) in db.execute("SELECT stats FROM handoffs")]
    assert int(rounds[-1][1]) == s["evaluations"] == stored
    assert origins["initial"] == 1 and stored == sum(origins.values())
    # the workers' budgets count programs new to each worker; code two workers both found
    # is one evaluation, so the run's count is at most the budgets plus merges and initial
    worker_counts = sum(h["evaluations"] for h in stats if "attempts" in h)
    assert stored - 1 - origins.get("merge", 0) <= worker_counts == 60

    async def reopened() -> tuple[object, object, int, int, int]:
        from aster_nb import Run
        from aster_nb.snapshot import map_snapshot, timeline

        run = await Run.open(s["store"])
        try:
            snap = map_snapshot(run, "p0.w0")
            return (
                run.status,
                run.spent(),
                snap.evaluations,
                len(timeline(run).frame),
                run.store.evaluations(),
            )
        finally:
            await run.close()

    status, spent, on_map, on_timeline, in_store = asyncio.run(reopened())
    assert status.evaluations == on_map == on_timeline == in_store == s["evaluations"]
    # what the calls billed: the kept attempts' tokens (the JSON's) and the surplus's
    assert status.tokens == spent.tokens == s["tokens"] + s["discarded_tokens"] > 0
    assert status.usd == s["usd"] + s["discarded_usd"] == 0.0  # the offline model is free
    assert set(spent.by_model) == {"offline"} and spent.by_model["offline"].tokens == spent.tokens
    assert spent.calls > 0 and spent.input_tokens + spent.output_tokens == spent.tokens


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
    assert s["evaluations"] == 13 and {"isolation", "network"} <= set(s)  # 12 and the initial

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
