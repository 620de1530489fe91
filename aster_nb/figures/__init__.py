"""Plotly figures of a run, for write-ups and for the dashboard, which updates them in place.

Every function takes the records of :mod:`aster_nb.snapshot`, so a live run, a finished
one and a replayed one draw alike. Two figures have a fixed trace layout, so a
``go.FigureWidget`` made from them can be redrawn by rewriting trace data instead of being
rebuilt (:func:`archive_map_update`, :func:`timeline_update`):

* archive map, ``bins`` + 3 traces: ``[0, bins)`` one filled ``Scatter`` per score bin
  holding its cells' polygons as float32 arrays, rings separated by NaN (a Voronoi map of
  1,000 cells is then a handful of SVG paths, not 1,000 traces or shapes); ``bins`` the empty cells (grey);
  ``bins + 1`` every program of the worker as ``Scattergl`` markers with float32
  coordinates, carrying the colorbar; ``bins + 2`` the cell centres, whose ``customdata``
  is the elite id (``None`` for an empty cell) and whose hover shows id and score.
* timeline: one ``Scattergl`` best-so-far line per worker (sorted), then ``"best"`` (all
  workers), then ``"planner"`` (the top planner's best at each round end, a step line).

:func:`export` writes ``.html`` (self-contained) anywhere and ``.png`` / ``.svg`` through
a headless Chromium, offline: the page renders with the plotly.js bundled in the plotly
package and ``Plotly.toImage``; no kaleido, no network.

Modules: :mod:`~.maps` (one archive map), :mod:`~.comparison` (maps side by side),
:mod:`~.panel` (a map panel's traces and data, shared by both), :mod:`~.timelines`,
:mod:`~.lineage`, :mod:`~.export`; :mod:`~.style` (template, axes, colors, formats) and
:mod:`~.checks` (argument checks) are what they share.
"""

from .comparison import comparison_figure
from .export import ExportError, export, find_chromium
from .lineage import lineage_figure
from .maps import archive_map_figure, archive_map_update
from .timelines import timeline_figure, timeline_update

__all__ = [
    "ExportError",
    "archive_map_figure",
    "archive_map_update",
    "comparison_figure",
    "export",
    "find_chromium",
    "lineage_figure",
    "timeline_figure",
    "timeline_update",
]
