"""The wire protocol between the sandbox client and the fork server, in one place.

Both sides import this module (the server through ``python -m aster_nb.sandbox``, the
client in :mod:`aster_nb.sandbox.client`), so every message kind and field is spelled
once. Messages are JSON objects, one per line:

* requests on the server's stdin (:class:`Op`): ``eval`` (the default when ``op`` is
  missing) with ``id``, ``code``, ``limits`` and optionally ``env`` (device variables
  for this evaluation only, :data:`DEVICE_VARIABLES`), ``seed`` (an int passed to
  ``evaluate(..., seed=)`` when it takes one) and ``progress`` (true: forward the
  evaluation's reports); ``cancel`` with ``id`` (the evaluation is killed, its result still
  arrives); ``stop`` with ``id`` (killed because the parent side judged its intermediate
  values: its result is ``stopped``, with the last reported values); ``stats``;
  ``shutdown``. End of stdin shuts the server down too.
* responses on the server's private channel (:class:`Kind`): ``hello`` first (pid,
  fork_limit, preload timings, evaluator_error, ...); then a ``result`` per request, with
  ``transient`` set when the outcome says nothing about the program (it was cancelled,
  the server was shutting down), so it must not be cached; ``stats``; and ``error`` for
  a request that could not be parsed; ``progress`` (``id``, ``step``, ``values``) for each
  value an evaluation reported with ``report(step, values)``, checked by the server (the
  child is untrusted: numbers only, :data:`MAX_VALUES` names, :data:`MAX_REPORTS` per
  evaluation).

Standard library only: this module is imported into every sandbox process.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from ..program import EvalResult, Status
from ..task import Limits

__all__ = [
    "DEVICE_VARIABLES",
    "MAX_REPORTS",
    "MAX_VALUES",
    "PROTOCOL_VERSION",
    "Kind",
    "Op",
    "cancel_request",
    "check_device_env",
    "check_report",
    "check_seed",
    "decode",
    "encode",
    "error_message",
    "eval_request",
    "result_message",
    "result_of",
    "stop_request",
]

PROTOCOL_VERSION = 1

#: What an ``eval`` request's ``env`` may set: the devices a scheduler (Ray) gave this one
#: evaluation. Nothing else: the server's environment is an allowlist without credentials
#: (:mod:`aster_nb.sandbox.env`), and a request must not be a way around it.
DEVICE_VARIABLES = frozenset(
    {"CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"}
)


#: reports of one evaluation forwarded (and kept by the store); later ones are counted only
MAX_REPORTS = 10_000
#: names one report may carry, and the longest name
MAX_VALUES = 16
MAX_NAME = 64


class Op(StrEnum):
    """What a request asks the server to do."""

    EVAL = "eval"
    CANCEL = "cancel"
    STOP = "stop"
    STATS = "stats"
    SHUTDOWN = "shutdown"


class Kind(StrEnum):
    """What a response carries (its ``type``)."""

    HELLO = "hello"
    RESULT = "result"
    STATS = "stats"
    ERROR = "error"
    PROGRESS = "progress"


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as a line of compact JSON."""
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()


def decode(line: bytes) -> dict[str, Any]:
    """The message on ``line``.

    Raises:
        ValueError: the line is not JSON, or not a JSON object.
    """
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a message must be a JSON object")
    return message


# -- requests (client -> server) ---------------------------------------------------------


def eval_request(
    rid: int | str,
    code: str,
    limits: Limits,
    env: Mapping[str, str] | None = None,
    *,
    seed: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate ``code`` under ``limits`` (with the device variables ``env`` set in the
    evaluation's process, ``seed`` passed to the evaluator, its reports forwarded when
    ``progress``); the result comes back under ``rid``."""
    message: dict[str, Any] = {"id": rid, "code": code, "limits": dataclasses.asdict(limits)}
    if env:
        message["env"] = dict(env)
    if seed is not None:
        message["seed"] = seed
    if progress:
        message["progress"] = True
    return message


def check_seed(seed: object) -> int | None:
    """``seed`` as an evaluation's seed.

    Raises:
        ValueError: not None or an int (a bool is not a seed).
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an int from 0 to 2**63 - 1 or None, got {seed!r}")
    return seed


def check_report(message: object) -> tuple[int, dict[str, float]] | None:
    """One report an evaluation sent, as ``(step, values)``; None if it is malformed (the
    child is untrusted: a step that is a non-negative int, at most :data:`MAX_VALUES`
    names of at most :data:`MAX_NAME` characters, finite numbers)."""
    if not isinstance(message, dict):
        return None
    step, values = message.get("step"), message.get("values")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < 2**63:
        return None
    if not isinstance(values, dict) or not 0 < len(values) <= MAX_VALUES:
        return None
    out = {}
    for name, value in values.items():
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        value = float(value)
        if not math.isfinite(value):
            return None
        out[name] = value
    return step, out


def check_device_env(env: object) -> dict[str, str]:
    """``env`` as the variables an evaluation gets on top of the server's environment.

    Raises:
        ValueError: not a mapping of :data:`DEVICE_VARIABLES` names to strings.
    """
    if env is None:
        return {}
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ValueError(f"env must map variable names to strings, got {env!r}")
    other = sorted(set(env) - DEVICE_VARIABLES)
    if other:
        raise ValueError(
            f"env may set only the device variables {sorted(DEVICE_VARIABLES)}; got {other}"
        )
    return dict(env)


def cancel_request(rid: int | str) -> dict[str, Any]:
    """Kill evaluation ``rid`` (its result, ``transient``, still arrives)."""
    return {"op": Op.CANCEL, "id": rid}


def stop_request(rid: int | str) -> dict[str, Any]:
    """Stop evaluation ``rid`` early (its result, ``stopped`` and ``transient``, arrives)."""
    return {"op": Op.STOP, "id": rid}


# -- responses (server -> client) --------------------------------------------------------


def result_message(rid: int | str, result: EvalResult, *, transient: bool) -> dict[str, Any]:
    """The answer to request ``rid``; ``transient``: do not cache it."""
    return {"type": Kind.RESULT, "id": rid, "result": result.to_dict(), "transient": transient}


def error_message(error: str, **fields: Any) -> dict[str, Any]:
    """A request the server could not take (``fields``: its ``id``, where it had one)."""
    return {"type": Kind.ERROR, **fields, "error": error}


def result_of(message: Mapping[str, Any]) -> tuple[EvalResult, bool]:
    """A ``result`` or ``error`` response as ``(result, cacheable)``.

    An ``error`` (the server could not parse the request) becomes an ``error`` result that
    is not cached.

    Raises:
        KeyError, TypeError, ValueError: the response is malformed.
    """
    if message.get("type") == Kind.ERROR:
        return EvalResult(Status.ERROR, error=message.get("error")), False
    return EvalResult.from_dict(message["result"]), not message.get("transient", False)
