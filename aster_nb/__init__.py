"""aster_nb: LLM agents that improve a program against its evaluator, driven from a notebook.

The public face, one import away::

    from aster_nb import Run, Task

    run = await Run.create("circle_packing", workers=3, agents=8, evaluations_per_round=100)
    await run.step()
    run.goals["p0.w1"] = "Improve `placement`: ..."  # every worker, under any planner

- Running: :class:`Run` (async; ``create``, ``open``, ``step``, ``start``, ``pause``,
  ``steer``, ``goals``), :class:`SyncRun` (blocking twin for scripts), :class:`RunConfig`.
- What a run works on and keeps: :class:`Task`, :class:`Store`, and the records
  :class:`Program` (``descriptor`` is where an archive places it), :class:`EvalResult`
  (``features`` is what the evaluator reported), :class:`Handoff`, :class:`RoundResult`,
  :class:`Status`.
- Agents: :class:`Worker`, :class:`Planner`, the :class:`Context` they share and the
  per-round :class:`Budget` of a worker.
- Archives: :func:`make_archive`, :class:`ClusterElites`, :class:`GridElites`,
  :class:`Greedy`. To write your own, **subclass** :class:`ArchiveBase`: it validates
  descriptors, keeps the history and implements ``add``, ``sample``, ``elites``, ``best``,
  ``coverage`` and the rest around the four abstract methods you fill in (``_add_ok``,
  ``_elite_rows``, ``cells``, ``cell_of``; see :mod:`aster_nb.archive.grid` for a short one). :class:`Archive` is the ``Protocol`` the agents accept;
  use it only for type hints, or when your class cannot inherit.
- Models and evaluation: :class:`OfflineModel` (no key, no network), :func:`make_model`
  (``"offline"`` or an Anthropic model name), :class:`LocalExecutor` (the sandbox).
- The notebook UI: ``from aster_nb.ui import Dashboard`` (or ``aster_nb.Dashboard``).

Every name is imported on first use (:func:`__getattr__`), so ``import aster_nb`` is cheap
and the core never imports ipywidgets or plotly: only the UI and the figures do, when
asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it (imported when the name is first read)
_WHERE = {
    "Run": "aster_nb.run",
    "RunConfig": "aster_nb.run",
    "RunStatus": "aster_nb.run",
    "SyncRun": "aster_nb.sync",
    "Task": "aster_nb.task",
    "Store": "aster_nb.store",
    "Program": "aster_nb.records",
    "EvalResult": "aster_nb.records",
    "Handoff": "aster_nb.records",
    "RoundResult": "aster_nb.records",
    "Status": "aster_nb.records",
    "Goal": "aster_nb.records",
    "Budget": "aster_nb.agents.context",
    "Context": "aster_nb.agents.context",
    "Worker": "aster_nb.agents.worker",
    "Planner": "aster_nb.agents.planner",
    "Archive": "aster_nb.archive",
    "ArchiveBase": "aster_nb.archive",
    "make_archive": "aster_nb.archive",
    "ClusterElites": "aster_nb.archive",
    "GridElites": "aster_nb.archive",
    "Greedy": "aster_nb.archive",
    "OfflineModel": "aster_nb.llm",
    "make_model": "aster_nb.llm",
    "LocalExecutor": "aster_nb.sandbox",
    "Dashboard": "aster_nb.ui",
}

__all__ = [
    "Archive",
    "ArchiveBase",
    "Budget",
    "ClusterElites",
    "Context",
    "Dashboard",
    "EvalResult",
    "Goal",
    "Greedy",
    "GridElites",
    "Handoff",
    "LocalExecutor",
    "OfflineModel",
    "Planner",
    "Program",
    "RoundResult",
    "Run",
    "RunConfig",
    "RunStatus",
    "Status",
    "Store",
    "SyncRun",
    "Task",
    "Worker",
    "make_archive",
    "make_model",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; nothing is imported at run time
    from .agents.context import Budget, Context
    from .agents.planner import Planner
    from .agents.worker import Worker
    from .archive import Archive, ArchiveBase, ClusterElites, Greedy, GridElites, make_archive
    from .llm import OfflineModel, make_model
    from .records import EvalResult, Goal, Handoff, Program, RoundResult, Status
    from .run import Run, RunConfig, RunStatus
    from .sandbox import LocalExecutor
    from .store import Store
    from .sync import SyncRun
    from .task import Task
    from .ui import Dashboard


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'aster_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next read is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
