"""A real two-node Ray cluster on this machine for tests, started and stopped by PID.

``ray start --head`` (1 CPU, no GPU) and ``ray start --address ...`` for a second node
(1 CPU, two logical GPUs, the custom resource ``special``), each with a private temp dir,
its node address 127.0.0.1, the dashboard off (the API server it still starts bound to
127.0.0.1), every port Ray would otherwise take from a fixed default chosen free (two
clusters on one machine must not collide), no usage statistics, and token authentication
with a fresh token: Ray's servers listen on every interface whatever the node address, so
the token keeps other users of the network out. The driver (pytest, and any run it starts)
gets the token through the environment.

Stopping never uses ``ray stop`` (it stops every Ray of the user on the machine): a node's
processes are those whose command line names its private temp dir, plus their children
(the agents Ray renames ``ray::...``), found in ``/proc`` and killed by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (parent pid, command line)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out[int(entry)] = (ppid, cmd)
    return out


def tree(marker: str, procs: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """The pids of processes whose command line contains ``marker``, and their
    descendants."""
    procs = processes() if procs is None else procs
    found = {pid for pid, (_, cmd) in procs.items() if marker in cmd and pid != os.getpid()}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in procs.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return sorted(found)


def kill_all(pids: list[int], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL what is left after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        end = time.monotonic() + (grace if sig == signal.SIGTERM else 0)
        while time.monotonic() < end and any(_alive(p) for p in pids):
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Node:
    """One ``ray start`` of the cluster: its temp dir names its processes."""

    temp_dir: Path
    args: list[str]
    log: str = ""

    def pids(self) -> list[int]:
        return tree(f"{self.temp_dir}/")  # the slash: /tmp/rt-x/n is no prefix of another

    def raylet_pid(self) -> int:
        procs = processes()
        return next(
            pid
            for pid, (_, cmd) in procs.items()
            if "raylet/raylet" in cmd and str(self.temp_dir) in cmd
        )


@dataclass
class RayCluster:
    """A head and a second node; :meth:`start`, :meth:`stop` (by PID)."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rt-")))
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    head: Node | None = None
    second: Node | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a driver of this cluster needs in its environment."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def _node(self, name: str, args: list[str]) -> Node:
        temp = self.root / name
        temp.mkdir(exist_ok=True)
        ports = [
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
        ]
        common = [
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
            # fewer of Ray's Python helpers importing Ray at once: on a loaded machine the
            # raylet gives its agents 15 s to report their ports, then aborts
            "--include-log-monitor=false",
        ]
        return Node(temp, [RAY, "start", *args, *common, *ports])

    def start(self) -> None:
        """Start the head, then the second node (one at a time: see ``_node``)."""
        self.head = self._node(
            "h",
            [
                "--head",
                f"--port={self.port}",
                "--num-cpus=1",
                "--num-gpus=0",
                "--include-dashboard=false",
                f"--dashboard-port={free_port()}",
                "--no-monitor",  # the autoscaler's monitor: nothing to scale here
            ],
        )
        self._run([self.head])
        self.second = self._second()
        self._run([self.second])

    def _second(self) -> Node:
        return self._node(
            "n",
            [
                f"--address={self.address}",
                "--num-cpus=1",
                "--num-gpus=2",
                "--resources=" + json.dumps({"special": 1}),
            ],
        )

    def restart_second(self) -> None:
        """Start the second node again (after a test killed it)."""
        assert self.second is not None
        kill_all(self.second.pids())
        shutil.rmtree(self.second.temp_dir, ignore_errors=True)
        self.second = self._second()
        self._run([self.second])

    def _run(self, nodes: list[Node], attempts: int = 3) -> None:
        """``ray start`` each node; a start that fails is cleaned up and tried again (on a
        loaded machine the raylet gives up on agents that take over 15 s to import Ray;
        the next try finds them in the page cache)."""
        tmp = self.root / "tmp"  # the nodes' own temp files (their task copies) die with it
        tmp.mkdir(exist_ok=True)
        env = {**os.environ, **self.env, "RAY_USAGE_STATS_ENABLED": "0", "TMPDIR": str(tmp)}
        for node in nodes:
            for attempt in range(1, attempts + 1):
                proc = subprocess.run(
                    node.args, env=env, capture_output=True, text=True, timeout=300
                )
                node.log = proc.stdout + proc.stderr
                if proc.returncode == 0:
                    break
                kill_all(node.pids())
                if attempt == attempts:
                    self.stop()
                    tail = "\n".join(node.log.splitlines()[-15:])
                    raise RuntimeError(f"`{' '.join(node.args)}` failed {attempts} times:\n{tail}")
                shutil.rmtree(node.temp_dir, ignore_errors=True)
                node.temp_dir.mkdir()

    def stop(self) -> None:
        """Kill every process of both nodes (found by their temp dirs) and remove them."""
        kill_all(tree(f"{self.root}/"))
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def connected() -> Iterator[RayCluster]:
    """A started cluster with this process connected to it as a notebook would be (every
    executor and run reuses that connection); everything stopped after."""
    import pytest
    import ray
    from ray._private.authentication_test_utils import reset_auth_token_state

    c = RayCluster()
    c.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in c.env.items():
                mp.setenv(key, value)  # the token, for this process and the runs it starts
            mp.delenv("RAY_ADDRESS", raising=False)
            # Ray read its authentication settings when it was imported; read them again
            # (what Ray's own tests do when they change them)
            reset_auth_token_state()
            ray.init(address=c.address, log_to_driver=False, logging_level="WARNING")
            try:
                yield c
            finally:
                ray.shutdown()
        reset_auth_token_state()
    finally:
        c.stop()


def with_second_node(cluster: RayCluster) -> RayCluster:
    """``cluster`` with its second node up (a test before may have killed it)."""
    import ray

    assert cluster.second is not None
    if not cluster.second.pids():
        cluster.restart_second()
    deadline = time.monotonic() + 60
    while sum(n["Alive"] for n in ray.nodes()) < 2:
        assert time.monotonic() < deadline, "the second node did not rejoin"
        time.sleep(0.5)
    return cluster
