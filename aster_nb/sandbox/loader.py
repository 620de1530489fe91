"""What the fork server loads once, before its first fork: the preload modules, the task's
evaluator and the per-evaluation confinement this machine allows.

Nothing here raises: a preload or an evaluator that fails to import is reported in the
hello (and every evaluation then answers ``error``), so the client learns why instead of
seeing a server that died at start.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import confine
from .outcome import format_exception

__all__ = ["Loaded", "import_evaluator", "keywords_of", "load"]


@dataclass(slots=True)
class Loaded:
    """What :func:`load` found.

    Attributes:
        evaluate: the evaluator's ``evaluate``, or None if it failed to import.
        import_error: why the evaluator failed to import, if it did.
        timings: seconds each preload module, ``<evaluator>`` and ``<confinement probe>``
            took, in that order.
        preload_errors: the traceback tail of each preload module that failed.
        confinement: the confinement that works here (the one asked for, probed).
        accepts: which of the keywords ``seed`` and ``report`` ``evaluate`` takes (read
            once from its signature: an old ``evaluate(program_path)`` gets neither).
    """

    evaluate: Callable[[str], Any] | None = None
    import_error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    preload_errors: dict[str, str] = field(default_factory=dict)
    confinement: confine.Confinement = confine.NONE
    accepts: frozenset[str] = frozenset()


def load(evaluator: Path, preload: Sequence[str], confinement: confine.Confinement) -> Loaded:
    """Import ``preload`` and ``evaluator``, and probe ``confinement``."""
    out = Loaded(confinement=confinement)
    for name in preload:
        t0 = time.perf_counter()
        try:
            importlib.import_module(name)
        except BaseException as e:  # a preload may sys.exit or worse; keep serving
            out.preload_errors[name] = format_exception(e, 8)
        out.timings[name] = round(time.perf_counter() - t0, 4)
    t0 = time.perf_counter()
    try:
        out.evaluate = import_evaluator(evaluator)
        out.accepts = keywords_of(out.evaluate)
    except BaseException as e:
        out.import_error = f"the evaluator {evaluator} failed to import:\n{format_exception(e)}"
    out.timings["<evaluator>"] = round(time.perf_counter() - t0, 4)
    if confinement != confine.NONE:
        t0 = time.perf_counter()
        try:
            confine.prepare()
            out.confinement = confine.probe(confinement)
        except OSError as e:  # not Linux, or no /proc: run, and say why unconfined
            out.confinement = confine.Confinement(detail=f"not available here: {e}")
        out.timings["<confinement probe>"] = round(time.perf_counter() - t0, 4)
    return out


def keywords_of(evaluate: Callable[..., Any]) -> frozenset[str]:
    """Which of ``seed`` and ``report`` ``evaluate`` can be passed by keyword."""
    try:
        params = inspect.signature(evaluate).parameters.values()
    except (TypeError, ValueError):  # a builtin or an odd callable: pass nothing extra
        return frozenset()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return frozenset({"seed", "report"})
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return frozenset(p.name for p in params if p.name in ("seed", "report") and p.kind in kinds)


def import_evaluator(path: Path) -> Callable[[str], Any]:
    """The ``evaluate`` function of the module at ``path``.

    Raises:
        ImportError, AttributeError: it cannot be loaded or defines no ``evaluate``; and
            whatever the module raises while it runs.
    """
    # the evaluator may import helpers that sit next to it
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("aster_nb_task_evaluator", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    evaluate = getattr(module, "evaluate", None)
    if not callable(evaluate):
        raise AttributeError(f"{path} defines no callable evaluate(program_path) -> dict")
    return evaluate
