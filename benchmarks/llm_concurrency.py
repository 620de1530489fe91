"""Client-side cost of many concurrent model calls through the real Anthropic SDK.

Prints JSON: for bursts of N concurrent calls (100, 300, 1000 by default) through
:class:`~aster_nb.llm.anthropic.AnthropicModel` (``max_concurrency=N``) to a local
Messages-API server that answers each call after ``--latency`` seconds (1 s): achieved
calls/s against the ideal (N calls in flight for 1 s each is N/s), p50/p95 latency, and
the client process's CPU seconds per call. Each N runs two bursts on one model: ``cold``
(every connection is new) and ``warm`` (the pool's kept-alive connections are reused).

The server runs in its own process (``python -m tests.messages_server``), so the CPU
measured here is the client's alone and the two do not share one core's event loop; the
server's CPU per call is reported beside it, read from /proc.

    python benchmarks/llm_concurrency.py [--latency 1.0] [--sizes 100 300 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from aster_nb.llm import Request, user
from aster_nb.llm.anthropic import AnthropicModel

ROOT = Path(__file__).resolve().parents[1]

PROMPT = "Propose one small change to the program below.\n" + "x = 1\n" * 200  # ~1.2 kB


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def burst(model: AnthropicModel, n: int, latency: float, server_pid: int) -> dict[str, Any]:
    req = Request(messages=(user(PROMPT),), system="You are a benchmark.", max_tokens=256)
    cpu0, srv0, t0 = time.process_time(), _cpu_of(server_pid), time.perf_counter()
    rs = await asyncio.gather(*(model.complete(req) for _ in range(n)))
    wall = time.perf_counter() - t0
    cpu, srv = time.process_time() - cpu0, _cpu_of(server_pid) - srv0
    lat = sorted(r.latency for r in rs)
    return {
        "calls": n,
        "wall_s": round(wall, 3),
        "calls_per_s": round(n / wall, 1),
        "ideal_calls_per_s": round(n / latency, 1),
        "efficiency": round((n / wall) / (n / latency), 3),
        "p50_latency_s": round(statistics.median(lat), 3),
        "p95_latency_s": round(lat[int(0.95 * (n - 1))], 3),
        "client_cpu_ms_per_call": round(1000 * cpu / n, 3),
        "server_cpu_ms_per_call": round(1000 * srv / n, 3),
    }


async def main(sizes: list[int], latency: float) -> dict[str, Any]:
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.messages_server",
        "--latency",
        str(latency),
        "--lifetime",
        "900",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert server.stdout is not None and server.stdin is not None
    url = json.loads(await server.stdout.readline())["url"]
    out: dict[str, Any] = {"latency_s": latency, "server": "subprocess", "cores": os.cpu_count()}
    try:
        for n in sizes:
            model = AnthropicModel(
                model="claude-haiku-4-5",
                api_key="sk-ant-benchmark",
                base_url=url,
                max_concurrency=n,
                timeout=60.0,
            )
            async with model:
                cold = await burst(model, n, latency, server.pid)
                warm = await burst(model, n, latency, server.pid)
            assert model.stats["failures"] == 0 and model.stats["retries"] == 0, model.stats
            out[str(n)] = {"cold": cold, "warm": warm}
    finally:
        server.stdin.close()  # the server stops when its stdin closes
        await server.wait()
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=1.0, help="server reply delay (s)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    a = ap.parse_args()
    print(json.dumps(asyncio.run(main(a.sizes, a.latency)), indent=2))
