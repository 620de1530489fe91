"""Evaluator of ``optimizer_search``: an optimizer for a tiny character-level language model.

The program defines ``make_optimizer(params) -> torch.optim.Optimizer``. The evaluator owns
everything else (:mod:`charlm`): the model (a 2-layer transformer, 112,577 parameters), the
data (tinyshakespeare, :mod:`text_data`), the batch order, the number of steps and the
learning-rate schedule (every group's ``lr`` is multiplied by it before each step). The
score is minus the validation loss (nats per character) over the whole validation split.

How the program is held to "parameters and gradients only", although it runs in this
process:

1. At import (once per sandbox server) only the training split is loaded; the validation
   split's file is opened, not read.
2. ``evaluate`` forks a guarded child (:mod:`aster_nb.guard`: no ``open``, ``exec``,
   ``fork``, thread or ``socket``; every file descriptor but stdout, stderr and an answer
   pipe closed). The child builds the model,
   passes a list of its parameters to ``make_optimizer``, checks that the optimizer is a
   ``torch.optim.Optimizer`` over exactly those tensors, trains (``step()`` is called
   without a closure, so it sees gradients, never data) and sends back only numbers: the
   training losses as they come (passed on to ``report``) and the final parameter values.
3. Only then does this process read the validation split, load the values into a model it
   builds itself (so whatever the program did to the child's model, buffers or modules is
   gone) and compute the loss. Parameters that were replaced, resized or are not finite
   make the program invalid.

``ASTER_OPT_STEPS`` (default 400) sets the number of steps, so tests and notebooks can run
a tiny budget; compare scores only at the same step count.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import charlm
import numpy as np
import text_data
import torch

from aster_nb.guard import ProgramFailed, load_program, run_guarded

ENTRY = "make_optimizer"
ENV_STEPS = "ASTER_OPT_STEPS"
DEFAULT_STEPS = 400


def steps() -> int:
    raw = os.environ.get(ENV_STEPS, "")
    try:
        n = int(raw) if raw else DEFAULT_STEPS
    except ValueError:
        raise ValueError(f"{ENV_STEPS} must be a whole number of steps, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"{ENV_STEPS} must be >= 1, got {n}")
    return n


def report_every(n: int) -> int:
    """Steps between two reported training losses: 50, or an eighth of a short run."""
    return max(1, min(50, n // 8))


STEPS = steps()
CACHE = text_data.ensure_cache(text_data.data_dir(), subprocess_build=True)
VOCAB = text_data.vocab_size(CACHE)
TRAIN = np.load(CACHE / "train.npy")
# Opened now, read only after training (the training child closes it). Not a path read
# later: when the cache had to be built in the sandbox server's private /tmp, an
# evaluation's own fresh /tmp hides it.
_VALID_FD = os.open(CACHE / "valid.npy", os.O_RDONLY | os.O_CLOEXEC)
SHAPES = [tuple(p.shape) for p in charlm.build_model(VOCAB, 0).parameters()]
N_VALUES = sum(math.prod(s) for s in SHAPES)


def _warm_up() -> None:
    """Run every code path of an evaluation once, so that what torch imports lazily (its
    optimizers import ``torch._dynamo`` on first use) is loaded before the guarded child,
    which can open no file. One thread: the server forks afterwards."""
    torch.set_num_threads(1)
    model = charlm.build_model(VOCAB, 0)
    for make in (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD, torch.optim.RMSprop):
        optimizer = make(model.parameters(), lr=1e-9)
        charlm.train(model, optimizer, TRAIN[:4096], 1, 0)
    charlm.validation_loss(model, TRAIN[: 4 * charlm.CONTEXT])


_warm_up()


class RuleBroken(Exception):
    """The program broke a rule of the task (the message says which)."""


# ----------------------------------------------------------------- the guarded child


def _load_program(source: str, path: str) -> Callable:
    entry = load_program(source, path, name="optimizer_program").get(ENTRY)
    if not callable(entry):
        raise RuleBroken(f"the program defines no function {ENTRY}(params)")
    return entry


def check_optimizer(optimizer: object, params: list[torch.Tensor]) -> None:
    """Raise RuleBroken unless ``optimizer`` is an Optimizer over exactly ``params``."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise RuleBroken(
            f"{ENTRY}(params) must return a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    owned = [p for g in optimizer.param_groups for p in g["params"]]
    ids = {id(p) for p in params}
    strangers = sum(id(p) not in ids for p in owned)
    if strangers:
        raise RuleBroken(
            f"the optimizer holds {strangers} tensor(s) that are not the model's parameters"
        )
    if len(owned) != len(params) or len({id(p) for p in owned}) != len(params):
        raise RuleBroken(
            f"the optimizer must hold each of the model's {len(params)} parameters exactly "
            f"once; it holds {len(owned)} tensors, {len({id(p) for p in owned})} distinct"
        )
    for i, g in enumerate(optimizer.param_groups):
        if not isinstance(g.get("lr"), (int, float)) or not math.isfinite(g["lr"]):
            raise RuleBroken(f"param group {i} needs a finite number 'lr' (the schedule scales it)")


def _train_child(source: str, path: str, seed: int, n_steps: int, send) -> tuple[dict, bytes]:
    make = _load_program(source, path)
    model = charlm.build_model(VOCAB, seed)
    params = list(model.parameters())
    optimizer = make(list(params))
    check_optimizer(optimizer, params)

    def on_loss(step: int, loss: float) -> None:
        send({"step": step, "loss": loss})

    charlm.train(
        model, optimizer, TRAIN, n_steps, seed, every=report_every(n_steps), on_loss=on_loss
    )
    now = list(model.parameters())
    if len(now) != len(params) or any(a is not b for a, b in zip(now, params, strict=False)):
        raise RuleBroken("the model's parameters were replaced: an optimizer updates them in place")
    values = []
    for p, shape in zip(params, SHAPES, strict=True):
        if tuple(p.shape) != shape or p.dtype != torch.float32:
            raise RuleBroken(
                f"a parameter changed to shape {tuple(p.shape)} {p.dtype}; expected {shape} float32"
            )
        values.append(p.detach().numpy().astype(np.float64).ravel())
    return {}, np.concatenate(values).tobytes()


# ----------------------------------------------------------------- this process


def train_guarded(
    source: str, path: str, seed: int, n_steps: int, report: Callable | None
) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """Train in a guarded child; the final parameter values (flat) and the loss curve.

    Raises:
        RuleBroken: the program broke a rule. aster_nb.guard.ProgramFailed: it raised or
            its process died. aster_nb.guard.GuardUnavailable: the filter cannot be loaded
            here (nothing was run).
    """
    torch.set_num_threads(1)  # one core per evaluation; the child may start no thread
    curve: list[tuple[int, float]] = []

    def on_frame(frame: dict) -> None:
        # the child is untrusted: only losses at steps that move forward within the run
        step, loss = frame.get("step"), frame.get("loss")
        after = curve[-1][0] if curve else -1
        if (
            isinstance(step, int)
            and after < step <= n_steps
            and isinstance(loss, float)
            and math.isfinite(loss)
        ):
            curve.append((step, loss))
            if report is not None:
                report(step, {"loss": loss})

    try:
        _, payload = run_guarded(
            lambda send: _train_child(source, path, seed, n_steps, send),
            max_payload=8 * N_VALUES,
            on_frame=on_frame,
            kinds=(RuleBroken,),
        )
    except ProgramFailed as e:
        if e.kind == "RuleBroken":
            raise RuleBroken(e.detail) from None
        raise
    if len(payload) != 8 * N_VALUES:
        raise RuntimeError("the program's process sent a malformed answer")
    return np.frombuffer(payload, dtype=np.float64).copy(), curve


def load_values(flat: np.ndarray, seed: int) -> charlm.CharLM:
    """A model built here, with the parameter values ``flat``."""
    model = charlm.build_model(VOCAB, seed)
    with torch.no_grad():
        i = 0
        for p in model.parameters():
            p.copy_(torch.from_numpy(flat[i : i + p.numel()].reshape(p.shape)))
            i += p.numel()
    return model


def _validation_split() -> np.ndarray:
    size = os.fstat(_VALID_FD).st_size
    return np.load(io.BytesIO(os.pread(_VALID_FD, size, 0)))


def evaluate(program_path: str, *, seed: int | None = None, report=None) -> dict:
    """Train with the program's optimizer and score it (see the module).

    ``seed`` picks the initial weights and the batch order (None: 0); ``report(step,
    {"loss": ...})`` receives the mean training loss every few steps as it comes. The
    sandbox passes both (``[evaluation]`` in task.toml): the seed is an argument, never
    read from the environment."""
    seed = 0 if seed is None else int(seed)
    source = Path(program_path).read_text(encoding="utf-8")
    t0 = time.perf_counter()
    try:
        flat, curve = train_guarded(source, program_path, seed, STEPS, report)
    except RuleBroken as e:
        return {"valid": False, "reason": str(e)}
    seconds = time.perf_counter() - t0
    if not np.isfinite(flat).all():
        bad = int((~np.isfinite(flat)).sum())
        return {
            "valid": False,
            "reason": f"{bad} of {flat.size} parameter values are NaN or infinite after training",
        }
    loss = charlm.validation_loss(load_values(flat, seed), _validation_split())
    if not math.isfinite(loss):
        return {"valid": False, "reason": f"the validation loss is {loss}"}
    metrics = {
        "val_loss": loss,
        "steps": float(STEPS),
        "seed": float(seed),
        "train_seconds": seconds,
    }
    metrics.update({f"loss_at_{s}": v for s, v in curve})
    if curve:
        metrics["train_loss"] = curve[-1][1]
    print(f"validation loss {loss:.4f} after {STEPS} steps; training loss by step:")
    print("  " + ", ".join(f"{s}: {v:.3f}" for s, v in curve))
    return {"score": -loss, "metrics": metrics}
