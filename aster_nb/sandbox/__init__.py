"""Warm fork server: runs a task's evaluator on untrusted programs, one forked child each.

Run as ``python -m aster_nb.sandbox --evaluator PATH [--preload MOD ...]``; normally
:class:`aster_nb.executors.LocalExecutor` starts it. The server imports the ``preload``
modules and the evaluator once, then forks a child per evaluation, so an evaluation costs
a fork instead of a fresh interpreter. See :mod:`aster_nb.executors` for what is contained
and what is not.

Protocol (JSON lines):

* stdin, one request per line:
  ``{"id": 1, "code": "...", "limits": {...Limits fields...}}`` evaluates ``code``;
  ``{"op": "cancel", "id": 1}`` kills that evaluation (its result still arrives);
  ``{"op": "stats"}`` asks for counters. End of stdin shuts the server down.
* responses go to a private fd (a dup of the original stdout; ``sys.stdout`` and fd 1 are
  pointed at stderr so stray prints cannot corrupt the channel):
  ``{"type": "hello", "pid", "fork_limit", "preload", "evaluator_error", ...}`` first, then
  ``{"type": "result", "id", "result": EvalResult.to_dict(), "transient": bool}`` per
  request (``transient``: the outcome says nothing about the program, e.g. it was
  cancelled, so do not cache it), ``{"type": "stats", ...}`` and
  ``{"type": "error", "error": ...}`` for requests that could not be parsed.

The server is single-threaded: one ``selectors`` loop over stdin, every child's
stdout/stderr/result pipes, a SIGCHLD wake-up pipe and the deadlines. Children are
detected with ``waitid(WNOWAIT)`` so the process group is killed while its leader is still a
zombie (its pid cannot be reused yet), then reaped.

``fork_limit`` in the hello is how the number of processes per evaluation is capped:
``cgroup-v2`` or ``cgroup-v1`` (a ``pids`` cgroup per evaluation; works as root),
``nproc`` (``RLIMIT_NPROC``; only for non-root users, the kernel ignores it for uid 0), or
``none`` (no cap: a fork bomb is still killed at the timeout, but it can load the machine
until then).

Modules:

* ``__main__``: command line, private response channel, runs the server.
* :mod:`~aster_nb.sandbox.server`: the selector loop, the protocol and each evaluation's
  life (spawn, deadlines, reaping, orphan sweep, cleanup).
* :mod:`~aster_nb.sandbox.job`: one evaluation's state and its captured output.
* :mod:`~aster_nb.sandbox.child`: the forked evaluation process (signals, session, cgroup,
  fds, working directory, rlimits, ``evaluate()``, result pipe).
* :mod:`~aster_nb.sandbox.forklimit`: cgroup v2/v1 pids detection, creation, kill and
  removal; the ``RLIMIT_NPROC`` fallback.
* :mod:`~aster_nb.sandbox.outcome`: evaluator values, child payloads, exits and signals
  mapped to results.
* :mod:`~aster_nb.sandbox.proc`: prctl, /proc scans and other process plumbing.

This package is imported into every sandbox process, so it imports nothing heavy.
"""

from .forklimit import release_cgroup_root, remove_cgroup_tree

__all__ = ["release_cgroup_root", "remove_cgroup_tree"]
