"""A plotly ``FigureWidget`` whose front end loads plotly's widget bundle lazily, once.

plotly's own ``FigureWidget`` ships its 5 MB widget bundle as each widget's ``_esm``: every
figure sends (and a saved notebook stores) 5 MB, and anywidget drops a model whose ESM takes
over 2 s to import and initialize, which the bundle can on a loaded machine; that figure
then stays empty whatever is sent to it. Here the bundle is one model per kernel
(:func:`plotly_bundle`) and each figure's ESM is ``widgets/figure.js``, a few lines that
import the bundle once per page and hand over to plotly's own front end. Python-side it
is plotly's ``go.FigureWidget``: same traces, ``batch_update``, ``on_click``.
"""

from __future__ import annotations

import uuid
from copy import deepcopy
from importlib import resources
from typing import Any

import ipywidgets as w
import plotly
import plotly.graph_objects as go
import traitlets

from .frontend import asset

_BUNDLE: PlotlyBundle | None = None


class PlotlyBundle(w.Widget):
    """A view-less model holding plotly's FigureWidget ES module (``source``)."""

    source = traitlets.Unicode("").tag(sync=True)
    version = traitlets.Unicode("").tag(sync=True)


def plotly_bundle() -> PlotlyBundle:
    """The kernel's one :class:`PlotlyBundle` (made on first use, again if closed)."""
    global _BUNDLE
    if _BUNDLE is None or _BUNDLE.comm is None:
        path = resources.files("plotly") / "package_data" / "widgetbundle.js"
        if not path.is_file():
            raise FileNotFoundError(
                f"plotly {plotly.__version__} has no package_data/widgetbundle.js; "
                "aster_nb's figures need plotly >= 6 (its FigureWidget is an anywidget)"
            )
        _BUNDLE = PlotlyBundle(source=path.read_text(encoding="utf-8"), version=plotly.__version__)
    return _BUNDLE


class FigureWidget(go.FigureWidget):
    """``go.FigureWidget`` with a small ESM that imports plotly's bundle lazily.

    Args:
        figure: the figure to show (a ``go.Figure`` or its dict).
    """

    _esm = asset("figure.js")
    _aster_bundle = traitlets.Unicode().tag(sync=True)  # the bundle model's id
    _aster_plotly = traitlets.Unicode(plotly.__version__).tag(sync=True)
    _aster_key = traitlets.Unicode().tag(sync=True)  # names this model in the page

    def __init__(self, figure: Any = None) -> None:
        super().__init__(figure)
        self.on_msg(self._on_front_end)

    @traitlets.default("_aster_bundle")
    def _bundle_id(self) -> str:
        return plotly_bundle().model_id  # a default, so it is in the state the comm opens with

    @traitlets.default("_aster_key")
    def _key(self) -> str:
        return uuid.uuid4().hex

    def _on_front_end(self, _: Any, content: Any, buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "aster_resync":
            self.resync()

    def resync(self) -> None:
        """Send the whole current figure to the front end, then ``{"type": "aster_synced"}``.

        The front end asks for it once plotly's code has loaded: updates sent before then
        found nobody listening. An unchanged value sends nothing, and then the front end's
        copy (the state the widget opened with) is already current.
        """
        self._widget_layout = deepcopy(self._layout_obj._props)
        self._widget_data = deepcopy(self._data)
        self.send({"type": "aster_synced"})
