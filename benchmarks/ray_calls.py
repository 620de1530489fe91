"""What one Ray actor call costs the caller: the floor under workers as Ray actors.

An async actor (the worker's stand-in) runs ``--agents`` concurrent loops, each waiting
``--latency`` s (the model) and then calling another async actor (the evaluation
service's stand-in, which answers after 10 ms). Reported per agent count: calls/s and the
caller's CPU per call (``process_time`` inside the actor). In a run with worker actors an
evaluation is two such calls (worker -> service -> node sandbox), and each worker's sync
with the driver one more every 50 ms. A private Ray on this machine, started and stopped.

    python benchmarks/ray_calls.py [--agents 50,250,500] [--seconds 10] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


class Service:
    async def evaluate(self, code: str) -> str:
        await asyncio.sleep(0.01)
        return code[:10]


class Host:
    def __init__(self, service: object) -> None:
        self.service = service

    async def go(self, agents: int, seconds: float, latency: float, payload: str) -> list[float]:
        done = 0
        stop = time.monotonic() + seconds

        async def agent() -> None:
            nonlocal done
            while time.monotonic() < stop:
                await asyncio.sleep(latency)
                await self.service.evaluate.remote(payload)  # type: ignore[attr-defined]
                done += 1

        c0 = time.process_time()
        await asyncio.gather(*(agent() for _ in range(agents)))
        return [done, time.process_time() - c0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", default="50,250,500")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--json", type=Path, default=RESULTS / "ray_calls.json")
    args = ap.parse_args()
    import ray

    tmp = tempfile.mkdtemp(prefix="rc-", dir="/tmp")  # Ray's socket paths must stay short
    ray.init(address="local", include_dashboard=False, _temp_dir=tmp, logging_level="ERROR")
    rows = []
    try:
        service = ray.remote(num_cpus=0)(Service).remote()
        for n in (int(a) for a in args.agents.split(",")):
            host = ray.remote(num_cpus=0)(Host).remote(service)
            done, cpu = ray.get(host.go.remote(n, args.seconds, args.latency, "x" * 3000))
            rows.append(
                {
                    "agents": n,
                    "calls_per_s": round(done / args.seconds, 1),
                    "caller_cpu_ms_per_call": round(1000 * cpu / max(done, 1), 3),
                    "caller_cpu_share": round(cpu / args.seconds, 3),
                }
            )
            ray.kill(host)
    finally:
        ray.shutdown()
    out = {"machine": {"cores": os.cpu_count(), "python": platform.python_version()}, "runs": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
