"""Behaviour descriptors for the archives.

Which descriptor a program gets (:func:`describe`):

1. the evaluator's ``features`` (``EvalResult.features``) whenever it reports them -- the
   task knows what "different behaviour" means, and its ``[features]`` table in
   ``task.toml`` names them and may bound them;
2. otherwise :func:`code_features`, a cheap, deterministic, task-agnostic 2-D descriptor
   computed from the source text alone:

   * ``size`` -- ``log(1 + number of AST nodes)``. Size is the first thing edits change
     (adding a search loop, inlining a table, deleting dead code); the log makes doubling
     a 50-node program as far as doubling a 500-node one. Code that does not parse falls
     back to ``log(1 + 5 * non-blank lines)``: Python source averages about 5 AST nodes
     per non-blank line (median 4.9 over the standard library and scikit-learn), so the
     axis stays roughly in the same units.
   * ``numeric`` -- the fraction of numeric literals among the code's tokens (names,
     numbers, strings, operators; comments and layout excluded). It separates programs
     that hard-code or hand-tune numbers (tables of coordinates, magic constants: high)
     from programs that compute them (loops, optimizers: low) -- the two families edited
     programs split into. Over 700+ modules of the standard library and scikit-learn it
     was the most spread of the structural ratios tried (coefficient of variation 1.0,
     against 0.6 for loop/branch density and 0.3 for the call fraction) and nearly
     independent of size (correlation 0.25), so the two axes do not collapse onto one.

Both are ratios or logs, so no bounds are assumed; the grid archive learns bounds from
the first programs and the cluster archive standardizes the descriptors.
"""

from __future__ import annotations

import ast
import io
import math
import re
import tokenize

from .program import EvalResult

CODE_FEATURE_NAMES: tuple[str, str] = ("size", "numeric")

# Median AST nodes per non-blank line of Python source, used when the code does not parse.
_NODES_PER_LINE = 5.0

_COUNTED = frozenset({tokenize.NAME, tokenize.NUMBER, tokenize.STRING, tokenize.OP})
# Used only when even the tokenizer gives up: words, numbers, then any other symbol.
_ROUGH_TOKEN = re.compile(r"#[^\n]*|[A-Za-z_]\w*|\d[\w.]*|\.\d\w*|\S")
_ROUGH_NUMBER = re.compile(r"\.?\d")


def code_features(code: str) -> tuple[float, float]:
    """Task-agnostic descriptor of ``code``: ``(size, numeric)`` (see the module docs).

    Deterministic, never raises on bad code, and costs about 1 ms per 100 lines.
    """
    try:
        nodes = sum(1 for _ in ast.walk(ast.parse(code)))
    except (SyntaxError, ValueError):  # ValueError: null bytes in the source
        nodes = round(_NODES_PER_LINE * sum(1 for line in code.splitlines() if line.strip()))
    return (math.log1p(nodes), _numeric_fraction(code))


def describe(code: str, result: EvalResult) -> tuple[float, ...]:
    """The archive descriptor of a program: ``result.features`` if given, else code-derived.

    Args:
        code: the program's source.
        result: its evaluation.

    Returns:
        The evaluator's features as floats when ``result.features`` is not None, else
        :func:`code_features` of ``code``.
    """
    if result.features is not None:
        return tuple(float(x) for x in result.features)
    return code_features(code)


def _numeric_fraction(code: str) -> float:
    numbers = total = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in _COUNTED:
                total += 1
                numbers += tok.type == tokenize.NUMBER
    except (tokenize.TokenError, SyntaxError):
        # An unclosed bracket or string ends the stream; the tokens read so far count,
        # unless there were none, then a rough regex tokenization stands in.
        if total == 0:
            toks = [t for t in _ROUGH_TOKEN.findall(code) if not t.startswith("#")]
            total = len(toks)
            numbers = sum(1 for t in toks if _ROUGH_NUMBER.match(t))
    return numbers / total if total else 0.0
