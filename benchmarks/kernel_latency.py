"""A trivial cell's round trip through a real Jupyter kernel while a large run is live.

Starts a ``python3`` kernel with jupyter_client and, per condition, measures ``--n``
``execute_request``\\ s of ``1+1`` sent one after another (send -> ``execute_reply`` on the
shell channel, ``perf_counter``). Conditions, each in a fresh kernel:

* ``idle``: nothing else in the kernel (the floor: ZMQ and the kernel's message loop);
* ``run``: ``Run.create(task, workers=W, agents=K, latency=L, ...)`` and ``run.start()``:
  ``W * K`` agents (256 by default) share the kernel's event loop with the cells, each model
  call taking ``L`` s like a remote LLM's, so about that many calls are in flight;
* ``dashboard``: the same with ``display(aster_nb.ui.Dashboard(run))`` live. No front-end is
  attached: the widgets' comm messages go to iopub, which this client drains. Skipped, with
  a note, while ``aster_nb.ui`` is not importable.

Measuring starts ``--warmup`` s after ``run.start()`` and stops after ``--n`` requests or
``--duration`` s; requests are ``--interval`` s apart, so 300 of them sample about half a
minute of the run rather than a second. Evaluations per second over that time come from
``run.status.evaluations`` read before and after, and the kernel's CPU per evaluation from
its process time. Probes in the kernel name the culprit when a round trip is slow: the
event loop's lag (how late a 5 ms sleep wakes), and every loop callback and every garbage
collection that took over ``--slow-ms`` (a callback with the coroutine frames it ran up to,
or the dashboard view it redrew). ``--gc-freeze`` calls ``gc.freeze()`` before the run
starts, to see what full collections of the kernel's heap cost. ``--profile PATH`` runs
cProfile in the kernel over the last condition's measurement (much slower: for finding hot
spots, not for the numbers). ``--task toy`` evaluates in milliseconds, so the event loop,
not the sandbox, limits the rate: the harder case for the kernel.

Prints JSON (p50/p95/p99/max ms and evaluations/s per condition, agents, machine) and
writes it, with every latency, to ``--json``, and the latency CDFs to ``--plot``.

    python benchmarks/kernel_latency.py [--task circle_packing] [--workers 4] [--agents 64]
        [--latency 1.0] [--n 300] [--warmup 30] [--duration 60] [--no-dashboard]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from jupyter_client.manager import AsyncKernelManager

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# Runs in the kernel first. _lag: how late a 5 ms sleep woke. _slow: loop callbacks that
# took over the limit, with the coroutine frames a task step stopped at (what it ran up to).
PROBES = """
import asyncio as _asyncio, asyncio.events as _events, time as _time
_lag, _slow = [], []
async def _probe():
    while True:
        t = _time.perf_counter()
        await _asyncio.sleep(0.005)
        _lag.append(_time.perf_counter() - t - 0.005)
_probe_task = _asyncio.get_running_loop().create_task(_probe())

def _where(cb):
    task = getattr(cb, "__self__", None)
    if not isinstance(task, _asyncio.Task):
        name = getattr(cb, "__qualname__", None) or repr(cb)[:100]
        draw = getattr(task, "draw", None)  # a dashboard Throttle: name the view it redraws
        return f"{{name}} ({{draw.__qualname__}})" if callable(draw) else name
    c, out = task.get_coro(), []
    while c is not None and getattr(c, "cr_frame", None) is not None:
        out.append(f"{{c.cr_code.co_qualname}}:{{c.cr_frame.f_lineno}}")
        c = c.cr_await
    return " > ".join(out[-3:]) or task.get_name()

_handle_run = _events.Handle._run
def _timed_run(self, _limit={slow_s}):
    t = _time.perf_counter()
    _handle_run(self)
    d = _time.perf_counter() - t
    if d > _limit:
        _slow.append((round(d * 1000, 1), _where(self._callback)))
_events.Handle._run = _timed_run

import gc as _gc
_gcs, _gc_t0 = [], [0.0]
def _gc_timer(phase, info):
    if phase == "start":
        _gc_t0[0] = _time.perf_counter()
    elif (d := _time.perf_counter() - _gc_t0[0]) > {slow_s}:
        _gcs.append((round(d * 1000, 1), info["generation"], info["collected"]))
_gc.callbacks.append(_gc_timer)
"""

CREATE = """
import shutil as _shutil, tempfile as _tf
from aster_nb.run import Run
_dir = _tf.mkdtemp(prefix="aster-kernel-latency-")
run = await Run.create({task!r}, path=_dir + "/run.sqlite", workers={workers}, agents={agents},
                       evaluations={evaluations}, latency={latency}, seed={seed})
"""

DASHBOARD = """
from IPython.display import display
from aster_nb.ui import Dashboard
_dash = Dashboard(run)
display(_dash)
"""

CLOSE = """
await run.close()
_shutil.rmtree(_dir, ignore_errors=True)
"""

PROFILE_ON = "import cProfile as _cp\n_prof = _cp.Profile()\n_prof.enable()"
PROFILE_OFF = "_prof.disable()\n_prof.dump_stats({path!r})"

RUN_COUNTERS = {"evaluations": "run.status.evaluations", "state": "run.status.state"}
PROBE_COUNTERS = {
    "lag": "len(_lag)",
    "slow": "len(_slow)",
    "gcs": "len(_gcs)",
    "cpu": "__import__('time').process_time()",
}


class Kernel:
    """One kernel and a client whose iopub is drained in the background."""

    def __init__(self) -> None:
        self.km = AsyncKernelManager(kernel_name="python3")
        self.kc: Any = None
        self._drain: asyncio.Task[None] | None = None
        self.iopub_messages = 0

    async def __aenter__(self) -> Kernel:
        await self.km.start_kernel(cwd=str(ROOT))
        self.kc = self.km.client()
        self.kc.start_channels()
        await self.kc.wait_for_ready(timeout=60)
        self._drain = asyncio.get_running_loop().create_task(self._drain_iopub())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._drain is not None:
            self._drain.cancel()
        self.kc.stop_channels()
        await self.km.shutdown_kernel(now=False)

    async def _drain_iopub(self) -> None:
        while True:
            await self.kc.get_iopub_msg()
            self.iopub_messages += 1

    async def execute(
        self, code: str, *, timeout: float = 120.0, expressions: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Run ``code``; the reply's content (raises with the traceback if the cell failed)."""
        msg_id = self.kc.execute(code, user_expressions=expressions or {}, store_history=False)
        content = (await self._reply(msg_id, timeout))["content"]
        if content["status"] != "ok":
            raise RuntimeError(
                f"cell failed in the kernel: {code.strip()[:80]!r}\n"
                + "\n".join(content.get("traceback", []))
            )
        return content

    async def _reply(self, msg_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.kc.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    async def round_trip(self) -> float:
        """Seconds from sending ``1+1`` to its ``execute_reply``."""
        t0 = time.perf_counter()
        msg_id = self.kc.execute("1+1", store_history=False)
        await self._reply(msg_id, 60.0)
        return time.perf_counter() - t0

    async def values(self, exprs: dict[str, str]) -> dict[str, Any]:
        """Evaluate expressions in the kernel, passed back as JSON."""
        wrapped = {k: f"__import__('json').dumps({e})" for k, e in exprs.items()}
        content = await self.execute("pass", expressions=wrapped)
        out = {}
        for k, v in content["user_expressions"].items():
            if v["status"] != "ok":
                raise RuntimeError(f"user expression {exprs[k]!r} failed: {v.get('evalue')}")
            # text/plain is the repr of the JSON string (IPython would elide a long list)
            out[k] = json.loads(ast.literal_eval(v["data"]["text/plain"]))
        return out


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "mean_ms": round(float(ms.mean()), 2),
    }


async def condition(name: str, a: argparse.Namespace, *, profile: str | None) -> dict[str, Any]:
    """Measure one condition in a fresh kernel."""
    async with Kernel() as k:
        await k.execute(PROBES.format(slow_s=a.slow_ms / 1000.0))
        where = await k.values(
            {"pid": "__import__('os').getpid()", "package": "__import__('aster_nb').__file__"}
        )
        print(
            f"[kernel_latency] {name}: kernel pid {where['pid']}, {where['package']}",
            file=sys.stderr,
            flush=True,
        )
        live = name != "idle"
        if live:
            await k.execute(
                CREATE.format(
                    task=a.task,
                    workers=a.workers,
                    agents=a.agents,
                    evaluations=a.evaluations,
                    latency=a.latency,
                    seed=a.seed,
                )
            )
            if name == "dashboard":
                await k.execute(DASHBOARD)
            if a.gc_freeze:
                await k.execute("import gc as _gc2; _gc2.collect(); _gc2.freeze()")
            await k.execute("run.start()")
        await asyncio.sleep(a.warmup if live else 1.0)
        if profile:
            await k.execute(PROFILE_ON)
        counters = {**PROBE_COUNTERS, **(RUN_COUNTERS if live else {})}
        before = await k.values(counters)
        t0 = time.perf_counter()
        lat: list[float] = []
        while len(lat) < a.n and time.perf_counter() - t0 < a.duration:
            lat.append(await k.round_trip())
            await asyncio.sleep(a.interval)
        wall = time.perf_counter() - t0
        after = await k.values(
            {
                **counters,
                "lag_ms": f"[round(x * 1000, 2) for x in _lag[{before['lag']}:]]",
                "slow_ms": f"sorted(_slow[{before['slow']}:], reverse=True)",
                "gc_ms": f"sorted(_gcs[{before['gcs']}:], reverse=True)",
                **(
                    {"dashboard_errors": "[repr(e) for e in _dash.errors]"}
                    if name == "dashboard"
                    else {}
                ),
            }
        )
        if profile:
            await k.execute(PROFILE_OFF.format(path=str(Path(profile).resolve())))
        cpu = after["cpu"] - before["cpu"]  # the kernel process's CPU seconds, all threads
        out: dict[str, Any] = {"condition": name, "kernel_cpu_share": round(cpu / wall, 3)}
        if live:
            evals = after["evaluations"] - before["evaluations"]
            out |= {
                "agents": a.workers * a.agents,
                "dashboard": name == "dashboard",
                "state": after["state"],
                "evaluations": evals,
                "evaluations_per_s": round(evals / wall, 1),
                "kernel_cpu_ms_per_evaluation": round(cpu * 1000 / max(evals, 1), 2),
            }
            # the agents and the sandbox server stop before the kernel does
            await k.execute(CLOSE, timeout=120.0)
        lag = np.asarray(after["lag_ms"]) if after["lag_ms"] else np.zeros(1)
        out |= {
            "requests": len(lat),
            "wall_s": round(wall, 2),
            **percentiles(lat),
            "loop_lag_p95_ms": round(float(np.percentile(lag, 95)), 2),
            "loop_lag_max_ms": round(float(lag.max()), 2),
            f"callbacks_over_{a.slow_ms:g}ms": len(after["slow_ms"]),
            "slowest_callbacks": [[ms, where] for ms, where in after["slow_ms"][:5]],
            # garbage collections over the limit: [ms, generation, objects collected]
            f"gc_pauses_over_{a.slow_ms:g}ms": after["gc_ms"][:5],
            "iopub_messages": k.iopub_messages,
            "latencies_ms": [round(x * 1000.0, 3) for x in lat],
        }
        if name == "dashboard":
            out["dashboard_errors"] = after["dashboard_errors"]
        return out


def ui_available() -> bool:
    try:
        import aster_nb.ui  # noqa: F401
    except ImportError:
        return False
    return True


def plot(results: list[dict[str, Any]], path: Path, meta: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in results:
        xs = np.sort(np.asarray(r["latencies_ms"]))
        ys = np.arange(1, len(xs) + 1) / len(xs)
        label = f"{r['condition']}: p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms"
        if "evaluations_per_s" in r:
            label += f", {r['evaluations_per_s']:.0f} evals/s"
        ax.step(xs, ys, where="post", label=label)
    ax.axvline(100, color="grey", ls="--", lw=1)
    ax.axhline(0.95, color="grey", ls=":", lw=1)
    ax.text(100, 0.5, " 100 ms", color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("round trip of a trivial cell, send to execute_reply (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(
        f"{meta['task']}: {meta['agents']} agents, model latency {meta['latency']:g} s, "
        f"{meta['cores']} cores",
        fontsize=10,
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


async def main(a: argparse.Namespace) -> dict[str, Any]:
    conditions = [c for c in a.conditions if c != "dashboard"]
    note = None
    if "dashboard" in a.conditions and a.dashboard:
        if ui_available():
            conditions.append("dashboard")
        else:
            note = "aster_nb.ui is not importable yet: the dashboard condition was skipped"
    results = []
    for i, c in enumerate(conditions):
        last = i == len(conditions) - 1
        results.append(await condition(c, a, profile=a.profile if last else None))
    meta = {
        "task": a.task,
        "workers": a.workers,
        "agents_per_worker": a.agents,
        "agents": a.workers * a.agents,
        "latency": a.latency,
        "cores": os.cpu_count(),
        "processor": _cpu_model(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    out: dict[str, Any] = {
        **meta,
        "n": a.n,
        "interval_s": a.interval,
        "warmup_s": a.warmup,
        "gc_freeze": a.gc_freeze,
        "p95_target_ms": 100,
    }
    if note:
        out["note"] = note
    out["conditions"] = {
        r["condition"]: {k: v for k, v in r.items() if k not in ("condition", "latencies_ms")}
        for r in results
    }
    if a.plot:
        plot(results, Path(a.plot), meta)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        full = {**out, "latencies_ms": {r["condition"]: r["latencies_ms"] for r in results}}
        Path(a.json).write_text(json.dumps(full, indent=1) + "\n")
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="circle_packing")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--agents", type=int, default=64, help="agents per worker")
    ap.add_argument("--latency", type=float, default=1.0, help="offline model's delay (s)")
    ap.add_argument("--evaluations", type=int, default=1_000_000, help="per worker per round")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=300, help="requests per condition")
    ap.add_argument("--interval", type=float, default=0.1, help="pause between requests (s)")
    ap.add_argument("--warmup", type=float, default=30.0, help="seconds from start to measuring")
    ap.add_argument("--duration", type=float, default=60.0, help="most seconds of measuring")
    ap.add_argument(
        "--conditions",
        nargs="+",
        choices=["idle", "run", "dashboard"],
        default=["idle", "run", "dashboard"],
    )
    ap.add_argument(
        "--dashboard",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure with the live dashboard too (when aster_nb.ui is importable)",
    )
    ap.add_argument("--slow-ms", type=float, default=50.0, help="report loop callbacks over this")
    ap.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() in the kernel before run.start() (full collections then skip "
        "everything imported and built so far)",
    )
    ap.add_argument("--profile", default=None, help="cProfile the last condition to this file")
    ap.add_argument("--json", default=str(RESULTS / "kernel_latency.json"))
    ap.add_argument("--plot", default=str(RESULTS / "kernel_latency.png"))
    print(json.dumps(asyncio.run(main(ap.parse_args())), indent=2))
