"""What an evaluation ended with, as an EvalResult: evaluator values, child payloads, exits.

The child maps what ``evaluate()`` returned or raised to a plain dict
(:func:`run_evaluate`); the server re-validates that dict, since the child is untrusted
(:func:`parse_payload`), and otherwise explains the exit, signal or kill
(:func:`build_result`).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import signal
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..program import EvalResult, Status
from .proc import signal_name

if TYPE_CHECKING:
    from .job import Job

TRACEBACK_LINES = 20
MAX_RESULT_BYTES = 8 * 1024 * 1024

# Job.killed reasons that say nothing about the program (its result is not to be cached)
KILL_MESSAGES = {
    "cancelled": "evaluation cancelled by the client",
    "shutdown": "sandbox server shutting down; evaluation killed",
}
# Job.killed reasons whose result is not cached: the above, and a run stopped early (its
# result is about this run's curve against one parent, not a fact about the program)
TRANSIENT = frozenset({*KILL_MESSAGES, "stopped"})


def format_exception(
    exc: BaseException, max_lines: int = TRACEBACK_LINES, *, skip: int = 0, workdir: str = ""
) -> str:
    """The last ``max_lines`` lines of ``exc``'s traceback (long lines cut).

    ``skip`` drops that many outermost frames (the sandbox's own); ``workdir`` is removed from
    paths, so the same failure reads the same in every evaluation (and in seeded runs).
    """
    try:
        tb = exc.__traceback__
        for _ in range(skip):
            tb = tb.tb_next if tb is not None and tb.tb_next is not None else tb
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        if workdir:
            prefix = workdir.rstrip("/") + "/"
            # a confined evaluation's workdir is the private /tmp itself: stripping every
            # "/tmp/" would turn other absolute paths relative and misname them
            start = r"(?<![\w.\-/])"  # where a path begins: not /var/tmp/...
            text = re.sub(start + re.escape(prefix + "program.py"), "program.py", text)
            if prefix != "/tmp/":
                text = re.sub(start + re.escape(prefix), "", text)
        lines = text.rstrip().splitlines()
    except Exception:
        lines = [f"{type(exc).__name__}: {_short_repr(exc, 500)}"]
    lines = [ln if len(ln) <= 500 else ln[:497] + "..." for ln in lines]
    if len(lines) > max_lines:
        lines = [f"[... {len(lines) - max_lines} earlier traceback lines]", *lines[-max_lines:]]
    return "\n".join(lines)


def error_result(message: str, status: str = "error") -> dict[str, Any]:
    return {"status": status, "error": message}


# --------------------------------------------------------------------------- in the child


def run_evaluate(
    evaluate: Callable[..., Any], program_path: str, **keywords: Any
) -> dict[str, Any]:
    """Call ``evaluate`` (with ``keywords``: the ``seed`` and ``report`` it takes) and turn
    its return value or exception into a result dict."""
    try:
        value = evaluate(program_path, **keywords)
    except SystemExit as e:
        return error_result(f"the evaluation raised SystemExit (exit code {_short_repr(e.code)})")
    except BaseException as e:
        where = {"skip": 1, "workdir": os.path.dirname(program_path)}
        if _caused_by_memory(e):
            return error_result(
                f"memory limit reached (MemoryError)\n{format_exception(e, **where)}", "memory"
            )
        return error_result(format_exception(e, **where))
    return result_from_value(value)


def result_from_value(value: Any) -> dict[str, Any]:
    """Map what ``evaluate()`` returned to an EvalResult-shaped dict (without outputs)."""
    if not isinstance(value, dict):
        return error_result(
            "evaluate() must return a dict such as {'score': 1.0} (optional 'metrics', "
            f"'features', 'valid', 'reason'); got {type(value).__name__}: {_short_repr(value)}"
        )
    valid = value.get("valid", True)
    if type(valid).__name__ not in ("bool", "bool_"):
        return error_result(
            f"evaluate() returned 'valid'={_short_repr(valid)}; expected True or False"
        )
    metrics, why = _metrics(value.get("metrics"))
    if not valid:
        reason = value.get("reason")
        text = (
            str(reason) if reason else "the evaluator marked the program invalid (no reason given)"
        )
        return {"status": "invalid", "error": text[:4000], "metrics": metrics or {}}
    if metrics is None:
        return error_result(
            f"evaluate() returned bad 'metrics' ({why}); expected a dict of str -> finite number"
        )
    if "score" not in value:
        return error_result(
            "evaluate() returned no 'score'; expected a finite number under 'score' "
            "(or 'valid': False with a 'reason')"
        )
    score = _finite(value["score"])
    if score is None:
        return error_result(
            f"evaluate() returned score={_short_repr(value['score'])}; expected a finite number"
        )
    features = None
    if value.get("features") is not None:
        features, why = _features(value["features"])
        if features is None:
            return error_result(
                f"evaluate() returned bad 'features' ({why}); expected a list of finite numbers"
            )
    return {"status": "ok", "score": score, "metrics": metrics, "features": features}


def _caused_by_memory(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, MemoryError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


# --------------------------------------------------------------------------- in the server


def build_result(job: Job, now: float) -> EvalResult:
    """The result of a finished ``job``: its payload if it sent one, else why it ended."""
    common: dict[str, Any] = {
        "stdout": job.out.text(),
        "stderr": job.err.text(),
        "seconds": round((job.exited_at or now) - job.started, 6),
    }
    if job.killed == "timeout":
        return EvalResult(
            Status.TIMEOUT,
            error=f"wall-clock limit of {job.limits.timeout:g} s exceeded; the evaluation was killed",
            **common,
        )
    if job.killed in KILL_MESSAGES:
        return EvalResult(Status.ERROR, error=KILL_MESSAGES[job.killed], **common)
    if job.killed == "stopped" and not job.result.data:  # a run that finished first stands
        last = job.reports.last
        step, values = last if last is not None else (0, {})
        return EvalResult(
            Status.STOPPED,
            error=f"stopped early by the parent side at step {step}: its intermediate values "
            "were clearly worse than its parent's",
            metrics={**values, "step": float(step)},
            **common,
        )
    if job.result.dropped:
        return EvalResult(
            Status.ERROR,
            error=f"the evaluation sent a result larger than {MAX_RESULT_BYTES >> 20} MiB",
            **common,
        )
    if job.result.data:
        try:
            fields = parse_payload(bytes(job.result.data))
        except (ValueError, TypeError) as e:
            return EvalResult(
                Status.ERROR, error=f"the evaluation sent a malformed result: {e}", **common
            )
        fields.update(common)
        return EvalResult.from_dict(fields)
    status, error = _exit_outcome(job)
    return EvalResult(status, error=error, **common)


def parse_payload(raw: bytes) -> dict[str, Any]:
    """Check what a child sent on its result pipe; the child is untrusted, so re-validate."""
    payload = json.loads(raw)
    if not isinstance(payload, dict):
        raise ValueError("not a JSON object")
    status = Status(payload.get("status"))
    if status in (Status.PENDING, Status.TIMEOUT, Status.STOPPED, Status.LOST):
        raise ValueError(f"status {status} cannot come from the child")
    out: dict[str, Any] = {"status": str(status), "error": None, "metrics": {}, "features": None}
    metrics, why = _metrics(payload.get("metrics"))
    if metrics is None:
        raise ValueError(f"metrics: {why}")
    out["metrics"] = metrics
    if status is Status.OK:
        score = _finite(payload.get("score"))
        if score is None:
            raise ValueError("ok without a finite score")
        out["score"] = score
        if payload.get("features") is not None:
            features, why = _features(payload["features"])
            if features is None:
                raise ValueError(f"features: {why}")
            out["features"] = features
    else:
        error = payload.get("error")
        out["error"] = error if isinstance(error, str) else f"{status} (no message)"
    return out


def _exit_outcome(job: Job) -> tuple[Status, str]:
    status = job.wait_status or 0
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        cpu_limit = max(1, math.ceil(job.limits.cpu))
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and job.cpu_used >= cpu_limit - 0.05):
            return Status.TIMEOUT, (
                f"CPU limit of {cpu_limit} s exceeded (killed by {signal_name(sig)} "
                f"after {job.cpu_used:.2f} s of CPU)"
            )
        return (
            Status.ERROR,
            f"killed by signal {signal_name(sig)} ({sig}) before returning a result",
        )
    code = os.WEXITSTATUS(status)
    return Status.ERROR, f"exited with code {code} before returning a result"


# --------------------------------------------------------------------------- validation


def _short_repr(value: Any, limit: int = 120) -> str:
    try:
        text = repr(value)
    except Exception:  # an untrusted object's __repr__ may raise anything
        text = f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def _metrics(value: Any) -> tuple[dict[str, float] | None, str]:
    if value is None:
        return {}, ""
    if not isinstance(value, dict):
        return None, f"got {type(value).__name__}"
    out = {}
    for k, v in value.items():
        f = _finite(v)
        if not isinstance(k, str) or f is None:
            return None, f"entry {_short_repr(k, 40)}: {_short_repr(v, 60)}"
        out[k] = f
    return out, ""


def _features(value: Any) -> tuple[list[float] | None, str]:
    if hasattr(value, "tolist") and not isinstance(value, list | tuple):
        value = value.tolist()  # a numpy array or scalar
    if not isinstance(value, list | tuple):
        return None, f"got {type(value).__name__}"
    out = [_finite(v) for v in value]
    bad = [i for i, v in enumerate(out) if v is None]
    if bad:
        return None, f"item {bad[0]} is {_short_repr(value[bad[0]], 60)}"
    return [v for v in out if v is not None], ""
