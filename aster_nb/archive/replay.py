"""Rebuild an archive from stored programs: the one replay a reopened worker and a map of
the past both use.

An archive is a function of the programs added to it and their order (and its seed), so
adding a worker's stored programs again, in the order of its archive log, gives back the
very archive it had. :meth:`Worker.restore <aster_nb.agents.worker.Worker.restore>` does
it when a run is reopened; :mod:`aster_nb.snapshot` does it to draw the archive as it was
after evaluation ``t``, and extends the same archive when the slider moves forward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..program import Program
from .base import Archive

__all__ = ["replay_archive"]


def replay_archive(
    programs: Iterable[Program | None],
    *,
    make: Callable[[int], Archive],
    archive: Archive | None = None,
    describe: Callable[[Program], Program] | None = None,
) -> Archive | None:
    """Add ``programs`` to an archive, in order, as the search added them.

    Programs that are missing (``None``, e.g. an id the store does not have) or not ``ok``
    are skipped: an archive keeps only ``ok`` programs, and a failure does not change it.

    Args:
        programs: the programs in the order they were added (the store's archive log, or
            a worker's programs in storage order for stores from before the log).
        make: builds the archive at the first valid program, from its descriptor length
            (``len(program.descriptor)``), e.g. ``lambda dims: make_archive(kind, dims=dims,
            seed=seed, ...)``; not called when ``archive`` is given.
        archive: an archive to continue (it already holds programs before these); ``None``:
            a new one from ``make``.
        describe: gives a program stored without a ``descriptor`` one (returns the
            program with ``descriptor`` set); ``None``: such programs are skipped.

    Returns:
        The archive, or ``None`` when ``archive`` was ``None`` and no program was valid.

    Raises:
        ValueError: as :meth:`Archive.add <aster_nb.archive.base.ArchiveBase.add>`, for a
            program the archive rejects (a descriptor of the wrong length, say).
    """
    for p in programs:
        if p is None or not p.ok:
            continue
        if p.descriptor is None:
            if describe is None:
                continue
            p = describe(p)
        if archive is None:
            archive = make(len(p.descriptor or ()))
        archive.add(p)
    return archive
