"""The sandbox contains hostile programs, and the executor keeps working after each one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from aster_nb.program import EvalResult, Status
from aster_nb.sandbox import LocalExecutor, evaluate_cold, sandbox_env
from aster_nb.task import Limits, Task

LIMITS = Limits(timeout=2.0, memory_mb=1024, max_processes=32, max_output_bytes=64 * 1024)

# imports the program and returns whatever its run() returns, so each test's program
# decides what the evaluator reports
EVALUATOR = """
import importlib.util

def evaluate(program_path):
    spec = importlib.util.spec_from_file_location("candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run()
"""

OK_PROGRAM = "def run():\n    return {'score': 1.0}\n"
SLEEPER = "import time\n\ndef run():\n    time.sleep({seconds})\n    return {{'score': 0.0}}\n"
SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-test-secret",
    "AWS_SECRET_ACCESS_KEY": "aws-test-secret",
    "MY_SERVICE_TOKEN": "tok-test-secret",
}


# --------------------------------------------------------------------------- helpers


def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry.name}/stat").read_bytes()
                out[int(entry.name)] = int(stat.rsplit(b")", 1)[1].split()[1])
    return out


def descendants(pid: int | None) -> set[int]:
    """Live (non-zombie) processes below ``pid``."""
    if pid is None:
        return set()
    ppids = _ppids()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in ppids.items() if pp in frontier} - found
        found |= frontier
    return {p for p in found if running(p)}


def processes_running(argument: str) -> list[int]:
    """Live processes, anywhere on the machine, with ``argument`` in their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argument.encode() in argv and running(int(entry.name)):
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")


async def wait_until(predicate, timeout: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


def leftover_cgroups(ex: LocalExecutor) -> list[Path]:
    root = ex.server_info.get("cgroup_root")
    if not root or not Path(root).is_dir():
        return []
    return [p for p in Path(root).iterdir() if p.is_dir()]


async def assert_still_works(ex: LocalExecutor) -> None:
    result = await ex.submit(OK_PROGRAM + f"# {uuid.uuid4()}\n")  # unique: bypasses the cache
    assert result.status is Status.OK, result
    assert result.score == 1.0


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def evaluator(tmp_path: Path) -> Path:
    path = tmp_path / "evaluator.py"
    path.write_text(EVALUATOR)
    return path


@pytest.fixture
async def executor(
    evaluator: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[LocalExecutor]:
    # present in the parent before the server starts: the sandbox must not pass them on
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    ex = LocalExecutor(evaluator=evaluator, limits=LIMITS, concurrency=4)
    await ex.start()
    pid = ex.server_pid
    yield ex
    await ex.close()
    assert pid is not None and not Path(f"/proc/{pid}").exists(), "server left running or unreaped"


# --------------------------------------------------------------------------- time


async def test_infinite_loop_times_out(executor: LocalExecutor) -> None:
    result = await executor.submit("def run():\n    while True:\n        pass\n")
    assert result.status is Status.TIMEOUT
    assert "wall-clock" in (result.error or "")
    assert 1.9 < result.seconds < 3.5
    await assert_still_works(executor)


async def test_sleeping_past_the_limit_times_out(executor: LocalExecutor) -> None:
    result = await executor.submit(SLEEPER.format(seconds=30))
    assert result.status is Status.TIMEOUT
    await assert_still_works(executor)


async def test_cpu_limit_is_a_timeout(executor: LocalExecutor) -> None:
    limits = replace(LIMITS, timeout=10.0, cpu_seconds=1.0)
    result = await executor.submit("def run():\n    while True:\n        pass\n", limits=limits)
    assert result.status is Status.TIMEOUT
    assert "CPU limit" in (result.error or "")
    assert result.seconds < 5
    await assert_still_works(executor)


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize(
    "allocation",
    ["bytearray(20 * 2**30)", "__import__('numpy').ones(20 * 2**30 // 8)"],
    ids=["bytearray", "numpy"],
)
async def test_huge_allocation_is_memory(executor: LocalExecutor, allocation: str) -> None:
    result = await executor.submit(
        f"def run():\n    x = {allocation}\n    return {{'score': 1.0}}\n"
    )
    assert result.status is Status.MEMORY, result
    assert "MemoryError" in (result.error or "")
    await assert_still_works(executor)


# --------------------------------------------------------------------------- processes


def _require_process_cap(ex: LocalExecutor) -> None:
    if ex.stats["fork_limit"] not in ("cgroup-v1", "cgroup-v2", "nproc"):
        pytest.skip(f"no process cap here (fork_limit={ex.stats['fork_limit']!r})")


async def test_fork_limit_uses_cgroups_as_root(executor: LocalExecutor) -> None:
    if os.geteuid() != 0 or not os.access("/sys/fs/cgroup/pids", os.W_OK):
        pytest.skip("needs root and a writable cgroup v1 pids hierarchy")
    assert executor.stats["fork_limit"] in ("cgroup-v1", "cgroup-v2")


async def test_process_count_is_capped(executor: LocalExecutor) -> None:
    _require_process_cap(executor)
    program = (
        "import os, time\n\n"
        "def run():\n"
        "    n = 0\n"
        "    try:\n"
        "        for _ in range(500):\n"
        "            if os.fork() == 0:\n"
        "                time.sleep(60)\n"
        "                os._exit(0)\n"
        "            n += 1\n"
        "    except OSError:\n"
        "        pass\n"
        "    return {'score': n}\n"
    )
    result = await executor.submit(program)
    assert result.status is Status.OK, result
    assert 0 < (result.score or 0) < LIMITS.max_processes
    assert descendants(executor.server_pid) == set()
    await assert_still_works(executor)


async def test_fork_bomb_is_contained(executor: LocalExecutor) -> None:
    _require_process_cap(executor)  # without a cap, a bomb would load the machine for 2 s
    program = (
        "import os, time\n\n"
        "def run():\n"
        "    while True:\n"
        "        try:\n"
        "            os.fork()\n"
        "        except OSError:\n"
        "            time.sleep(0.001)\n"
    )
    result = await executor.submit(program)
    assert result.status in (Status.TIMEOUT, Status.ERROR), result
    # the result is sent only after the cgroup is empty: nothing may survive it
    assert descendants(executor.server_pid) == set()
    assert leftover_cgroups(executor) == []
    await assert_still_works(executor)


async def test_segfault_names_the_signal(executor: LocalExecutor) -> None:
    result = await executor.submit("import ctypes\n\ndef run():\n    ctypes.string_at(0)\n")
    assert result.status is Status.ERROR
    assert "SIGSEGV" in (result.error or "")
    await assert_still_works(executor)


async def test_os_exit_without_result(executor: LocalExecutor) -> None:
    result = await executor.submit("import os\n\ndef run():\n    os._exit(3)\n")
    assert result.status is Status.ERROR
    assert "exited with code 3 before returning a result" in (result.error or "")
    await assert_still_works(executor)


async def test_sys_exit_names_the_code(executor: LocalExecutor) -> None:
    result = await executor.submit("import sys\n\ndef run():\n    sys.exit(4)\n")
    assert result.status is Status.ERROR
    assert "SystemExit" in (result.error or "") and "4" in (result.error or "")
    await assert_still_works(executor)


async def test_processes_left_running_are_killed(executor: LocalExecutor) -> None:
    # pids seen inside the sandbox's PID namespace mean nothing here: find the leftovers
    # by the unusual durations they sleep for
    program = (
        "import os, subprocess\n\n"
        "def run():\n"
        "    subprocess.Popen(['sleep', '300.0417'], start_new_session=True)\n"
        "    if os.fork() == 0:  # a classic daemon: fork, setsid, fork, parent exits\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            os.execvp('sleep', ['sleep', '300.0418'])\n"
        "        os._exit(0)\n"
        "    os.wait()\n"
        "    return {'score': 1.0}\n"
    )
    result = await executor.submit(program)
    assert result.status is Status.OK, result
    for marker in ("300.0417", "300.0418"):
        assert await wait_until(lambda m=marker: not processes_running(m)), f"{marker} survived"
    assert descendants(executor.server_pid) == set()
    await assert_still_works(executor)


# --------------------------------------------------------------------------- output, env, files


async def test_huge_output_is_truncated(executor: LocalExecutor) -> None:
    program = (
        "import sys\n\n"
        "def run():\n"
        "    chunk = 'x' * 1_000_000\n"
        "    for _ in range(50):\n"
        "        sys.stdout.write(chunk)\n"
        "    sys.stderr.write('e' * 5_000_000)\n"
        "    return {'score': 2.0}\n"
    )
    result = await executor.submit(program)
    assert result.status is Status.OK, result
    assert result.score == 2.0
    for text, total in ((result.stdout, 50_000_000), (result.stderr, 5_000_000)):
        kept, _, note = text.partition("\n[... ")
        assert len(kept) == LIMITS.max_output_bytes
        assert note == f"{total - LIMITS.max_output_bytes} bytes truncated]"
    await assert_still_works(executor)


async def test_secrets_are_not_visible(executor: LocalExecutor) -> None:
    program = (
        "import os\n\n"
        "def run():\n"
        "    names = [n for n in os.environ if any(m in n for m in ('KEY', 'TOKEN', 'SECRET'))]\n"
        "    values = [v for v in os.environ.values() if 'test-secret' in v]\n"
        "    return {'score': 0.0, 'metrics': {\n"
        "        'anthropic_visible': float('ANTHROPIC_API_KEY' in os.environ),\n"
        "        'secret_names': len(names), 'secret_values': len(values),\n"
        "        'threads_pinned': float(os.environ.get('OMP_NUM_THREADS') == '1')}}\n"
    )
    assert os.environ["ANTHROPIC_API_KEY"] == SECRETS["ANTHROPIC_API_KEY"]
    result = await executor.submit(program)
    assert result.status is Status.OK, result
    assert result.metrics == {
        "anthropic_visible": 0.0,
        "secret_names": 0.0,
        "secret_values": 0.0,
        "threads_pinned": 1.0,
    }
    server_environ = Path(f"/proc/{executor.server_pid}/environ").read_bytes()
    assert b"test-secret" not in server_environ
    await assert_still_works(executor)


# looks through every process it can see for the key, as a hostile program would
SNOOP = (
    "import os\n\n"
    "def run():\n"
    "    pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
    "    found = 0\n"
    "    for p in pids:\n"
    "        for part in ('environ', 'cmdline'):\n"
    "            try:\n"
    "                found += b'kernel-test-secret' in open(f'/proc/{p}/{part}', 'rb').read()\n"
    "            except OSError:\n"
    "                pass\n"
    "    return {'score': 0.0, 'metrics': {'visible': len(pids), 'found': found}}\n"
)


@pytest.mark.parametrize("isolate", [True, False], ids=["full", "none"])
async def test_key_in_another_process_is_out_of_reach(evaluator: Path, isolate: bool) -> None:
    """A Jupyter kernel holds the API key in its environment; a sandboxed program must not be
    able to read it from /proc. Without isolation it can: that is what this guards (the
    attacks on the isolation itself are in test_sandbox_attacks.py)."""
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-kernel-test-secret"}
    kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        async with LocalExecutor(evaluator=evaluator, limits=LIMITS, isolate=isolate) as ex:
            result = await ex.submit(SNOOP)
            isolation = ex.stats["isolation"]
    finally:
        kernel.kill()
        kernel.wait()
    assert result.status is Status.OK, result
    if isolate:
        assert isolation == "full"
        assert result.metrics["found"] == 0
        # its own PID namespace: the rest of the machine, the server included, is hidden
        assert result.metrics["visible"] == 1
    else:
        assert isolation == "none"
        assert result.metrics["found"] >= 1  # the kernel's environ, readable as root


async def test_temp_dir_is_private_and_removed(executor: LocalExecutor) -> None:
    program = (
        "import os, tempfile\n\n"
        "def run():\n"
        "    cwd = os.getcwd()\n"
        "    print(cwd)\n"
        "    with open('scratch.bin', 'wb') as f:\n"
        "        f.write(b'0' * 1000)\n"
        "    same = [os.environ['HOME'] == cwd, os.environ['TMPDIR'] == cwd,\n"
        "            tempfile.gettempdir() == cwd, os.path.isfile(os.path.join(cwd, 'program.py'))]\n"
        "    return {'score': float(all(same))}\n"
    )
    result = await executor.submit(program)
    assert result.status is Status.OK, result
    assert result.score == 1.0
    workdir = Path(result.stdout.strip())
    # isolated, the working directory is the evaluation's own /tmp: nothing reaches the host
    assert workdir.is_absolute() and not (workdir / "scratch.bin").exists()
    if executor.stats["isolation"] != "full":
        assert not workdir.exists()
        assert list(Path(executor.server_info["work_root"]).iterdir()) == []
    await assert_still_works(executor)


async def test_file_size_limit(executor: LocalExecutor) -> None:
    limits = replace(LIMITS, max_file_mb=1)
    program = (
        "def run():\n    open('big', 'wb').write(b'0' * 2_000_000)\n    return {'score': 1.0}\n"
    )
    result = await executor.submit(program, limits=limits)
    assert result.status is Status.ERROR
    assert "File too large" in (result.error or "")
    await assert_still_works(executor)


# --------------------------------------------------------------------------- evaluator contract


async def test_exception_gives_traceback(executor: LocalExecutor) -> None:
    program = "def helper():\n    raise ValueError('boom 42')\n\ndef run():\n    helper()\n"
    result = await executor.submit(program)
    assert result.status is Status.ERROR
    error = result.error or ""
    assert "Traceback" in error and "ValueError: boom 42" in error and "helper" in error
    assert len(error.splitlines()) <= 21
    await assert_still_works(executor)


async def test_invalid_carries_the_reason(executor: LocalExecutor) -> None:
    program = "def run():\n    return {'valid': False, 'reason': 'circles overlap'}\n"
    result = await executor.submit(program)
    assert result.status is Status.INVALID
    assert result.error == "circles overlap"
    assert result.score is None
    await assert_still_works(executor)


async def test_valid_result_with_metrics_and_features(executor: LocalExecutor) -> None:
    program = (
        "import numpy as np\n\n"
        "def run():\n"
        "    return {'score': np.float32(2.5), 'metrics': {'n': np.int64(3)},\n"
        "            'features': np.array([0.5, 1.0])}\n"
    )
    result = await executor.submit(program)
    assert result.status is Status.OK, result
    assert (result.score, result.metrics, result.features) == (2.5, {"n": 3.0}, (0.5, 1.0))


async def test_bad_return_values_say_what_was_expected(executor: LocalExecutor) -> None:
    cases = {
        "42": "must return a dict",
        "{'score': 'high'}": "expected a finite number",
        "{'score': float('nan')}": "expected a finite number",
        "{'metrics': {}}": "no 'score'",
        "{'score': 1.0, 'metrics': {'a': 'x'}}": "dict of str -> finite number",
        "{'score': 1.0, 'features': [1.0, None]}": "list of finite numbers",
        "{'score': 1.0, 'valid': 'yes'}": "expected True or False",
    }
    for value, expected in cases.items():
        result = await executor.submit(f"def run():\n    return {value}\n")
        assert result.status is Status.ERROR, value
        assert expected in (result.error or ""), (value, result.error)
    await assert_still_works(executor)


# --------------------------------------------------------------------------- executor


async def test_identical_code_is_evaluated_once(executor: LocalExecutor) -> None:
    program = "import time\n\ndef run():\n    time.sleep(0.2)\n    return {'score': 3.0}\n"
    together = await asyncio.gather(*(executor.submit(program) for _ in range(3)))
    later = await executor.submit(program)
    assert all(r == together[0] for r in [*together, later])
    assert later.score == 3.0
    assert executor.stats["evaluations"] == 1  # what the server ran
    assert executor.stats["cache_hits"] == 3


async def test_concurrent_evaluations(executor: LocalExecutor) -> None:
    # six 0.4 s sleepers with concurrency 4: two waves, far less than six in a row
    program = (
        "import time\n\n"
        "def run():\n"
        "    start = time.time()\n"
        "    time.sleep(0.4)\n"
        "    return {'score': 0.0, 'metrics': {'start': start, 'end': time.time()}}\n"
    )
    t0 = time.monotonic()
    results = await asyncio.gather(*(executor.submit(program + f"# {i}\n") for i in range(6)))
    elapsed = time.monotonic() - t0
    assert all(r.status is Status.OK for r in results), results
    assert 0.8 <= elapsed < 2.0
    spans = [(r.metrics["start"], r.metrics["end"]) for r in results]
    overlap = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert 2 <= overlap <= executor.concurrency


async def test_server_killed_externally(executor: LocalExecutor) -> None:
    """A server death is not the program's fault: its evaluation runs again on a fresh one."""
    old_pid = executor.server_pid
    old_cgroup_root = executor.server_info.get("cgroup_root")
    task = asyncio.ensure_future(executor.submit(SLEEPER.format(seconds=1)))
    assert await wait_until(lambda: len(descendants(old_pid)) > 0)
    children = descendants(old_pid)
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    result = await asyncio.wait_for(task, 10)
    assert result.status is Status.OK, result
    assert await wait_until(lambda: not any(running(p) for p in children))
    if old_cgroup_root:
        assert await wait_until(lambda: not Path(old_cgroup_root).exists())
    assert executor.server_pid not in (None, old_pid)
    assert executor.stats["restarts"] == 1
    assert executor.stats["reruns"] == 1
    await assert_still_works(executor)


async def test_a_second_server_death_is_lost_not_blamed(executor: LocalExecutor) -> None:
    code = SLEEPER.format(seconds=1.5)

    async def kill_server_under_it(old: int | None) -> int:
        assert await wait_until(lambda: executor.server_pid not in (None, old))
        pid = executor.server_pid
        assert await wait_until(lambda: len(descendants(pid)) > 0)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        return pid

    task = asyncio.ensure_future(executor.submit(code))
    first = await kill_server_under_it(None)
    await kill_server_under_it(first)
    result = await asyncio.wait_for(task, 10)
    assert result.status is Status.LOST, result
    assert "died twice" in (result.error or "")
    assert executor.stats["lost"] == 1
    # never cached: the same program runs to completion now
    assert (await executor.submit(code)).status is Status.OK


async def test_cancelled_submit_kills_the_child(executor: LocalExecutor) -> None:
    code = SLEEPER.format(seconds=0.5) + "# cancel me\n"
    task = asyncio.ensure_future(executor.submit(code))
    assert await wait_until(lambda: len(descendants(executor.server_pid)) > 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_until(lambda: descendants(executor.server_pid) == set())
    assert executor.stats["in_flight"] == 0
    # the cancelled evaluation was not cached: the same code runs to completion now
    assert (await executor.submit(code)).status is Status.OK
    await assert_still_works(executor)


async def test_close_kills_in_flight_evaluations(evaluator: Path) -> None:
    ex = LocalExecutor(evaluator=evaluator, limits=LIMITS)
    await ex.start()
    pid = ex.server_pid
    task = asyncio.ensure_future(ex.submit(SLEEPER.format(seconds=20)))
    assert await wait_until(lambda: len(descendants(pid)) > 0)
    children = descendants(pid)
    t0 = time.monotonic()
    await ex.close()
    result = await task
    assert time.monotonic() - t0 < 3
    assert result.status is Status.ERROR
    assert not Path(f"/proc/{pid}").exists()
    assert not any(running(p) for p in children)
    with pytest.raises(RuntimeError, match="closed"):
        await ex.submit(OK_PROGRAM)


async def test_evaluator_import_failure(tmp_path: Path) -> None:
    broken = tmp_path / "broken_evaluator.py"
    broken.write_text(
        "raise RuntimeError('data file missing')\n\ndef evaluate(path):\n    return {}\n"
    )
    async with LocalExecutor(evaluator=broken, limits=LIMITS) as ex:
        assert "data file missing" in (ex.server_info["evaluator_error"] or "")
        result = await ex.submit(OK_PROGRAM)
    assert result.status is Status.ERROR
    assert "failed to import" in (result.error or "") and "data file missing" in (
        result.error or ""
    )


async def test_evaluate_cold(evaluator: Path) -> None:
    result = await evaluate_cold(OK_PROGRAM, evaluator=evaluator, limits=LIMITS)
    assert result == EvalResult(Status.OK, score=1.0, seconds=result.seconds)


def test_server_protocol_from_any_cwd_without_fork_limit(evaluator: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [sys.executable, "-P", "-m", "aster_nb.sandbox", "--evaluator", str(evaluator)]
    with subprocess.Popen(
        [*command, "--fork-limit", "none"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=elsewhere, env=sandbox_env(),
    ) as proc:  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        hello = json.loads(proc.stdout.readline())
        assert hello["type"] == "hello" and hello["fork_limit"] == "none"
        request = {"id": "a", "code": "print('stray')\ndef run():\n    return {'score': 5}\n"}
        proc.stdin.write((json.dumps(request) + "\n").encode())
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline())
        proc.stdin.close()  # end of input shuts the server down
        assert proc.wait(timeout=10) == 0
    assert reply["id"] == "a" and reply["result"]["status"] == "ok"
    assert reply["result"]["score"] == 5 and reply["result"]["stdout"] == "stray\n"
    assert not Path(hello["work_root"]).exists()


def test_sandbox_env_is_an_allowlist() -> None:
    env = sandbox_env(
        {"PATH": "/bin", "LC_ALL": "C", "ANTHROPIC_API_KEY": "x", "GITHUB_TOKEN": "y",
         "HOME": "/root", "OPENBLAS_CORETYPE": "Haswell", "LC_SECRET_THING": "z", "PYTHONPATH": "/a"}
    )  # fmt: skip
    assert env["PATH"] == "/bin" and env["LC_ALL"] == "C" and env["OPENBLAS_CORETYPE"] == "Haswell"
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep)[1:] == ["/a"]
    for name in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN", "HOME", "LC_SECRET_THING"):
        assert name not in env


def test_a_relative_data_path_reaches_the_sandbox_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ASTER_X=../data python ...` means the folder seen from here; the server runs in its
    own working directory, so it gets the absolute path (a name that is no path is kept)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    base = {"ASTER_X_DATA": "../data", "ASTER_X_MODE": "fast", "ASTER_X_GONE": "../nowhere"}
    env = sandbox_env(base, ["ASTER_X_DATA", "ASTER_X_MODE", "ASTER_X_GONE"])
    assert env["ASTER_X_DATA"] == str(tmp_path / "data")
    assert env["ASTER_X_MODE"] == "fast" and env["ASTER_X_GONE"] == "../nowhere"


def test_constructor_validation(evaluator: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="existing Python file"):
        LocalExecutor(evaluator=tmp_path / "missing.py")
    with pytest.raises(ValueError, match="positive int"):
        LocalExecutor(evaluator=evaluator, concurrency=0)
    with pytest.raises(TypeError, match="sequence of module names"):
        LocalExecutor(evaluator=evaluator, preload="numpy")
    with pytest.raises(TypeError, match="Limits"):
        LocalExecutor(evaluator=evaluator, limits={"timeout": 1})  # type: ignore[arg-type]


def test_from_task(evaluator: Path) -> None:
    task = Task(
        name="t", root=evaluator.parent, statement="", initial_code="", evaluator_path=evaluator,
        surface_areas=(), limits=LIMITS, preload=("numpy",),
    )  # fmt: skip
    ex = LocalExecutor.from_task(task, concurrency=3)
    assert (ex.evaluator, ex.limits, ex.preload, ex.concurrency) == (
        evaluator,
        LIMITS,
        ("numpy",),
        3,
    )
    override = replace(LIMITS, timeout=1.0)
    assert LocalExecutor.from_task(task, limits=override).limits == override


async def test_servers_never_share_a_cgroup(evaluator: Path) -> None:
    # in their PID namespaces both servers are pid 1: their cgroups must still be their own
    async with (
        LocalExecutor(evaluator=evaluator, limits=LIMITS) as a,
        LocalExecutor(evaluator=evaluator, limits=LIMITS) as b,
    ):
        await a.start()
        await b.start()
        if a.stats["fork_limit"] not in ("cgroup-v1", "cgroup-v2"):
            pytest.skip(f"no cgroups here: {a.server_info.get('fork_limit_detail')}")
        roots = {a.server_info["cgroup_root"], b.server_info["cgroup_root"]}
        assert len(roots) == 2 and all(Path(r).is_dir() for r in roots)
        await assert_still_works(a)
        await assert_still_works(b)
    assert not any(Path(r).exists() for r in roots)
