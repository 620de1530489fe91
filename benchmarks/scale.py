"""How far a run scales: 64 to 2,000 concurrent agents, local sandbox vs Ray, workers in the
driver process or in Ray actors.

Each condition is a fresh process running ``toy`` (evaluations take milliseconds, so the
driver, not the evaluator, is what is measured) with ``--workers`` workers sharing the
agents, every model call taking ``--latency`` s like a remote LLM's. After ``--warmup`` s
it measures ``--window`` s: attempts/s (attempts recorded in the store, any outcome) and
evaluations/s, the driver's CPU (``process_time``) and that of the evaluations' processes (the
sandbox server's or the Ray cluster's, from ``/proc``),
and the driver's resident memory per agent. Then, for ``--profile`` s, a sampler reads the
driver's main-thread stack every 2 ms and charges each sample to the innermost
``aster_nb`` module on it (:data:`STAGES`): the split of the driver's CPU per attempt by
stage. Samples with the loop waiting in ``select`` are idle.

The limit a run is compared with is ``min(agents / latency, cores / CPU per evaluation)``
(the model calls' rate, and what the machine can evaluate), with CPU per evaluation the
CPU of the evaluations' processes per evaluation; each run is reported as a share of it.

Executors: ``local`` (the warm sandbox server on this machine), ``ray1`` (a one-node Ray
cluster with every core) and ``ray2`` (two nodes on this machine splitting the cores),
started and stopped by PID as in the tests (``tests/ray_cluster.py``); ``ray1-actors`` and
``ray2-actors`` run each worker in a Ray actor of its own (``worker_actors=True``, see
:mod:`aster_nb.actors`), and their CPU (with the evaluation service's) is reported apart
(``actors_cpu_*``), not counted as the evaluations'. ``--runs FILE``
keeps one JSON line per finished condition so an interrupted benchmark resumes.

    python benchmarks/scale.py [--agents 64,256,1000,2000] [--executors local,ray1,ray2]
        [--latency 1.0] [--warmup 10] [--window 30] [--profile 8] [--json F] [--plot F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

#: module path prefix (under aster_nb/) -> stage; the first match wins
STAGES = (
    ("llm/", "model client"),
    ("agents/prompts", "prompt"),
    ("prompts/", "prompt"),
    ("edits", "edit"),
    ("blocks", "edit"),
    ("agents/attempt", "edit"),
    ("sandbox/", "evaluation"),
    ("archive/", "archive"),
    ("features", "archive"),
    ("embedding", "archive"),
    ("geometry", "archive"),
    ("store/", "store"),
    ("events", "events"),
    ("snapshot/", "events"),
    ("ui/", "events"),
    ("agents/", "agent loop"),
    ("actors/", "worker sync"),
)


def _stage(frame: Any) -> str:
    """The stage of the innermost aster_nb frame on ``frame``'s stack."""
    top = frame
    while frame is not None:
        path = frame.f_code.co_filename
        i = path.rfind("/aster_nb/")
        if i >= 0:
            rel = path[i + len("/aster_nb/") :]
            return next((s for prefix, s in STAGES if rel.startswith(prefix)), "other aster_nb")
        frame = frame.f_back
    if top is not None and top.f_code.co_name == "select":
        return "idle"
    return "event loop"


class Sampler:
    """Samples the main thread's stack every ``interval`` s from a thread (the benchmark's
    only thread: the driver's loop must not know it is watched)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.counts = interval, Counter[str]()
        self._stop = threading.Event()
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            frame = sys._current_frames().get(self._main)
            self.counts[_stage(frame)] += 1

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_outside(marker: str | None) -> float:
    """CPU seconds of this process's descendants and of the Ray cluster's processes (those
    whose command line names ``marker``, its temp root), reaped children included: the
    evaluations' CPU, with nothing of other users of the machine."""
    from tests.ray_cluster import processes, tree

    procs = processes()
    me = os.getpid()
    kids = _descendants(me, procs)
    if marker:
        kids |= set(tree(marker, procs))
    kids.discard(me)
    return _cpu_of(kids)


def _cpu_of(pids: Iterable[int]) -> float:
    """CPU seconds of the processes ``pids``, their reaped children included."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in stat[11:15]) / tick  # utime stime cutime cstime
    return total


def _descendants(root: int, procs: dict[int, tuple[int, str]]) -> set[int]:
    out, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in procs.items() if ppid in frontier} - out
        out |= frontier
    return out


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(cfg: dict[str, Any]) -> dict[str, Any]:
    """One condition, in this process: the numbers of the module docstring."""
    from aster_nb import Run

    agents, workers, marker = cfg["agents"], cfg["workers"], cfg.get("marker")
    tmp = Path(tempfile.mkdtemp(prefix="scale-"))
    rss0 = _rss_mb()
    run = await Run.create(
        "toy",
        path=tmp / "run.sqlite",
        workers=workers,
        agents=agents // workers,
        latency=cfg["latency"],
        evaluations_per_round=10**9,
        seed=0,
        executor="ray" if cfg["executor"].startswith("ray") else "local",
        ray_address=cfg.get("address"),
        worker_actors=cfg["executor"].endswith("-actors"),
    )
    run.start(rounds=1)
    try:
        await asyncio.sleep(cfg["warmup"])
        actors = [w.host.get("pid") for w in run.workers.values() if hasattr(w, "host")]
        if None in actors:  # a worker actor still starting after the warm-up: wait for it
            while any("pid" not in w.host for w in run.workers.values()):
                await asyncio.sleep(0.5)
            await asyncio.sleep(cfg["warmup"])
            actors = [w.host["pid"] for w in run.workers.values()]
        actors += [run.executor.pid] if getattr(run.executor, "pid", None) else []
        a0, e0 = run.store.count("attempts"), run.store.evaluations()
        c0, o0, w0 = time.process_time(), _cpu_outside(marker), time.monotonic()
        x0 = _cpu_of(actors)
        await asyncio.sleep(cfg["window"])
        a1, e1 = run.store.count("attempts"), run.store.evaluations()
        c1, o1, w1 = time.process_time(), _cpu_outside(marker), time.monotonic()
        x1 = _cpu_of(actors)
        rss = _rss_mb()
        with Sampler() as sampler:
            await asyncio.sleep(cfg["profile"])
        a2 = run.store.count("attempts")
    finally:
        await run.stop()
        await run.close()
    seconds, cores = w1 - w0, os.cpu_count() or 1
    attempts, evaluations = a1 - a0, e1 - e0
    actors_cpu = x1 - x0
    driver_cpu, outside_cpu = c1 - c0, o1 - o0 - actors_cpu
    per_eval = max(outside_cpu, 0.0) / max(evaluations, 1)
    limit = min(agents / cfg["latency"], cores / per_eval if per_eval else float("inf"))
    busy = {k: v for k, v in sampler.counts.items() if k != "idle"}
    total = sum(sampler.counts.values()) or 1
    per_attempt_ms = 1000 * driver_cpu / max(attempts, 1)
    share = {k: v / (sum(busy.values()) or 1) for k, v in busy.items()}
    return {
        **{k: cfg[k] for k in ("executor", "agents", "workers", "latency")},
        "seconds": round(seconds, 2),
        "attempts_per_s": round(attempts / seconds, 2),
        "evaluations_per_s": round(evaluations / seconds, 2),
        "limit_per_s": round(limit, 2),
        "share_of_limit": round(attempts / seconds / limit, 3),
        "driver_cpu_per_attempt_ms": round(per_attempt_ms, 3),
        "driver_cpu_share": round(driver_cpu / seconds, 3),
        "cpu_per_evaluation_ms": round(1000 * per_eval, 3),
        "evaluation_cpu_share": round(outside_cpu / seconds / cores, 3),
        "actors_cpu_per_attempt_ms": round(1000 * actors_cpu / max(attempts, 1), 3),
        "actors_cpu_share": round(actors_cpu / seconds, 3),
        "rss_mb": round(rss, 1),
        "kb_per_agent": round(1024 * (rss - rss0) / agents, 1),
        "stage_ms_per_attempt": {k: round(v * per_attempt_ms, 3) for k, v in share.items()},
        "idle_share": round(sampler.counts["idle"] / total, 3),
        "profile_attempts": a2 - a1,
    }


def _cluster(kind: str) -> Any:
    """A Ray cluster on this machine: one node with every core, or two splitting them."""
    from tests.ray_cluster import RayCluster, free_port

    cores = os.cpu_count() or 1

    class Cluster(RayCluster):
        def start(self) -> None:
            n = cores if kind.startswith("ray1") else max(1, cores // 2)
            head = ["--head", f"--port={self.port}", f"--num-cpus={n}", "--num-gpus=0"]
            head += ["--include-dashboard=false", f"--dashboard-port={free_port()}", "--no-monitor"]
            self.head = self._node("h", head)
            self._run([self.head])
            if kind.startswith("ray2"):
                second = [f"--address={self.address}", f"--num-cpus={max(1, cores - n)}"]
                self.second = self._node("n", second)
                self._run([self.second])

    c = Cluster()
    c.start()
    return c


def _condition(cfg: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    timeout = cfg["warmup"] + cfg["window"] + cfg["profile"] + 300
    proc = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(cfg)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {**cfg, "error": proc.stderr.strip().splitlines()[-5:]}
    return json.loads(lines[-1])


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for ex in sorted({r["executor"] for r in rows}):
        mine = sorted(
            (r for r in rows if r["executor"] == ex and "error" not in r), key=lambda r: r["agents"]
        )
        xs = [r["agents"] for r in mine]
        ax1.plot(xs, [r["evaluations_per_s"] for r in mine], "o-", label=f"{ex}")
        ax2.plot(xs, [r["share_of_limit"] for r in mine], "o-", label=ex)
    ax1.set(xscale="log", xlabel="concurrent agents", ylabel="evaluations / s")
    ax2.set(xscale="log", xlabel="concurrent agents", ylabel="share of the limit", ylim=(0, 1.05))
    for ax in (ax1, ax2):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle("toy, 1 s model latency: local sandbox vs Ray, workers in the driver or in actors")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", default="64,256,1000,2000")
    ap.add_argument("--executors", default="local,ray1,ray2")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--window", type=float, default=30.0)
    ap.add_argument("--profile", type=float, default=8.0)
    ap.add_argument("--json", type=Path, default=RESULTS / "scale.json")
    ap.add_argument("--plot", type=Path, default=RESULTS / "scale.png")
    ap.add_argument("--runs", type=Path, default=None, help="JSON lines of finished conditions")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # a condition's own process
        print(json.dumps(asyncio.run(measure(json.loads(args.one)))), flush=True)
        return
    done: list[dict[str, Any]] = []
    if args.runs and args.runs.exists():
        done = [json.loads(ln) for ln in args.runs.read_text().splitlines() if ln.strip()]
    have = {(r["executor"], r["agents"]) for r in done if "error" not in r}
    for ex in args.executors.split(","):
        todo = [int(a) for a in args.agents.split(",") if (ex, int(a)) not in have]
        if not todo:
            continue
        cluster = _cluster(ex) if ex.startswith("ray") else None
        env = {**os.environ, **(cluster.env if cluster else {}), "PYTHONPATH": str(ROOT)}
        try:
            for n in todo:
                cfg = {"executor": ex, "agents": n, "workers": args.workers}
                cfg |= {k: getattr(args, k) for k in ("latency", "warmup", "window", "profile")}
                if cluster:
                    cfg |= {"address": cluster.address, "marker": f"{cluster.root}/"}
                row = _condition(cfg, env)
                print(json.dumps(row), file=sys.stderr, flush=True)
                done.append(row)
                if args.runs:
                    with args.runs.open("a") as f:
                        f.write(json.dumps(row) + "\n")
        finally:
            if cluster:
                cluster.stop()
    out = {"machine": {"cores": os.cpu_count(), "python": platform.python_version()}, "runs": done}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    if args.plot:
        _plot(done, args.plot)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
