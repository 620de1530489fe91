"""What a run looked like: archive maps, score timelines and lineages, now or after
evaluation ``t``.

The dashboard, the replay slider and :mod:`aster_nb.figures` all draw from these records,
so a live run, a finished one and one reopened from its store look the same. Nothing here
imports a plotting library.

==========================  =================================================================
:func:`map_snapshot`        a worker's archive as a map (:class:`MapSnapshot`), now or as it
                            was after evaluation ``t`` (replayed from the store)
:class:`ArchiveMaps`        the same for one run again and again, keeping what redraws reuse
                            (the replayed archives, Voronoi regions): what a live view holds
:func:`timeline`            best scores over the run (:class:`Timeline`)
:func:`lineage`             a program's ancestry, oldest first
:func:`workers`             the run's worker names
==========================  =================================================================

Modules: :mod:`~aster_nb.snapshot.records` (the records),
:mod:`~aster_nb.snapshot.source` (a run or its store, read alike),
:mod:`~aster_nb.snapshot.maps` (archive maps; the plane geometry is
:mod:`aster_nb.geometry`), :mod:`~aster_nb.snapshot.history` (timelines and lineages).
"""

from .history import lineage, timeline
from .maps import ArchiveMaps, map_snapshot
from .records import Cell, MapSnapshot, Timeline
from .source import workers

__all__ = [
    "ArchiveMaps",
    "Cell",
    "MapSnapshot",
    "Timeline",
    "lineage",
    "map_snapshot",
    "timeline",
    "workers",
]
