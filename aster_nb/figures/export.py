"""Export to HTML anywhere, and to PNG/SVG through a headless Chromium, offline."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import plotly.colors
import plotly.offline
from plotly.basedatatypes import BaseFigure

from .checks import check_figure

# -- export -----------------------------------------------------------------------------------


class ExportError(RuntimeError):
    """A figure could not be exported (no Chromium, or the browser failed)."""


_NO_CHROMIUM = (
    "PNG and SVG export need a Chromium: install it (Debian/Ubuntu: `apt-get install "
    "chromium`) or set ASTER_NB_CHROMIUM to its executable. Export to .html works without it."
)
_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# A headless browser that touches nothing outside the page. SwiftShader is software WebGL:
# Scattergl traces render with it without a GPU ("unsafe" is about untrusted web content;
# this page is ours and loads nothing from the network).
_CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
)
_RESULT = re.compile(r"ASTER_EXPORT_(OK|ERR):([^<]*)")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def find_chromium() -> Path:
    """The Chromium used for PNG/SVG: ``$ASTER_NB_CHROMIUM``, else the first of chromium,
    chromium-browser, google-chrome on ``PATH``.

    Raises:
        ExportError: none found, or ``ASTER_NB_CHROMIUM`` is not an executable.
    """
    env = os.environ.get("ASTER_NB_CHROMIUM")
    if env:
        p = Path(env).expanduser()
        if p.is_file() and os.access(p, os.X_OK):
            return p
        raise ExportError(f"ASTER_NB_CHROMIUM={env!r} is not an executable file. {_NO_CHROMIUM}")
    for name in _CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ExportError(
        f"no Chromium found on PATH (looked for {', '.join(_CHROMIUM_NAMES)}). " + _NO_CHROMIUM
    )


def export(
    fig: BaseFigure,
    path: str | os.PathLike[str],
    *,
    width: int | None = None,
    height: int | None = None,
    scale: float = 2,
    timeout: float = 120.0,
) -> Path:
    """Write ``fig`` to ``path``, the format chosen by its suffix.

    Args:
        fig: a ``go.Figure`` or ``go.FigureWidget``.
        path: ``.html`` (self-contained: plotly.js is inlined, it opens offline), ``.png``
            or ``.svg`` (rendered by a headless Chromium, see :func:`find_chromium`).
            Missing parent folders are created.
        width: image width in CSS pixels (PNG/SVG); default: the figure's layout width,
            else the size the figure suggests for export (a comparison: 360 pixels per
            panel), else 900. HTML stays responsive.
        height: image height; default: the figure's layout height, else its suggested
            height, else 600.
        scale: PNG pixels per CSS pixel (2 is print-sharp); the PNG is ``width * scale``
            pixels wide.
        timeout: seconds to wait for the browser.

    Returns:
        The path written.

    Raises:
        TypeError: ``fig`` is not a plotly figure.
        ValueError: unknown suffix, or a non-positive size.
        ExportError: PNG/SVG without a Chromium, or the browser failed to render.

    Runs the browser as a blocking subprocess (about 1-2 s), so it works the same from a
    script and from a notebook cell inside a running event loop.
    """
    check_figure(fig)
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in (".html", ".png", ".svg"):
        raise ValueError(f"cannot export to {out.name!r}: the suffix must be .html, .png or .svg")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".html":
        fig.write_html(out, include_plotlyjs=True, full_html=True)
        return out
    # figures that fill a notebook's width carry no layout width: their suggested size
    meta = fig.layout.meta if isinstance(fig.layout.meta, dict) else {}
    suggested = meta.get("size") if isinstance(meta.get("size"), list | tuple) else (900, 600)
    w = _size(width, fig.layout.width, suggested[0], "width")
    h = _size(height, fig.layout.height, suggested[1], "height")
    if not (isinstance(scale, int | float) and not isinstance(scale, bool) and scale > 0):
        raise ValueError(f"scale must be a number > 0, got {scale!r}")
    data = _render(fig, suffix[1:], w, h, float(scale), timeout)
    if suffix == ".png":
        _check_png(data, round(w * scale), round(h * scale))
    elif not data.lstrip().startswith(b"<svg"):
        raise ExportError(f"Chromium returned no SVG (starts with {data[:40]!r})")
    out.write_bytes(data)
    return out


def _size(given: int | None, layout: Any, default: int, name: str) -> int:
    v = given if given is not None else (layout if layout is not None else default)
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise ValueError(f"{name} must be a positive number of pixels, got {v!r}")
    return int(v)


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><script src="plotly.min.js"></script>
<script src="figure.js"></script></head>
<body><pre id="out"></pre><div id="plot"></div><script>
function done(s) {{ document.getElementById("out").textContent = s; }}
try {{
  Plotly.toImage(ASTER_FIGURE, {opts})
    .then(function (url) {{ done("ASTER_EXPORT_OK:" + url); }},
          function (e) {{ done("ASTER_EXPORT_ERR:" + (e && e.message || e)); }});
}} catch (e) {{ done("ASTER_EXPORT_ERR:" + e.message); }}
</script></body></html>
"""


def _render(
    fig: BaseFigure, fmt: str, width: int, height: int, scale: float, timeout: float
) -> bytes:
    browser = find_chromium()
    with tempfile.TemporaryDirectory(prefix="aster-export-") as tmp:
        root = Path(tmp)
        # plotly.js and the figure go in files, not inline, so the dumped DOM stays small
        (root / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
        (root / "figure.js").write_text(f"var ASTER_FIGURE = {fig.to_json()};", encoding="utf-8")
        opts = json.dumps({"format": fmt, "width": width, "height": height, "scale": scale})
        page = root / "page.html"
        page.write_text(_PAGE.format(opts=opts), encoding="utf-8")
        cmd = [
            str(browser),
            *_CHROMIUM_FLAGS,
            f"--user-data-dir={root / 'profile'}",
            # virtual time runs ahead while the page idles, so a long budget costs nothing
            # once the image is done; it only bounds a page that never finishes
            "--virtual-time-budget=30000",
            "--dump-dom",
            page.as_uri(),
        ]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its renderer and GPU children go with it on a timeout
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ExportError(f"Chromium ({browser}) did not render within {timeout} s") from None
    text = stdout.decode("utf-8", "replace")
    m = _RESULT.search(text)
    if m is None:
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise ExportError(
            f"Chromium ({browser}) exited with code {proc.returncode} without an image; "
            f"its last messages: {' | '.join(tail) or '(none)'}"
        )
    payload = html.unescape(m.group(2))
    if m.group(1) == "ERR":
        raise ExportError(f"plotly.js could not render the figure: {payload}")
    head, _, body = payload.partition(",")
    if head.endswith(";base64"):
        return base64.b64decode(body)
    return urllib.parse.unquote(body).encode("utf-8")


def _check_png(data: bytes, width: int, height: int) -> None:
    if data[:8] != _PNG_MAGIC or data[12:16] != b"IHDR":
        raise ExportError(f"Chromium returned no PNG (starts with {data[:16]!r})")
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if (w, h) != (width, height):
        raise ExportError(f"the PNG is {w} x {h} pixels, expected {width} x {height}")
