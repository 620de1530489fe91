"""Every failure is loud: model problems stop a run before it starts (exit 2, one line), model
calls failing in a row end it ``failed`` (exit 1), a failed create leaves nothing running,
and a resumed run keeps to its evaluation budget.

The Anthropic path runs the real SDK against ``tests/messages_server.py`` over real HTTP;
the command line runs as a real subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from aster_nb.agents import Budget, Worker
from aster_nb.errors import UserInputError
from aster_nb.events import Event, RunStateChanged
from aster_nb.llm import FailureWatch, ModelsFailing, Request, Response, Watched
from aster_nb.program import Program
from aster_nb.run import Run
from aster_nb.sandbox import LocalExecutor
from aster_nb.store import Store
from aster_nb.task import Task

from .messages_server import MessagesServer, offline_reply

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-ant-api03-" + "Fw3" * 12 + "-FAILTEST"
CREDENTIALS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL")


def _env(**extra: str) -> dict[str, str]:
    """This environment without any Anthropic credential or address, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIALS}
    return env | {"PYTHONPATH": str(ROOT)} | extra


async def _cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> tuple[int, str, str]:
    """``python -m aster_nb ARGS`` as a subprocess, awaited, so a server on this loop answers it."""
    p = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aster_nb",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(p.communicate(), timeout)
    except TimeoutError:
        p.kill()
        await p.wait()
        raise AssertionError(f"`aster_nb {' '.join(args)}` hung for {timeout} s") from None
    assert p.returncode is not None
    return p.returncode, out.decode(), err.decode()


def _closed_port() -> int:
    """A port that was just open on 127.0.0.1 and is closed now: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children() -> set[int]:
    """Live child processes of this process (zombies excluded: they are dead already)."""
    me, out = os.getpid(), set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == me and state != "Z":
            out.add(int(d.name))
    return out


async def _no_children_left(before: set[int], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while (left := _children() - before) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not left, f"child processes left running: {sorted(left)}"


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, f"expected one error line, got:\n{err}"
    return lines[0]


# -- preflight: model problems stop the command before anything starts -------------------------


async def test_missing_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    code, stdout, err = await _cli(
        "run", "toy", "--model", "claude-haiku-4-5", "--budget", "20", "--out", str(out),
        env=_env(), cwd=tmp_path,
    )  # fmt: skip
    line = _one_line_error(err)
    assert code == 2 and stdout == ""
    assert "no API key" in line and "ANTHROPIC_API_KEY" in line and "offline" in line
    assert not list(out.glob("*.sqlite*")), "no store is left by a run that never started"


async def test_mistyped_model_suggests_the_close_name_and_does_not_hang(tmp_path: Path) -> None:
    # This typo used to hang the command forever: the error came after the sandbox server
    # had started, and nothing closed it.
    t0 = time.monotonic()
    code, _, err = await _cli(
        "run", "toy", "--model", "claude-sonet-4-5", "--budget", "20", "--out", str(tmp_path),
        env=_env(ANTHROPIC_API_KEY=KEY), cwd=tmp_path, timeout=30,
    )  # fmt: skip
    line = _one_line_error(err)
    assert code == 2 and time.monotonic() - t0 < 30
    assert "unknown model 'claude-sonet-4-5'" in line and "did you mean 'claude-sonnet-4-5'" in line
    # an unknown non-Claude name is told the same way
    code, _, err = await _cli(
        "run", "toy", "--model", "ofline", "--out", str(tmp_path), env=_env(), cwd=tmp_path
    )
    assert code == 2 and "did you mean 'offline'" in _one_line_error(err)
    assert not list(tmp_path.glob("*.sqlite*"))


async def test_unreachable_base_url_names_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    code, _, err = await _cli(
        "run", "toy", "--model", "claude-haiku-4-5", "--budget", "20", "--out", str(tmp_path),
        env=_env(ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=url), cwd=tmp_path,
    )  # fmt: skip
    line = _one_line_error(err)
    assert code == 2 and time.monotonic() - t0 < 20
    assert f"cannot reach the Anthropic API at {url}" in line and "ANTHROPIC_BASE_URL" in line
    assert KEY not in err


async def test_refused_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    async with MessagesServer(keys=["sk-ant-the-right-one"]) as srv:
        code, _, err = await _cli(
            "run", "toy", "--model", "claude-haiku-4-5", "--out", str(tmp_path),
            env=_env(ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=srv.url), cwd=tmp_path,
        )  # fmt: skip
    line = _one_line_error(err)
    assert code == 2 and "refused the key" in line and "ANTHROPIC_API_KEY" in line
    assert KEY not in err
    assert [s.path for s in srv.seen] == ["/v1/models/claude-haiku-4-5"], "one cheap request"


async def test_resume_checks_the_model_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    async with MessagesServer(handler=offline_reply) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        path = tmp_path / "r.sqlite"
        async with await Run.create(
            "toy", path=path, model="claude-haiku-4-5", workers=1, agents=2, evaluations=4
        ) as run:
            await run.step()
    code, _, err = await _cli("resume", str(path), "--rounds", "1", env=_env(), cwd=tmp_path)
    assert code == 2 and "no API key" in _one_line_error(err)


# -- a failed create leaves nothing behind ------------------------------------------------------


async def test_failed_create_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _children()
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    with pytest.raises(UserInputError, match="did you mean 'claude-sonnet-4-5'"):
        async with asyncio.timeout(30):
            await Run.create("toy", path=tmp_path / "r.sqlite", model="claude-sonet-4-5")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(UserInputError, match="cannot reach"):
        await Run.create("toy", path=tmp_path / "r.sqlite", model="claude-haiku-4-5")
    assert _children() == before and not list(tmp_path.iterdir())


def test_blocking_create_fails_the_same_way(tmp_path: Path) -> None:
    from aster_nb.sync import SyncRun

    before = _children()
    with pytest.raises(UserInputError, match="did you mean 'offline'"):
        SyncRun.create("toy", path=tmp_path / "r.sqlite", model="ofline")
    assert _children() == before and not list(tmp_path.iterdir())


async def test_create_interrupted_after_the_sandbox_started_cleans_up(tmp_path: Path) -> None:
    """A create cancelled once its sandbox server is running (Ctrl-C in a notebook cell)
    stops that server and removes the store it made."""
    before = _children()
    path = tmp_path / "r.sqlite"
    creating = asyncio.create_task(Run.create("toy", path=path, workers=1, agents=2))
    deadline = time.monotonic() + 30
    while not (_children() - before) and not creating.done():
        assert time.monotonic() < deadline, "the sandbox server never started"
        await asyncio.sleep(0.005)
    assert not creating.done(), "the create finished before the test could interrupt it"
    assert path.exists(), "the store is made before the sandbox starts"
    creating.cancel()
    with pytest.raises(asyncio.CancelledError):
        await creating
    await _no_children_left(before)
    assert not list(tmp_path.iterdir()), "the store of the failed create is removed"


async def test_open_failing_after_the_sandbox_started_stops_it(tmp_path: Path) -> None:
    """A store damaged where only rebuilding the run reads it fails Run.open after the
    sandbox server started: the server is stopped and the store closed all the same."""
    path = tmp_path / "r.sqlite"
    async with await Run.create("toy", path=path, workers=1, agents=2, evaluations=4) as run:
        await run.step()
    with closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE programs SET metrics='{damaged' WHERE worker != ''")
        db.commit()
    before = _children()
    with pytest.raises(json.JSONDecodeError):
        await Run.open(path)
    await _no_children_left(before)
    fds = Path("/proc/self/fd")
    assert not [f for f in fds.iterdir() if str(path) in os.path.realpath(f)], "store open"


# -- model calls failing in a row end the run failed --------------------------------------------


async def test_failing_model_ends_the_run_failed_with_exit_1(tmp_path: Path) -> None:
    # Every Messages request is a 400 (not retried): before, the run went on until its
    # attempt cap and exited 0 with "evaluations: 0".
    async with MessagesServer(fault_rate=1.0, fault_kinds=("400",)) as srv:
        t0 = time.monotonic()
        code, stdout, err = await _cli(
            "run", "toy", "--model", "claude-haiku-4-5", "--budget", "400", "--agents", "4",
            "--rounds", "3", "--out", str(tmp_path),
            env=_env(ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=srv.url), cwd=tmp_path,
        )  # fmt: skip
    assert code == 1, err[-2000:]
    assert time.monotonic() - t0 < 30
    s = json.loads(stdout.strip().splitlines()[-1])
    assert s["error"].startswith("ModelsFailing: 20 model calls failed in a row; last: ")
    assert "HTTP 400 invalid_request_error" in s["error"]
    assert 20 <= s["model_failures"] < 20 + 4, "no call starts after the limit (4 in flight)"
    # the initial program is the only evaluation
    assert s["evaluations"] == 1 and s["rounds"] == 1, "the first round was the last"
    assert srv.statuses[400] == s["model_failures"]
    assert f"aster_nb: error: the run failed: {s['error']}" in err
    assert KEY not in stdout + err


async def test_failed_calls_count_against_the_time_budget(tmp_path: Path) -> None:
    """With no evaluation budget, only the wall budget bounds a round whose every call
    fails: it ends on time, and the failures are counted."""
    async with MessagesServer(fault_rate=1.0, fault_kinds=("400",)) as srv:
        t0 = time.monotonic()
        code, stdout, err = await _cli(
            "run", "toy", "--model", "claude-haiku-4-5", "--seconds", "1.5", "--agents", "2",
            "--max-model-failures", "1000000", "--quiet", "--out", str(tmp_path),
            env=_env(ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=srv.url), cwd=tmp_path,
        )  # fmt: skip
        elapsed = time.monotonic() - t0
    assert code == 0, err[-2000:]
    s = json.loads(stdout.strip().splitlines()[-1])
    assert s["error"] is None and s["evaluations"] == 1, "the initial program alone"
    assert s["model_failures"] > 10 and s["model_failures"] == srv.statuses[400]
    assert elapsed < 15, f"the round outlived its 1.5 s budget: {elapsed:.1f} s"


async def test_run_fails_then_recovers_when_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In Python: the round that hits the limit raises ModelsFailing, the run is ``failed``
    with the reason in its status and event; the next step tries the model again."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    async with MessagesServer(handler=offline_reply, script=["400"] * 5) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        run = await Run.create(
            "toy",
            path=tmp_path / "r.sqlite",
            model="claude-haiku-4-5",
            workers=1,
            agents=1,
            evaluations=4,
            max_model_failures=5,
        )
        states: list[Event] = []
        run.bus.subscribe(lambda e: states.append(e) if isinstance(e, RunStateChanged) else None)
        with pytest.raises(ModelsFailing, match="5 model calls failed in a row; last: "):
            await run.step()
        s = run.status
        assert s.state == "failed" and s.model_failures == 5 and s.evaluations == 1  # the base
        assert s.error is not None and s.error.startswith("ModelsFailing: 5 model calls")
        assert isinstance(states[-1], RunStateChanged) and states[-1].state == "failed"
        assert "5 model calls failed in a row" in states[-1].reason
        assert srv.statuses[400] == 5 and srv.requests == 5 + 1, "preflight + 5 calls, no more"
        r = await run.step()  # the server answers now
        assert run.status.state == "idle" and r.improved and run.status.evaluations > 4
        await run.close()


class _Hangs:
    """A model that never answers."""

    name = "hangs"

    async def complete(self, request: Request) -> Response:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


async def test_model_timeouts_count_as_failures(
    tmp_path: Path, toy: Task, toy_executor: LocalExecutor
) -> None:
    watch = FailureWatch(limit=None)
    w = Worker(
        name="w0",
        task=toy,
        model=Watched(_Hangs(), watch),
        executor=toy_executor,
        store=Store(tmp_path / "r.sqlite"),
        agents=2,
        model_timeout=0.05,
    )
    h = await w.run("Raise the score", Program(code=toy.initial_code), Budget(evaluations=2))
    attempts = w.store.attempts()
    assert (attempts["outcome"] == "model_error").all() and len(attempts) == 4 * 2 + 2
    # every attempt's timeout and the handoff's (not counted: its own timeout is reported
    # as a handoff failure, not here)
    assert watch.failures == len(attempts) and watch.streak == len(attempts)
    assert h.stats["model_errors"] == len(attempts)


# -- resume keeps to the evaluation budget ------------------------------------------------------


def _made(store: Path) -> int:
    """Programs the workers' agents made (what ``--budget`` counts)."""
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        return db.execute("SELECT COUNT(*) FROM programs WHERE worker != ''").fetchone()[0]


def _finished_rounds(store: Path) -> int:
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        return db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0]


def _kill_mid_round(cmd: list[str], store: Path | None, *, round: int, share: float) -> Path:
    """Start ``cmd``; SIGKILL it once round ``round`` stored ``share`` of its evaluations."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if store is None:
            assert p.stderr is not None
            line = p.stderr.readline()
            m = re.search(r"store: (\S+)", line)
            assert m, f"no store line: {line!r}"
            store = Path(m.group(1))
        deadline = time.monotonic() + 60
        while True:
            assert p.poll() is None, "the run ended before it could be killed mid-round"
            assert time.monotonic() < deadline, "the run never reached the kill point"
            try:
                done, made = _finished_rounds(store), _made(store)
            except sqlite3.OperationalError:  # not made yet
                done, made = -1, 0
            if done == round and made >= PER_ROUND * (round + share):
                break
            time.sleep(0.01)
        p.kill()
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=30)
    assert _finished_rounds(store) == round, "the kill landed in the round meant"
    return store


BUDGET, WORKERS, AGENTS, ROUNDS = 240, 2, 4, 2
PER_ROUND = BUDGET // ROUNDS


def test_resume_after_sigkill_keeps_to_the_budget(tmp_path: Path) -> None:
    """Resuming used to rerun a killed round in full (878 evaluations on average for a
    budget of 800); now the evaluations a killed round stored count against its budget."""
    base = [sys.executable, "-m", "aster_nb"]
    run = [
        *base, "run", "toy", "--workers", str(WORKERS), "--agents", str(AGENTS),
        "--rounds", str(ROUNDS), "--budget", str(BUDGET), "--latency", "0.02",
        "--out", str(tmp_path),
    ]  # fmt: skip
    store = _kill_mid_round(run, None, round=0, share=0.5)
    first = _made(store)
    assert 0 < first < PER_ROUND
    resume = [*base, "resume", str(store)]
    _kill_mid_round(resume, store, round=1, share=0.4)
    r = subprocess.run(resume, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["rounds"] == ROUNDS and s["best_score"] > s["initial_score"]
    made = _made(store)
    assert made <= BUDGET + AGENTS, f"{made} evaluations for a budget of {BUDGET}"
    # (a little under the budget at most: code another worker stored first uses budget
    # without a row of its own)
    assert made >= 0.9 * BUDGET, "the budget was spent, not skipped"
    with closing(sqlite3.connect(store)) as db:
        per_round = dict(
            db.execute("SELECT round, COUNT(*) FROM programs WHERE worker != '' GROUP BY round")
        )
    assert all(n <= PER_ROUND for n in per_round.values()), per_round
