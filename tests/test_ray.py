"""The Ray executor against a real two-node Ray cluster on this machine (tests/ray_cluster.py).

The head has 1 CPU and no GPU; the second node 1 CPU, two logical GPUs (two, so a test
can tell which one an evaluation got) and the custom resource ``special``. The cluster
starts once for the module; the test that kills the second node's raylet comes last, and
any test that needs the second node after it starts it again.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import ray

from aster_nb.program import Status
from aster_nb.resources import Resources
from aster_nb.run import Run
from aster_nb.sandbox import LocalExecutor
from aster_nb.sandbox.client import SandboxClient
from aster_nb.sandbox.cluster import RayExecutor
from aster_nb.sandbox.raynode import gpu_tokens
from aster_nb.sandbox.rayshape import actor_options, slots_on
from aster_nb.task import Limits, Task, TaskError

from .conftest import write_task
from .ray_cluster import RayCluster, connected, tree, with_second_node

ROOT = Path(__file__).resolve().parents[1]

# prints the devices it was given, sleeps DELAY, scores X
PROGRAM = """\
import os, time
X = 1.0
DELAY = 0.0
def run():
    time.sleep(DELAY)
    return os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
"""
EVALUATOR = """\
import importlib.util
def evaluate(path):
    spec = importlib.util.spec_from_file_location("program", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print("devices=" + module.run())
    return {"score": float(module.X)}
"""
_unique = itertools.count()


def _task(root: Path, resources: str = "") -> Task:
    toml = 'name = "devices"\n[limits]\ntimeout = 20\n' + resources
    return write_task(root, program=PROGRAM, evaluator=EVALUATOR, toml=toml)


def _code(delay: float = 0.0, x: float = 1.0) -> str:
    """The program, made unique so the cache never answers for it."""
    return PROGRAM.replace("DELAY = 0.0", f"DELAY = {delay}").replace(
        "X = 1.0", f"X = {x}  # {next(_unique)}"
    )


def _devices(stdout: str) -> str:
    return next(ln for ln in stdout.splitlines() if ln.startswith("devices="))[8:]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    with connected() as c:
        yield c


@pytest.fixture
def two_nodes(cluster: RayCluster) -> RayCluster:
    return with_second_node(cluster)


@pytest.fixture
async def cpu_executor(two_nodes: RayCluster, tmp_path: Path) -> AsyncIterator[RayExecutor]:
    async with RayExecutor(task=_task(tmp_path / "t")) as ex:
        yield ex


def _node_ids() -> dict[str, str]:
    """Ray node id -> "head" or "second"."""
    return {
        n["NodeID"]: ("head" if "node:__internal_head__" in n["Resources"] else "second")
        for n in ray.nodes()
        if n["Alive"]
    }


# -- what fits where (no cluster needed) --------------------------------------------------


def test_slots_and_reservations_follow_the_task_resources() -> None:
    node = {"CPU": 4.0, "GPU": 2.0, "memory": 8 * 2**30, "special": 1.0}
    assert slots_on(node, Resources()) == 4
    assert slots_on(node, Resources(cpus=0.5, gpus=1)) == 2
    assert slots_on(node, Resources(cpus=1, custom=(("special", 1.0),))) == 1
    assert slots_on(node, Resources(memory_mb=3 * 1024)) == 2
    assert slots_on({"CPU": 8.0}, Resources(gpus=1)) == 0
    # a GPU is shared by whole numbers of evaluations: 0.4 of one fits twice per GPU
    assert slots_on({"CPU": 8.0, "GPU": 2.0}, Resources(gpus=0.4)) == 4
    assert actor_options(Resources(gpus=0.4), 4) == {"num_cpus": 4.0, "num_gpus": 2}
    assert actor_options(Resources(gpus=0.25), 3)["num_gpus"] == 0.75
    opts = actor_options(Resources(cpus=0.5, memory_mb=100, custom=(("special", 1.0),)), 2)
    assert opts == {
        "num_cpus": 1.0,
        "num_gpus": 0.0,
        "memory": 200 * 2**20,
        "resources": {"special": 2.0},
    }
    assert gpu_tokens(["0", "1"], 0.5) == ["0", "1", "0", "1"]
    assert gpu_tokens(["3"], 1) == ["3"] and gpu_tokens(["3"], 0) == []


def test_task_toml_resources_are_checked(tmp_path: Path) -> None:
    ok = _task(tmp_path / "ok", "[resources]\ncpus = 0.5\ngpus = 2\ncustom = {special = 1}\n")
    assert ok.resources == Resources(cpus=0.5, gpus=2.0, custom=(("special", 1.0),))
    assert Task.load("toy").resources == Resources()
    bad = {
        "cpus = 0": "cpus must be a finite number > 0",
        "gpus = 1.5": "gpus must be a fraction up to 1 or a whole number",
        "memory_mb = 1.5": "memory_mb must be a whole number of MiB",
        "custom = {GPU = 1}": "custom names a node's own resource 'GPU'",
        "custom = {special = 0}": "custom.special must be a finite number > 0",
        "cpu = 1": "unknown key [resources] 'cpu' (did you mean 'cpus'?)",
    }
    for i, (line, message) in enumerate(bad.items()):
        with pytest.raises(TaskError, match=r"task\.toml.*") as e:
            _task(tmp_path / f"bad{i}", f"[resources]\n{line}\n")
        assert message in str(e.value)


async def test_an_evaluation_gets_only_device_variables(tmp_path: Path) -> None:
    task = _task(tmp_path / "t")
    client = SandboxClient(evaluator=task.evaluator_path, limits=Limits(timeout=20))
    try:
        ev = await client.evaluate(_code(), Limits(timeout=20), env={"CUDA_VISIBLE_DEVICES": "7"})
        assert ev.result.ok and _devices(ev.result.stdout) == "7"
        ev = await client.evaluate(_code(), Limits(timeout=20))
        assert _devices(ev.result.stdout) == "unset", "only the evaluation it was given to"
        with pytest.raises(ValueError, match="only the device variables"):
            await client.evaluate(_code(), Limits(timeout=20), env={"ANTHROPIC_API_KEY": "x"})
    finally:
        await client.close()


def test_a_local_run_never_imports_ray(tmp_path: Path) -> None:
    code = (
        "import sys, json\n"
        "from aster_nb.cli import main\n"
        "from aster_nb.sandbox import RayExecutor\n"
        f"main(['run', 'toy', '--budget', '4', '--agents', '2', '--quiet', '--out', {str(tmp_path)!r}])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'ray')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


# -- on the cluster -----------------------------------------------------------------------


async def test_cpu_evaluations_run_on_every_node_in_the_local_sandbox(
    cpu_executor: RayExecutor, tmp_path: Path
) -> None:
    results = await asyncio.gather(*(cpu_executor.submit(_code(delay=1.0)) for _ in range(4)))
    assert all(r.ok and r.score == 1.0 for r in results)
    assert {_devices(r.stdout) for r in results} == {""}, "no GPU asked for, none seen"
    stats = cpu_executor.stats
    nodes = {_node_ids()[n]: s for n, s in stats["nodes"].items()}
    assert set(nodes) == {"head", "second"} and stats["concurrency"] == 2
    assert all(s["evaluations"] >= 1 for s in nodes.values()), nodes
    assert sum(s["evaluations"] for s in nodes.values()) == 4
    async with LocalExecutor.from_task(_task(tmp_path / "local"), concurrency=1) as local:
        await local.start()
        here = local.stats["isolation"]
    assert here is not None
    assert {s["isolation"] for s in nodes.values()} == {here} and stats["isolation"] == here
    assert stats["launcher"] == local.stats["launcher"]


async def test_gpu_evaluations_land_on_the_gpu_node_and_see_their_gpu(
    two_nodes: RayCluster, tmp_path: Path
) -> None:
    task = _task(tmp_path / "t", "[resources]\ncpus = 0.5\ngpus = 1\n")
    async with RayExecutor(task=task) as ex:
        results = await asyncio.gather(*(ex.submit(_code(delay=1.5)) for _ in range(2)))
        (node_id, node), *others = ex.stats["nodes"].items()
    assert not others and _node_ids()[node_id] == "second"
    assert node["slots"] == 2 and sorted(node["gpu_ids"]) == ["0", "1"]
    # both ran at once, each on the GPU Ray gave the node for it, never the same one
    assert sorted(_devices(r.stdout) for r in results) == sorted(node["gpu_ids"])


async def test_a_custom_resource_routes_to_its_node(two_nodes: RayCluster, tmp_path: Path) -> None:
    task = _task(tmp_path / "t", "[resources]\ncustom = {special = 1}\n")
    async with RayExecutor(task=task) as ex:
        assert (await ex.submit(_code())).ok
        assert [_node_ids()[n] for n in ex.stats["nodes"]] == ["second"]


async def test_a_task_no_node_fits_is_an_error_naming_what_it_needs(
    two_nodes: RayCluster, tmp_path: Path
) -> None:
    ex = RayExecutor(task=_task(tmp_path / "t", "[resources]\ngpus = 4\n"))
    with pytest.raises(RuntimeError, match=r"no Ray node can run .*CPU=1, GPU=4"):
        await ex.start()
    await ex.close()


async def test_an_actor_dying_twice_under_an_evaluation_gives_lost_never_cached(
    cpu_executor: RayExecutor,
) -> None:
    warm = await asyncio.gather(*(cpu_executor.submit(_code(delay=1.0 + i)) for i in range(2)))
    assert all(r.ok for r in warm)
    before = {n: v["evaluations"] for n, v in cpu_executor.stats["nodes"].items()}
    assert len(before) == 2 and all(before.values()), before
    code = _code(delay=4.0)
    pending = asyncio.ensure_future(cpu_executor.submit(code))
    killed: list[int] = []
    for _ in range(2):  # kill whichever node's sandbox actor is running it, twice
        deadline = time.monotonic() + 60
        while True:
            busy = [s for s in cpu_executor.stats["nodes"].values() if s["busy"]]
            if busy and busy[0]["pid"] not in killed:
                break
            assert time.monotonic() < deadline, "the evaluation never ran again"
            await asyncio.sleep(0.05)
        killed.append(busy[0]["pid"])
        os.kill(killed[-1], signal.SIGKILL)
    result = await pending
    assert result.status is Status.LOST and "not the program's fault" in (result.error or "")
    stats = cpu_executor.stats
    assert stats["actor_deaths"] == 2 and stats["lost"] == 1 and stats["reruns"] == 1
    again = await cpu_executor.submit(code)  # not cached: evaluated anew on a new actor
    assert again.ok and cpu_executor.stats["cache_hits"] == 0
    # a node's count is over the run: its replaced sandboxes' evaluations stay in it
    nodes = cpu_executor.stats["nodes"]
    assert all(nodes[n]["evaluations"] >= k for n, k in before.items()), (before, nodes)
    total = sum(v["evaluations"] for v in nodes.values())
    assert total == cpu_executor.stats["evaluations"] == sum(before.values()) + 1, nodes


def _cli(*args: str, cwd: Path, env: dict[str, str]) -> dict[str, object]:
    r = subprocess.run(
        [sys.executable, "-m", "aster_nb", "run", "toy", *args, "--quiet"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _scores(store: object) -> dict[str, float | None]:
    from aster_nb.store import Store

    s = Store(str(store))
    try:
        return {p.id: p.score for p in s.programs()}
    finally:
        s.close()


def test_a_cli_run_on_the_cluster_scores_as_the_local_one(
    two_nodes: RayCluster, tmp_path: Path
) -> None:
    args = ["--budget", "24", "--agents", "4", "--seed", "5"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    local = _cli(*args, "--out", str(tmp_path / "l"), cwd=tmp_path, env=env)
    on_ray = _cli(
        *args,
        *("--executor", "ray", "--ray-address", two_nodes.address),
        *("--out", str(tmp_path / "r")),
        cwd=tmp_path,
        env=env,
    )
    assert on_ray["executor"] == "ray" and on_ray["nodes"] == 2
    assert on_ray["isolation"] == local["isolation"]
    for key in ("evaluations", "best_score", "failed", "initial_score"):
        assert on_ray[key] == local[key], key
    assert _scores(on_ray["store"]) == _scores(local["store"])


def test_the_scaling_out_notebook_runs_on_the_cluster_with_its_dashboard(
    two_nodes: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the notebook as a researcher runs it, in a real kernel joining the cluster through
    # RAY_ADDRESS (test_notebooks runs it without, on a private Ray)
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "scaling_out.ipynb", as_version=4)
    monkeypatch.setenv("RAY_ADDRESS", two_nodes.address)
    monkeypatch.chdir(tmp_path)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "\n".join(o.get("text", "") for o in outputs)
    assert f"cluster: {two_nodes.address}" in text
    assert "nodes: 2 " in text, text
    per_node = [int(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if "  slots " in ln]
    assert len(per_node) == 2 and all(n > 0 for n in per_node), text  # both nodes evaluated
    widgets = [
        o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert widgets, "the dashboard is displayed"
    actors = [ln for ln in text.splitlines() if ": actor pid " in ln]
    assert len({ln.split(" on node ")[1][:8] for ln in actors}) == 2, f"workers on both: {text}"


def test_without_an_address_a_private_ray_is_started_and_stopped(tmp_path: Path) -> None:
    # short: Ray's socket paths under it must fit in 107 bytes
    tmp = Path(tempfile.mkdtemp(prefix="rp-", dir="/tmp"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env |= {"PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}
        args = ("--budget", "8", "--agents", "2", "--executor", "ray")
        summary = _cli(*args, cwd=tmp_path, env=env)
        assert summary["executor"] == "ray" and summary["nodes"] == 1
        assert summary["evaluations"] == 1 + 8  # the initial program and the budget
        deadline = time.monotonic() + 15  # Ray's agents notice their raylet is gone
        while tree(f"{tmp}/") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not tree(f"{tmp}/"), "the run's private Ray is stopped with it"
        assert not list(tmp.glob("aster_nb-ray-*")), "and its files removed"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def test_the_second_node_dying_mid_run_loses_no_program(
    two_nodes: RayCluster, tmp_path: Path
) -> None:
    # last in the module: it kills the second node (a test after it starts it again)
    task = _task(tmp_path / "t")
    slow = PROGRAM.replace("DELAY = 0.0", "DELAY = 0.3")
    (task.root / "initial_program.py").write_text(slow)
    task = Task.load(task.root)
    run = await Run.create(
        task,
        path=tmp_path / "run.sqlite",
        executor="ray",
        workers=1,
        agents=4,
        evaluations_per_round=16,
        ray_address=two_nodes.address,
    )
    try:
        stepping = asyncio.ensure_future(run.step())
        second = next(n for n, name in _node_ids().items() if name == "second")
        deadline = time.monotonic() + 60
        while not run.executor.stats["nodes"].get(second, {}).get("busy"):
            assert time.monotonic() < deadline, "nothing ever ran on the second node"
            await asyncio.sleep(0.02)
        assert two_nodes.second is not None
        os.kill(two_nodes.second.raylet_pid(), signal.SIGKILL)
        await stepping
        stats = run.executor.stats
        programs = run.store.programs()
    finally:
        await run.close()
    assert stats["actor_deaths"] >= 1 and stats["reruns"] >= 1 and stats["lost"] == 0
    head = [n for n, v in stats["nodes"].items() if n != second and v["slots"]]
    assert head, "the rest ran on the head"
    assert stats["nodes"].get(second, {}).get("slots", 0) == 0, "no sandbox on the dead node"
    assert second in stats["unplaced"], "and why is said"
    assert stats["evaluations"] == sum(v["evaluations"] for v in stats["nodes"].values())
    assert len(programs) == 17, "the initial program and the round's 16, none lost"
    assert all(p.status is not Status.LOST for p in programs)


async def test_a_noisy_task_s_seeds_reach_the_nodes(two_nodes: RayCluster) -> None:
    from .test_noise import NOISY

    task = Task.load(NOISY)
    async with RayExecutor(task=task) as ex:
        a, b = await asyncio.gather(
            ex.submit(task.initial_code, seed=0), ex.submit(task.initial_code, seed=1)
        )
        assert a.score == pytest.approx(0.99) and b.score == pytest.approx(1.0)
        hits = ex.stats["cache_hits"]
        assert (await ex.submit(task.initial_code, seed=1)).score == b.score
        assert ex.stats["cache_hits"] == hits + 1  # cached per seed, as locally


async def test_reports_stream_back_from_the_nodes_and_stop_runs_early(
    two_nodes: RayCluster,
) -> None:
    """Intermediate values and early stopping behave on Ray as locally: every report reaches
    the driver's listener; a Watch's rule stops a clearly worse run on the node at that very
    report; a listener without a rule stops it by a call, one report later."""
    from aster_nb.agents.noise import Watch

    from .test_noise import NOISY, variant

    task = Task.load(NOISY)
    seen: list[tuple[int, float]] = []

    def record(step: int, values: dict[str, float]) -> bool:
        seen.append((step, values["loss"]))
        return False

    def stop_now(step: int, values: dict[str, float]) -> bool:
        seen.append((step, values["loss"]))
        return True

    async with RayExecutor(task=task) as ex:
        parent = await ex.submit(task.initial_code, seed=0, listener=record)
        assert parent.status is Status.OK
        assert [s for s, _ in seen] == [0, 10, 20, 30, 40, 50, 60, 70]
        curve, seen[:] = list(seen), []
        watch = Watch(seed=0, plan=task.evaluation, parent=curve)
        worse = await ex.submit(variant(task, LOSS=3.0, SLEEP=0.5), seed=0, listener=watch)
        # stopped at the first step past a quarter of the parent's 70 (20), on the node
        assert worse.status is Status.STOPPED and worse.metrics["step"] == 20.0
        assert watch.stopped_at == 20 and worse.seconds < 2.5
        asked = await ex.submit(variant(task, SLEEP=0.5), seed=0, listener=stop_now)
        assert asked.status is Status.STOPPED and asked.metrics["step"] in (10.0, 20.0)
        assert seen[0][0] == 0 and len(seen) <= 3
