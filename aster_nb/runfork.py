"""Branching a run: a new run that starts from any program stored by another.

``await run.fork(program_id)`` makes a new run, in a new store file, with the parent's
task and settings (any :class:`~aster_nb.runconfig.RunConfig` field but the task may be
overridden) and the stored program as its initial program. The parent is left untouched:
a researcher forks to try another direction from a promising program, and the run that
found it stays as it was, to compare against or to continue.

The link to the parent is kept in the new store's ``meta`` table under ``fork`` (no
table of its own: stores written before forks exist read as "no parent"); it also holds
the initial program's code, because the task folder's ``initial_program.py`` is not the
fork's start, and :meth:`Run.open <aster_nb.run.Run.open>` must rebuild the fork as made.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserInputError
from .runconfig import RunConfig
from .store import StoreError

if TYPE_CHECKING:
    from .run import Run
    from .store import Store
    from .task import Task

__all__ = ["FORK_META", "ForkOrigin", "fork", "fork_path", "origin", "task_of"]

FORK_META = "fork"
"""The store meta key that links a fork to its parent."""


@dataclass(frozen=True, slots=True)
class ForkOrigin:
    """Where a forked run comes from.

    Attributes:
        parent_run: the parent run's store file (absolute path).
        parent_program: the id of the parent's program the fork starts from.
        parent_round: the round in which the parent stored that program.
        parent_score: that program's score in the parent (``None`` if it had none).
        initial_code: that program's code: the fork's initial program.
        created: when the fork was made (seconds since the epoch).
    """

    parent_run: str
    parent_program: str
    parent_round: int
    parent_score: float | None
    initial_code: str
    created: float


def origin(store: Store) -> ForkOrigin | None:
    """The fork link stored in ``store``, ``None`` for a run that was not forked."""
    raw = store.meta(FORK_META)
    if raw is None:
        return None
    try:
        return ForkOrigin(**raw)
    except TypeError as e:
        raise StoreError(
            f"{store.path}: the fork link in its meta table is malformed ({e}); expected "
            f"the fields {[f.name for f in fields(ForkOrigin)]}"
        ) from e


def task_of(task: Task, store: Store) -> Task:
    """``task`` as the run stored in ``store`` uses it: a fork starts from its parent's
    program, not from the task folder's initial program."""
    link = origin(store)
    return task if link is None else dataclasses.replace(task, initial_code=link.initial_code)


def fork_path(parent: Path, program_id: str) -> Path:
    """A new store file next to ``parent``: ``<parent>-fork-<id>-<time>.sqlite``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = parent.with_name(f"{parent.stem}-fork-{program_id[:8]}-{stamp}.sqlite")
    path, n = base, 1
    while path.exists():  # two forks of one program in the same second
        path, n = base.with_name(f"{base.stem}-{n}.sqlite"), n + 1
    return path


async def fork(
    run: Run, program_id: str, *, path: str | Path | None = None, **overrides: Any
) -> Run:
    """A new run from ``run``'s stored program ``program_id``; see :meth:`Run.fork
    <aster_nb.run.Run.fork>`."""
    if not isinstance(program_id, str) or not program_id:
        raise UserInputError(
            f"program_id must be a stored program's id (a str), got {program_id!r}"
        )
    program = run.store.get(program_id)
    if program is None:
        raise UserInputError(
            f"no program {program_id!r} in {run.store.path}: fork needs the id of a stored "
            "program; list them with run.history()['id'] (run.best.id is the current best)"
        )
    overrides = RunConfig.renamed(overrides, warn=True)
    allowed = sorted(f.name for f in fields(RunConfig) if f.name != "task")
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise UserInputError(
            f"fork cannot override {unknown}: a fork keeps its parent's task; expected "
            f"settings among {allowed}"
        )
    config = {k: v for k, v in asdict(run.cfg).items() if k != "task"} | overrides
    parent = run.store.path.resolve()
    link = ForkOrigin(
        parent_run=str(parent),
        parent_program=program.id,
        parent_round=program.round,
        parent_score=program.score,
        initial_code=program.code,
        created=time.time(),
    )
    task = dataclasses.replace(run.task, initial_code=program.code)
    target = Path(path) if path is not None else fork_path(parent, program.id)
    from . import runmake  # here: runmake reads fork links with this module's task_of

    return await runmake.create(type(run), task, target, meta={FORK_META: asdict(link)}, **config)
