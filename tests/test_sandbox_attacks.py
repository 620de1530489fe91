"""A root program attacks its sandbox; each attack is contained and the executor goes on.

Every attack also runs on a weaker path (``isolate=False``: a plain process, or
``isolate="pid-namespace"``: the PID namespace of earlier versions) where it must succeed:
that is what proves the test can fail. Attacks that would harm this machine on the plain
path (unmounting /proc, ``kill -9 -1``) run their weak side in the PID namespace only.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aster_nb.program import EvalResult, Status
from aster_nb.sandbox import LocalExecutor, seccomp
from aster_nb.task import Limits

from .test_sandbox import EVALUATOR  # runs the program and reports what its run() returns

LIMITS = Limits(timeout=5.0, memory_mb=1024, max_processes=32)
CANARY = f"sk-ant-canary-{uuid.uuid4().hex}"

PRELUDE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)

def call(ret):
    # 0 when the call went through, else the errno
    return 0 if ret == 0 else (ctypes.get_errno() or -1)

def found_canary(canary):
    hits = 0
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            for part in ('environ', 'cmdline'):
                try:
                    hits += canary.encode() in open(f'/proc/{pid}/{part}', 'rb').read()
                except OSError:
                    pass
    return hits
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attacks are those of a root program")


def program(body: str) -> str:
    return PRELUDE + "\ndef run():\n" + "".join(f"    {line}\n" for line in body.splitlines())


@pytest.fixture
def evaluator(tmp_path: Path) -> Path:
    path = tmp_path / "evaluator.py"
    path.write_text(EVALUATOR)
    return path


@pytest.fixture
def canary_kernel(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """The API key in this process's environment and in a stand-in for the Jupyter kernel."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY)
    kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield None
    kernel.kill()
    kernel.wait()


async def run_on(evaluator: Path, isolate: bool | str | None, code: str, **kw) -> EvalResult:  # type: ignore[no-untyped-def]
    async with LocalExecutor(evaluator=evaluator, limits=LIMITS, isolate=isolate, **kw) as ex:
        if isolate is True:
            assert ex.stats["isolation"] == "full", ex.stats
        result = await ex.submit(code)
        still = await ex.submit(program("return {'score': 1.0}") + f"# {uuid.uuid4()}\n")
        assert still.status is Status.OK, f"the executor did not go on: {still}"
        return result


def metric(result: EvalResult, name: str) -> float:
    assert result.status is Status.OK, result
    return result.metrics[name]


@pytest.fixture
async def full_isolation() -> None:
    if not await _bwrap_works():
        pytest.fail("bubblewrap isolation is not available: apt-get install bubblewrap")


async def _bwrap_works() -> bool:
    import shutil

    return shutil.which("bwrap") is not None


# --------------------------------------------------------------------------- mounts and /proc

UNMOUNT_PROC = program(
    f"""
before = found_canary({CANARY!r})
err = call(libc.umount2(b'/proc', 2))  # MNT_DETACH: what the issue's attacker did
after = found_canary({CANARY!r})
return {{'score': 0.0, 'metrics': {{'umount_errno': err, 'found': before + after}}}}
"""
)


async def test_unmounting_proc_is_refused(evaluator: Path, canary_kernel, full_isolation) -> None:  # type: ignore[no-untyped-def]
    held = await run_on(evaluator, True, UNMOUNT_PROC)
    assert metric(held, "umount_errno") == 1  # EPERM
    assert metric(held, "found") == 0
    # the PID namespace alone: the unmount works and uncovers the host's /proc and the key
    weak = await run_on(evaluator, "pid-namespace", UNMOUNT_PROC)
    assert metric(weak, "umount_errno") == 0
    assert metric(weak, "found") >= 1


REMOUNT_PROC = program(
    """
remount = call(libc.mount(None, b'/proc', None, 32, None))  # MS_REMOUNT
fresh = call(libc.mount(b'proc', b'/mnt', b'proc', 0, None))
return {'score': 0.0, 'metrics': {'remount': remount, 'fresh': fresh}}
"""
)


async def test_remounting_proc_is_refused(evaluator: Path, full_isolation) -> None:  # type: ignore[no-untyped-def]
    held = await run_on(evaluator, True, REMOUNT_PROC)
    assert metric(held, "remount") == 1 and metric(held, "fresh") == 1
    weak = await run_on(evaluator, "pid-namespace", REMOUNT_PROC)
    assert metric(weak, "remount") == 0 or metric(weak, "fresh") == 0


NEW_USER_NAMESPACE = program(
    """
err = call(libc.unshare(0x10000000 | 0x00020000))  # CLONE_NEWUSER | CLONE_NEWNS
mounted = call(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)) if err == 0 else err
return {'score': 0.0, 'metrics': {'unshare': err, 'mount': mounted}}
"""
)


async def test_new_user_namespace_is_refused(evaluator: Path, full_isolation) -> None:  # type: ignore[no-untyped-def]
    held = await run_on(evaluator, True, NEW_USER_NAMESPACE)
    assert metric(held, "unshare") == 1 and metric(held, "mount") == 1
    weak = await run_on(evaluator, False, NEW_USER_NAMESPACE)  # its own namespace: harmless here
    assert metric(weak, "unshare") == 0 and metric(weak, "mount") == 0


SETNS = program(
    """
fd = os.open('/proc/self/ns/net', os.O_RDONLY)
err = call(libc.setns(fd, 0))
return {'score': 0.0, 'metrics': {'setns': err}}
"""
)


async def test_setns_is_refused(evaluator: Path, full_isolation) -> None:  # type: ignore[no-untyped-def]
    assert metric(await run_on(evaluator, True, SETNS), "setns") == 1
    assert metric(await run_on(evaluator, False, SETNS), "setns") == 0


PTRACE = program(
    """
pid = os.fork()
if pid == 0:
    import time
    time.sleep(5)
    os._exit(0)
err = call(libc.ptrace(0x4206, pid, None, None))  # PTRACE_SEIZE
os.kill(pid, 9)
os.waitpid(pid, 0)
return {'score': 0.0, 'metrics': {'ptrace': err}}
"""
)


async def test_ptrace_is_refused(evaluator: Path, full_isolation) -> None:  # type: ignore[no-untyped-def]
    assert metric(await run_on(evaluator, True, PTRACE), "ptrace") == 1
    assert metric(await run_on(evaluator, False, PTRACE), "ptrace") == 0


# --------------------------------------------------------------------------- the key

KEY_HUNT = program(
    f"""
hits = found_canary({CANARY!r}) + ({CANARY!r} in str(dict(os.environ)))
for path in ('/proc/1/environ', '/proc/self/environ'):
    try:
        hits += {CANARY!r}.encode() in open(path, 'rb').read()
    except OSError:
        pass
ppid = os.getppid()
if ppid:
    try:
        hits += {CANARY!r}.encode() in open(f'/proc/{{ppid}}/environ', 'rb').read()
    except OSError:
        pass
return {{'score': 0.0, 'metrics': {{'found': hits, 'visible': sum(p.isdigit() for p in os.listdir('/proc'))}}}}
"""
)


async def test_the_api_key_is_out_of_reach(evaluator: Path, canary_kernel, full_isolation) -> None:  # type: ignore[no-untyped-def]
    held = await run_on(evaluator, True, KEY_HUNT)
    assert metric(held, "found") == 0
    assert metric(held, "visible") == 1  # its own PID namespace: only itself
    weak = await run_on(evaluator, False, KEY_HUNT)
    assert metric(weak, "found") >= 1


# --------------------------------------------------------------------------- processes

KILL_ALL = program(
    """
try:
    os.kill(-1, 9)  # every process this one may signal
except ProcessLookupError:
    pass  # there was none
return {'score': 0.0}
"""
)
NEIGHBOUR = program("import time\ntime.sleep(1.5)\nreturn {'score': 2.0}")


async def test_kill_all_reaches_only_itself(evaluator: Path, full_isolation) -> None:  # type: ignore[no-untyped-def]
    async def attack(isolate: bool | str) -> tuple[EvalResult, EvalResult]:
        async with LocalExecutor(evaluator=evaluator, limits=LIMITS, isolate=isolate) as ex:
            neighbour = asyncio.ensure_future(ex.submit(NEIGHBOUR + f"# {uuid.uuid4()}\n"))
            await asyncio.sleep(0.5)
            attacker = await ex.submit(KILL_ALL + f"# {uuid.uuid4()}\n")
            done = await neighbour
            assert (await ex.submit(program("return {'score': 1.0}"))).status is Status.OK
            return attacker, done

    attacker, neighbour = await attack(True)
    assert attacker.status is Status.OK, attacker
    assert neighbour.status is Status.OK and neighbour.score == 2.0, neighbour
    # in one PID namespace for all, the neighbour is killed and blamed
    _, neighbour = await attack("pid-namespace")
    assert neighbour.status is Status.ERROR and "SIGKILL" in (neighbour.error or ""), neighbour


DAEMON = """
import os, subprocess, ctypes
libc = ctypes.CDLL(None, use_errno=True)

def run():
    libc.umount2(b'/proc', 2)
    for root in ('/sys/fs/cgroup/pids', '/sys/fs/cgroup/unified', '/sys/fs/cgroup'):
        if os.path.exists(root + '/cgroup.procs'):
            break
    ready_r, ready_w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        try:  # leave the evaluation's cgroup for the root one
            open(root + '/cgroup.procs', 'w').write('0')
        except OSError:
            pass
        os.write(ready_w, b'x')
        os.execv('/bin/sh', ['/bin/sh', '-c', 'sleep 60; : MARKER'])
    os.read(ready_r, 1)  # out of the process group before the evaluation ends
    return {'score': 0.0}
"""


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
                    if state not in (b"Z", b"X"):
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


async def test_a_daemon_that_left_its_cgroup_dies(evaluator: Path, full_isolation) -> None:  # type: ignore[no-untyped-def]
    async def daemon_alive_after_evaluation(isolate: bool | str) -> bool:
        marker = f"aster-daemon-{uuid.uuid4().hex}"
        async with LocalExecutor(evaluator=evaluator, limits=LIMITS, isolate=isolate) as ex:
            result = await ex.submit(DAEMON.replace("MARKER", marker))
            assert result.status is Status.OK, result
            await asyncio.sleep(3.0)  # the server's orphan watch lasts 2 s
            alive = bool(processes_with(marker))
        return alive

    assert not await daemon_alive_after_evaluation(True)
    # the unmount blinds the server's sweep, and the daemon is out of the cgroup
    assert await daemon_alive_after_evaluation("pid-namespace")


# --------------------------------------------------------------------------- files


def write_into(path: Path) -> str:
    return program(
        f"""
try:
    open({str(path)!r}, 'w').write('pwned')
    ok = 1.0
except OSError:
    ok = 0.0
return {{'score': 0.0, 'metrics': {{'wrote': ok}}}}
"""
    )


async def test_the_run_folder_is_read_only(evaluator: Path, tmp_path: Path, full_isolation) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "runs" / "planted.txt"
    target.parent.mkdir()
    assert metric(await run_on(evaluator, True, write_into(target)), "wrote") == 0
    assert not target.exists()
    assert metric(await run_on(evaluator, False, write_into(target)), "wrote") == 1
    assert target.read_text() == "pwned"


def attack_store(path: Path) -> str:
    return program(
        f"""
hits = 0
try:
    open({str(path)!r}, 'r+b').write(b'garbage' * 100)
    hits += 1
except OSError:
    pass
try:
    os.remove({str(path)!r})
    hits += 1
except OSError:
    pass
return {{'score': 0.0, 'metrics': {{'hits': hits}}}}
"""
    )


def make_store(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (42)")


async def test_the_store_cannot_be_deleted_or_corrupted(
    evaluator: Path, tmp_path: Path, full_isolation
) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "run.sqlite"
    make_store(store)
    assert metric(await run_on(evaluator, True, attack_store(store)), "hits") == 0
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT x FROM t").fetchall() == [(42,)]
    assert metric(await run_on(evaluator, False, attack_store(store)), "hits") >= 1
    assert not store.exists() or store.read_bytes()[:7] == b"garbage"


PLANT_TMP = program(
    """
open('/tmp/planted-by-a-candidate', 'w').write('x')
return {'score': 0.0}
"""
)
SEE_TMP = program(
    """
return {'score': 0.0, 'metrics': {'seen': float(os.path.exists('/tmp/planted-by-a-candidate'))}}
"""
)


async def test_tmp_does_not_carry_over(evaluator: Path, full_isolation) -> None:  # type: ignore[no-untyped-def]
    async def seen(isolate: bool) -> float:
        async with LocalExecutor(evaluator=evaluator, limits=LIMITS, isolate=isolate) as ex:
            assert (await ex.submit(PLANT_TMP)).status is Status.OK
            return metric(await ex.submit(SEE_TMP), "seen")

    try:
        assert await seen(True) == 0
        assert await seen(False) == 1
    finally:
        Path("/tmp/planted-by-a-candidate").unlink(missing_ok=True)


# --------------------------------------------------------------------------- network


def connect_to(port: int) -> str:
    return program(
        f"""
import socket
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()
    ok = 1.0
except OSError:
    ok = 0.0
return {{'score': 0.0, 'metrics': {{'connected': ok}}}}
"""
    )


async def test_no_network_unless_the_task_asks(evaluator: Path, full_isolation) -> None:  # type: ignore[no-untyped-def]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        code = connect_to(port)
        assert metric(await run_on(evaluator, True, code), "connected") == 0
        assert metric(await run_on(evaluator, False, code), "connected") == 1
        async with LocalExecutor(evaluator=evaluator, limits=LIMITS, network=True) as ex:
            assert ex.stats["network"] is True
            assert "network access" in (ex.isolation_warning or "")
            assert metric(await ex.submit(code), "connected") == 1
    finally:
        listener.close()


# --------------------------------------------------------------------------- the filter


def test_seccomp_filter_is_well_formed() -> None:
    for machine in ("x86_64", "aarch64"):
        code = seccomp.filter_program(machine)
        assert len(code) % 8 == 0 and 20 < len(code) // 8 < 200
    with pytest.raises(OSError, match="no seccomp syscall table"):
        seccomp.filter_program("sparc")


# --------------------------------------------------------------------------- a whole run

HOSTILE_SOLVE = """

def solve():
    import glob, os
    for path in glob.glob(OUT + "/**/*", recursive=True):
        try:
            open(path, "r+b").write(b"corrupted" * 100)
        except OSError:
            pass
        try:
            os.remove(path)
        except OSError:
            pass
    try:
        open(OUT + "/planted.txt", "w").write("x")
    except OSError:
        pass
    return {"a": A, "b": B, "c": C, "d": D}
"""


def test_a_hostile_program_cannot_stop_a_run(tmp_path: Path) -> None:
    """Every program of this run tries to corrupt and delete the run's store and to plant a
    file in its folder; the run finishes, its store intact."""
    import json
    import shutil

    from aster_nb.store import Store

    task = tmp_path / "hostile"
    shutil.copytree(Path(__file__).resolve().parents[1] / "aster_nb" / "tasks" / "toy", task)
    out = tmp_path / "runs"
    source = (task / "initial_program.py").read_text()
    head = source[: source.index("def solve")]
    (task / "initial_program.py").write_text(
        head + f"OUT = {str(out)!r}\n" + HOSTILE_SOLVE.replace("\n\ndef solve", "\ndef solve", 1)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "aster_nb", "run", str(task), "--workers", "1", "--rounds", "1",
         "--agents", "2", "--budget", "16", "--seed", "0", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["isolation"] == "full"
    assert not (out / "planted.txt").exists()
    store = Store(summary["store"])
    try:
        history = store.history()
    finally:
        store.close()
    assert len(history) >= 10 and (history["status"] == "ok").sum() >= 10
