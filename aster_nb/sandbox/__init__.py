"""The sandbox: a warm fork server that runs a task's evaluator on untrusted programs, one
forked child each, and the client that drives it from asyncio code.

Use :class:`LocalExecutor` (``from aster_nb.sandbox import LocalExecutor``): it starts the
server (``python -m aster_nb.sandbox --evaluator PATH [--preload MOD ...]``), which imports
the ``preload`` modules and the evaluator once, then forks a child per evaluation, so an
evaluation costs a fork instead of a fresh interpreter. See :mod:`aster_nb.sandbox.local`
for what is contained and what is not.

The two sides talk JSON lines, one message per line, defined once in
:mod:`~aster_nb.sandbox.protocol`: requests on the server's stdin, responses on a private
fd (a dup of the original stdout; ``sys.stdout`` and fd 1 are pointed at stderr so stray
prints cannot corrupt the channel). End of stdin shuts the server down.

``fork_limit`` in the hello is how the number of processes per evaluation is capped:
``cgroup-v2`` or ``cgroup-v1`` (a ``pids`` cgroup per evaluation; works as root),
``nproc`` (``RLIMIT_NPROC``; only for non-root users, the kernel ignores it for uid 0), or
``none`` (no cap: a fork bomb is still killed at the timeout, but it can load the machine
until then).

Modules, server side (imported into every sandbox process, so nothing heavy):

* ``__main__``: command line, private response channel, runs the server.
* :mod:`~aster_nb.sandbox.protocol`: the message kinds and their encoding (both sides).
* :mod:`~aster_nb.sandbox.server`: the selector loop and the requests.
* :mod:`~aster_nb.sandbox.loader`: preload, evaluator import and confinement probe.
* :mod:`~aster_nb.sandbox.evaluations`: each evaluation's life (spawn, pipes, deadlines,
  reaping, orphan sweep, cleanup).
* :mod:`~aster_nb.sandbox.job`: one evaluation's state and its captured output.
* :mod:`~aster_nb.sandbox.child`: the forked evaluation process (signals, session, cgroup,
  fds, working directory, rlimits, ``evaluate()``, result pipe).
* :mod:`~aster_nb.sandbox.forklimit`: cgroup v2/v1 pids detection, creation, kill and
  removal; the ``RLIMIT_NPROC`` fallback.
* :mod:`~aster_nb.sandbox.outcome`: evaluator values, child payloads, exits and signals
  mapped to results.
* :mod:`~aster_nb.sandbox.proc`: prctl, /proc scans and other process plumbing.
* :mod:`~aster_nb.sandbox.confine`, :mod:`~aster_nb.sandbox.seccomp`,
  :mod:`~aster_nb.sandbox.linux`: each evaluation's namespaces, capabilities and filter.

Client side (loaded only when one of its names is first used, so the server never
imports it):

* :mod:`~aster_nb.sandbox.local`: :class:`LocalExecutor` and :func:`evaluate_cold`.
* :mod:`~aster_nb.sandbox.cache`: :class:`Cached`, the result cache around any backend.
* :mod:`~aster_nb.sandbox.client`: :class:`SandboxClient`, one warm server, restarts and
  reruns.
* :mod:`~aster_nb.sandbox.connection`: one server process, its pipes and waiting requests.
* :mod:`~aster_nb.sandbox.isolation`: how the server is launched (bubblewrap, unshare).
* :mod:`~aster_nb.sandbox.env`: the server's environment, without credentials.

On a Ray cluster (needs Ray; loaded only when used):

* :mod:`~aster_nb.sandbox.cluster`: :class:`RayExecutor`, the same protocol and cache.
* :mod:`~aster_nb.sandbox.raypool`: the node sandboxes, slots, retries and faults.
* :mod:`~aster_nb.sandbox.raynode`: the actor holding a node's sandbox server.
* :mod:`~aster_nb.sandbox.rayshape`: what fits on a node; the task folder shipped to it.
* :mod:`~aster_nb.sandbox.rayconnect`: joining a cluster, or starting a private Ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cache import Cached, Evaluation
    from .client import SandboxClient
    from .cluster import RayExecutor
    from .env import sandbox_env
    from .local import LocalExecutor, evaluate_cold

__all__ = [
    "Cached",
    "Evaluation",
    "LocalExecutor",
    "RayExecutor",
    "SandboxClient",
    "evaluate_cold",
    "sandbox_env",
]

_HOME = {
    "Cached": "cache",
    "Evaluation": "cache",
    "LocalExecutor": "local",
    "RayExecutor": "cluster",
    "SandboxClient": "client",
    "evaluate_cold": "local",
    "sandbox_env": "env",
}


def __getattr__(name: str) -> Any:
    # the client's names, loaded on first use: the server imports this package too
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)
