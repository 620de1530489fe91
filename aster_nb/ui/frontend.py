"""The front-end sources (ESM, CSS) of the views, read from the files that ship in the wheel.

The top-level ``widgets/`` folder is installed as the package ``aster_nb.ui.assets`` (see
pyproject.toml), so the text is read from disk and nothing is fetched from a network.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

_SOURCE_TREE = Path(__file__).resolve().parents[2] / "widgets"


@functools.cache
def asset(name: str) -> str:
    """The text of ``widgets/<name>`` (e.g. ``handoffs.js``).

    Read from the ``widgets/`` folder of the checkout this module was imported from, when
    there is one (a source checkout or a git worktree: its widgets go with its Python,
    while an editable install's ``aster_nb.ui.assets`` may point at another checkout),
    else through the installed package ``aster_nb.ui.assets`` (a wheel).
    """
    local = _SOURCE_TREE / name
    if local.is_file():
        return local.read_text(encoding="utf-8")
    try:
        path = resources.files("aster_nb.ui.assets") / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    except ModuleNotFoundError:
        pass
    raise FileNotFoundError(
        f"front-end file {name!r} is neither in the installed package aster_nb.ui.assets nor "
        f"in {_SOURCE_TREE}; reinstall aster_nb (pip install -e .) so widgets/ is packaged"
    )


def style_tag() -> str:
    """``widgets/dashboard.css`` in a ``<style>`` element, for an HTML widget."""
    return f"<style>{asset('dashboard.css')}</style>"
