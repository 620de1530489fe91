"""What a snapshot reads from: a live or reopened run, or only its store.

A :class:`~aster_nb.run.Run` knows its configuration and task and holds the live archives;
a :class:`~aster_nb.store.Store` alone has the configuration in its meta ``"run"`` and the
descriptor kind in its meta ``"descriptor"``. :class:`Source` reads either as the same few
values, so the map and timeline code has one path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..features import DESCRIPTORS
from ..store import Store
from ..task import Task

if TYPE_CHECKING:
    from ..run import Run

__all__ = ["Source", "check_upto", "load_task", "workers"]


@dataclass(frozen=True, slots=True)
class Source:
    """A run or its store, as a snapshot reads it.

    Attributes:
        store: the run's store.
        run: the run, or ``None`` when only its store was given.
        archive_kind: ``"cluster"``, ``"grid"`` or ``"greedy"``.
        seed: the run's seed (its archives' own randomness).
        descriptor: the archives' descriptor kind, as the store recorded it
            (:mod:`aster_nb.features`).
        task: the run's task; ``None`` when only its store was given (see ``task_path``).
        task_path: the task folder the store names, if any: loaded only when needed
            (:func:`load_task`), for feature names and bounds.
    """

    store: Store
    run: Run | None
    archive_kind: str
    seed: int
    descriptor: str
    task: Task | None = None
    task_path: str | None = None

    @classmethod
    def of(cls, source: Run | Store) -> Source:
        """Read ``source``: a :class:`~aster_nb.run.Run` or a :class:`~aster_nb.store.Store`.

        Raises:
            TypeError: ``source`` is neither.
        """
        if isinstance(source, Store):
            cfg: dict[str, Any] = source.meta("run") or {}
            path = cfg.get("task")
            return cls(
                store=source,
                run=None,
                archive_kind=str(cfg.get("archive", "cluster")),
                seed=int(cfg.get("seed", 0)),
                descriptor=_descriptor_of(source),
                task_path=path if isinstance(path, str) else None,
            )
        store = getattr(source, "store", None)
        if not isinstance(store, Store):
            raise TypeError(f"source must be an aster_nb Run or Store, got {type(source).__name__}")
        return cls(
            store=store,
            run=source,
            archive_kind=source.cfg.archive,
            seed=source.cfg.seed,
            descriptor=_descriptor_of(store),
            task=source.task,
        )


def _descriptor_of(store: Store) -> str:
    # stores from before the choice was recorded used the evaluator's or code features,
    # stored with each program: the "features" path
    meta = store.meta("descriptor")
    kind = meta.get("kind") if isinstance(meta, dict) else None
    return kind if kind in DESCRIPTORS[1:] else "features"


def load_task(path: str | None) -> Task | None:
    """The task at ``path``, or ``None`` if there is none or it no longer loads: a store
    whose task folder moved still replays, without feature names and bounds."""
    if path is None:
        return None
    try:
        return Task.load(path)
    except Exception:
        return None


def check_upto(upto: object) -> None:
    """Check a snapshot's ``upto``: a number of evaluations, or ``None`` for now.

    Raises:
        ValueError: not an int ``>= 0`` or ``None``.
    """
    if upto is not None and (isinstance(upto, bool) or not isinstance(upto, int) or upto < 0):
        raise ValueError(
            f"upto must be an int >= 0 (a number of evaluations) or None, got {upto!r}"
        )


def workers(source: Run | Store) -> list[str]:
    """Names of the run's workers, sorted."""
    src = Source.of(source)
    if src.run is not None:
        return sorted(src.run.workers)
    return src.store.workers()
