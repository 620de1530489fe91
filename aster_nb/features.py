"""Behaviour descriptors for the archives.

An archive's cells are regions of a descriptor space, so the descriptor decides what
"different programs" means. ``task.toml`` chooses it with ``descriptor = "..."``
(:data:`DESCRIPTORS`):

=============  =============================================================================
``features``   the evaluator's ``features``, named in ``task.toml`` ``[features]``;
``metrics``    the evaluator's ``metrics``, every valid program's in sorted key order
               (:class:`MetricsDescriptor`);
``embedding``  a code embedding fit on the run's history, which sees every changed
               constant (:class:`~aster_nb.embedding.CodeEmbedding`);
``code``       :func:`code_features`, two numbers from the source text;
``auto``       (the default) ``features`` when ``task.toml`` names them, else
               :data:`DEFAULT_DESCRIPTOR`.
=============  =============================================================================

:func:`archive_descriptor` resolves the choice once per run and records it in the
store's meta (``"descriptor"``), so a resumed run and a replay use the same one; an
archive built with :func:`make_descriptor`'s object computes descriptors itself, from each
program's code or result. The ``descriptor`` stored with each program
(:func:`describe`) stays what it always was, the evaluator's features or else the code's:

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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .program import EvalResult, Program

if TYPE_CHECKING:
    from .task import Task

CODE_FEATURE_NAMES: tuple[str, str] = ("size", "numeric")
DESCRIPTORS: tuple[str, ...] = ("auto", "features", "metrics", "embedding", "code")
DEFAULT_DESCRIPTOR = "embedding"
"""What ``auto`` means when the task names no features. Measured with ``benchmarks/archives.py``
(Cluster-Elites, adaptive selection, offline model, 8 agents, 1,000 evaluations, mean best
over 10 seeds): on ``circle_packing_bare`` the embedding scored 1.887 with 43 cells, the
metrics 1.846 (43 cells) and ``code`` 1.903 with a single cell, where the archive is greedy
(greedy itself: 1.935); on ``deceptive_trap`` the embedding 5.28, the metrics (two counts,
4 cells) and ``code`` (1 cell) 3.20, stuck in the trap like greedy. 8 components instead of
16 gave 1.873 and the same 5.28 (three constants vary there)."""

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


# -- descriptors an archive computes itself ---------------------------------------------------


class Descriptor(Protocol):
    """What an archive needs of a descriptor it computes itself.

    Attributes:
        kind: one of :data:`DESCRIPTORS` (not ``auto``).
        scaled: ``True`` when all dimensions are in one unit already, so an archive must
            not standardize them (an embedding's components); ``False`` when they are in
            unrelated units and should be.
    """

    kind: str
    scaled: bool

    def __call__(self, program: Program) -> np.ndarray:
        """The descriptor of ``program``, the next history row (an adaptive descriptor
        remembers it)."""
        ...

    def due(self) -> bool:
        """Whether :meth:`refit` should run now (never, for a fixed descriptor)."""
        ...

    def refit(self) -> np.ndarray:
        """Refit on the history; every row's new descriptor, ``(rows, dims)``."""
        ...

    def axis_names(self) -> tuple[str, ...]:
        """A name per dimension."""
        ...


class _Fixed:
    """A descriptor that never changes once computed: nothing to refit."""

    kind = ""
    scaled = False

    def due(self) -> bool:
        return False

    def refit(self) -> np.ndarray:
        raise NotImplementedError(f"the {self.kind} descriptor is fixed; it has nothing to refit")


class CodeDescriptor(_Fixed):
    """:func:`code_features` of the program's code: ``(size, numeric)``."""

    kind = "code"

    def __call__(self, program: Program) -> np.ndarray:
        return np.asarray(code_features(program.code), dtype=float)

    def axis_names(self) -> tuple[str, ...]:
        return CODE_FEATURE_NAMES


class MetricsDescriptor(_Fixed):
    """The evaluator's metrics as a vector: the keys of the first program, sorted.

    A later program missing one of those keys gets 0.0 for it and keys the first program
    did not have are ignored, so the length never changes; evaluators that report the same
    metrics for every valid program (the usual case) are described exactly. The first
    program of a replay or a resumed run is the same one, so are the keys.

    Raises (when called):
        ValueError: the first program reports no metrics.
    """

    kind = "metrics"

    def __init__(self) -> None:
        self.keys: tuple[str, ...] | None = None

    def __call__(self, program: Program) -> np.ndarray:
        metrics: Mapping[str, float] = program.result.metrics if program.result else {}
        if self.keys is None:
            if not metrics:
                raise ValueError(
                    f"descriptor 'metrics' needs an evaluator that reports metrics; program "
                    f'{program.id} has none (choose descriptor = "embedding" in task.toml)'
                )
            self.keys = tuple(sorted(metrics))
        values = [float(metrics.get(k, 0.0)) for k in self.keys]
        return np.nan_to_num(np.asarray(values), nan=0.0, posinf=0.0, neginf=0.0)

    def axis_names(self) -> tuple[str, ...]:
        return self.keys or ()


def resolve_descriptor(choice: str, *, has_features: bool) -> str:
    """The descriptor ``choice`` (from :data:`DESCRIPTORS`) stands for.

    Args:
        choice: ``task.toml``'s ``descriptor``.
        has_features: whether the task names evaluator features.

    Raises:
        ValueError: ``choice`` is not in :data:`DESCRIPTORS`, or it is ``features`` and
            the task names none.
    """
    if choice not in DESCRIPTORS:
        raise ValueError(f"descriptor must be one of {', '.join(DESCRIPTORS)}; got {choice!r}")
    if choice == "auto":
        return "features" if has_features else DEFAULT_DESCRIPTOR
    if choice == "features" and not has_features:
        raise ValueError(
            'descriptor = "features" needs the evaluator\'s features named in task.toml '
            "[features] names"
        )
    return choice


def make_descriptor(kind: str) -> Descriptor | None:
    """A fresh descriptor object for ``kind``; ``None`` for ``features``, which archives
    read from ``program.descriptor`` (the evaluator's features, set by the worker).

    Raises:
        ValueError: ``kind`` is not one of :data:`DESCRIPTORS` other than ``auto``.
    """
    from .embedding import CodeEmbedding

    if kind == "features":
        return None
    if kind == "metrics":
        return MetricsDescriptor()
    if kind == "code":
        return CodeDescriptor()
    if kind == "embedding":
        return CodeEmbedding()
    raise ValueError(
        f"descriptor kind must be one of features, metrics, embedding, code; got {kind!r}"
    )


class _Meta(Protocol):
    def meta(self, key: str, default: Any = None) -> Any: ...

    def set_meta(self, key: str, value: Any) -> None: ...


def archive_descriptor(task: Task, store: _Meta) -> str:
    """The descriptor kind of a run's archives: the one its store records, else the task's
    choice resolved (and then recorded as ``{"kind", "choice"}`` under meta
    ``"descriptor"``), so every worker, a resumed run and a replay agree."""
    stored = store.meta("descriptor")
    if isinstance(stored, dict) and stored.get("kind") in DESCRIPTORS[1:]:
        return str(stored["kind"])
    choice = getattr(task, "descriptor", "auto")
    kind = resolve_descriptor(choice, has_features=bool(task.feature_names))
    store.set_meta("descriptor", {"kind": kind, "choice": choice})
    return kind
