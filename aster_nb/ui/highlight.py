"""Syntax highlighting in the kernel (Pygments, inline styles), so no CDN or CSS is needed."""

from __future__ import annotations

import difflib
import html

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer, PythonLexer

_FORMAT = HtmlFormatter(noclasses=True, style="default", nobackground=False)


def diff_html(a: str, b: str, *, a_name: str, b_name: str, context: int = 3) -> str:
    """A highlighted unified diff from ``a`` to ``b``; a short note when they are equal."""
    text = "".join(difflib.unified_diff(_lines(a), _lines(b), a_name, b_name, n=context))
    if not text:
        return f"<i>{html.escape(b_name)} is identical to {html.escape(a_name)}</i>"
    return highlight(text, DiffLexer(), _FORMAT)


def _lines(s: str) -> list[str]:
    # a last line without a newline would otherwise run into the next line of the diff
    return [line if line.endswith("\n") else line + "\n" for line in s.splitlines(keepends=True)]


def code_html(code: str) -> str:
    """``code`` highlighted as Python."""
    return highlight(code, PythonLexer(), _FORMAT)
