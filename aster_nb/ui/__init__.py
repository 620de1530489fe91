"""The notebook dashboard (ipywidgets, plotly FigureWidget, anywidget) and its views.

``Dashboard(run)`` composes every view; each is also usable alone, e.g.
``StatusLine(run)`` or ``ArchiveMapView(run, worker="p0.w1")``. Views follow the run's
events through a coalescing :class:`Throttle`, so they redraw a few times a second at most
however fast the run goes, and never block the kernel. ``close()`` unsubscribes a view.

The front-end sources of the custom widgets are in the top-level ``widgets/`` folder,
installed as ``aster_nb.ui.assets``.
"""

from .archive_map import ArchiveMapView
from .base import ErrorSink
from .controls import Controls
from .dashboard import Dashboard
from .diff import BestDiff
from .fork import ForkPanel
from .goals import GoalEditor, GoalEditors
from .handoffs import HandoffFeed
from .progress import ProgressView
from .replay import ReplaySlider
from .status import StatusLine
from .throttle import Throttle
from .timeline import TimelineView

__all__ = [
    "ArchiveMapView",
    "BestDiff",
    "Controls",
    "Dashboard",
    "ErrorSink",
    "ForkPanel",
    "GoalEditor",
    "GoalEditors",
    "HandoffFeed",
    "ProgressView",
    "ReplaySlider",
    "StatusLine",
    "Throttle",
    "TimelineView",
]
