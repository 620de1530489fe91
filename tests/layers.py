"""The package's import graph, read with ``ast``, and the rules the graph must keep.

Why: the layering (arrows run one way, the core never loads a UI library), the size of a
module and the privacy of ``_names`` are easy to break one import at a time and hard to see
in review. This module reads every ``import`` and ``from ... import`` of a package (relative
ones resolved, those inside functions marked *lazy*, those under ``if TYPE_CHECKING:``
marked *typing*, ``importlib.import_module("...")`` and ``__import__("...")`` of a literal
name included) and reports each broken rule as one line naming the file, the line and the
import. It is a test helper, not part of the package; ``tests/test_layers.py`` holds the
rules for ``aster_nb`` and shows each check failing on a package made for the purpose.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Kind = Literal["eager", "lazy", "typing"]


@dataclass(frozen=True, slots=True)
class Import:
    """One imported module, or one name taken from a module.

    Attributes:
        path: the importing file, relative to the package's parent (``aster_nb/run.py``).
        line: the import's line.
        source: the importing module (``aster_nb.run``).
        target: the imported module, resolved (``aster_nb.agents.worker``, ``plotly.io``).
        name: the name taken from ``target`` by ``from target import name`` (or read as
            ``module.name``), if it is not itself a module; else ``None``.
        kind: ``eager`` (runs at import), ``lazy`` (inside a function) or ``typing`` (under
            ``if TYPE_CHECKING:``, never runs).
        read: a ``module._name`` read through a module an import bound, not an import: it
            counts for privacy only (the import that bound the module counts for layers).
    """

    path: str
    line: int
    source: str
    target: str
    name: str | None
    kind: Kind
    read: bool = False

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def what(self) -> str:
        """The imported thing, dotted: a module or ``module.name``."""
        return self.target if self.name is None else f"{self.target}.{self.name}"

    @property
    def how(self) -> str:
        return {"eager": "", "lazy": " (lazily)", "typing": " (for typing)"}[self.kind]


@dataclass(frozen=True)
class Rules:
    """What a package's graph must keep, with the offences known today.

    Attributes:
        package: the package's name (``aster_nb``).
        layers: ``(layer, modules)`` from the bottom up. A module listed covers its
            submodules, except the package itself, which covers only its ``__init__``. A
            module may import from its own layer and the layers below it.
        forbidden: third-party packages a layer never imports, even lazily.
        max_lines: the most lines a module may have.
        allowed_upward: ``"path -> target"`` upward imports that exist today; each names
            the change that removes it. The set may only shrink: an entry that no longer
            happens is reported too.
        allowed_long: ``path -> lines`` for modules over ``max_lines`` today: a ceiling that
            may not be exceeded, removed once the module is short enough.
        allowed_private: ``"path -> module._name"`` private imports that exist today.
    """

    package: str
    layers: tuple[tuple[str, tuple[str, ...]], ...]
    forbidden: Mapping[str, frozenset[str]] = field(default_factory=dict)
    max_lines: int = 400
    allowed_upward: frozenset[str] = frozenset()
    allowed_long: Mapping[str, int] = field(default_factory=dict)
    allowed_private: frozenset[str] = frozenset()

    def layer_of(self, module: str) -> str | None:
        best: tuple[int, str] | None = None
        for layer, prefixes in self.layers:
            for p in prefixes:
                hit = module == p or (p != self.package and module.startswith(p + "."))
                if hit and (best is None or len(p) > best[0]):
                    best = (len(p), layer)
        return None if best is None else best[1]

    def rank(self, layer: str) -> int:
        return [name for name, _ in self.layers].index(layer)


# -- reading the graph ------------------------------------------------------------------------


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root`` (a folder with ``__init__.py``), by name."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(root: Path) -> list[Import]:
    """Every import in the package at ``root``, in file and line order."""
    mods = modules(root)
    out: list[Import] = []
    for name, path in mods.items():
        out += _Reader(root, name, path, set(mods)).read()
    return out


def line_counts(root: Path) -> dict[str, int]:
    """Lines per module file, by path relative to the package's parent."""
    return {
        path.relative_to(root.parent).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in modules(root).values()
    }


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class _Reader(ast.NodeVisitor):
    """The imports of one module, with the kind each one has where it stands."""

    def __init__(self, root: Path, module: str, path: Path, known: set[str]) -> None:
        self.module, self.known = module, known
        self.rel = path.relative_to(root.parent).as_posix()
        self.package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        self.tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        self.depth = 0  # functions around the current node
        self.typing = 0  # `if TYPE_CHECKING:` bodies around the current node
        self.bound: dict[str, str] = {}  # local name -> package module it names
        self.found: list[Import] = []

    def read(self) -> list[Import]:
        self.visit(self.tree)
        return sorted(self.found, key=lambda i: i.line)

    def kind(self) -> Kind:
        return "typing" if self.typing else "lazy" if self.depth else "eager"

    def add(self, node: ast.AST, target: str, name: str | None = None, read: bool = False) -> None:
        line = getattr(node, "lineno", 0)
        self.found.append(Import(self.rel, line, self.module, target, name, self.kind(), read))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]
    visit_Lambda = visit_FunctionDef  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        flag = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        )
        self.visit(test)
        self.typing += flag
        for child in node.body:
            self.visit(child)
        self.typing -= flag
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.add(node, alias.name)
            if alias.name in self.known:
                local = alias.asname or alias.name.partition(".")[0]
                self.bound[local] = alias.name if alias.asname else local

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            if sub in self.known:  # `from package import module`
                self.add(node, sub)
                self.bound[alias.asname or alias.name] = sub
            else:
                self.add(node, target, alias.name)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        first = node.args[0] if node.args else None
        if (
            fname in ("__import__", "import_module")
            and isinstance(first, ast.Constant)
            and isinstance(first.value, str)
            and not first.value.startswith(".")
        ):
            self.add(node, first.value)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        # `module._name` on a module bound by an import reaches past its public face too
        chain: list[str] = []
        cur: ast.expr = node
        while isinstance(cur, ast.Attribute):
            chain.append(cur.attr)
            cur = cur.value
        if isinstance(cur, ast.Name) and cur.id in self.bound:
            module = self.bound[cur.id]
            for attr in reversed(chain):
                if f"{module}.{attr}" in self.known:
                    module = f"{module}.{attr}"
                    continue
                if is_private(attr):
                    self.add(node, module, attr, read=True)
                break
            return  # the chain is read whole: its inner attributes are not chains of their own
        self.generic_visit(node)


# -- the checks: each returns one line per problem --------------------------------------------


def unplaced(imports: list[Import], root: Path, rules: Rules) -> list[str]:
    """Modules no layer covers: a new module must be given its place."""
    return [
        f"{path.relative_to(root.parent).as_posix()}: module {m} is in no layer; add it to LAYERS"
        for m, path in modules(root).items()
        if rules.layer_of(m) is None
    ]


def upward(imports: list[Import], rules: Rules) -> list[str]:
    """Imports of a higher layer, except the allowed ones (and allowed ones now gone)."""
    out, seen = [], set()
    for i in imports:
        src, dst = rules.layer_of(i.source), rules.layer_of(i.target)
        if i.read or src is None or dst is None or rules.rank(dst) <= rules.rank(src):
            continue
        key = f"{i.path} -> {i.target}"
        seen.add(key)
        if key not in rules.allowed_upward:
            out.append(f"{i.where} imports {i.target} (layer {dst}) from layer {src}{i.how}")
    out = list(dict.fromkeys(out))
    out += [f"ALLOWED_UPWARD has {k!r}, which no longer happens: remove it" for k in
            sorted(rules.allowed_upward - seen)]  # fmt: skip
    return out


def forbidden(imports: list[Import], rules: Rules) -> list[str]:
    """Third-party packages imported where the layer forbids them, lazily or not."""
    out = []
    for i in imports:
        layer = rules.layer_of(i.source)
        top = i.target.partition(".")[0]
        if layer is not None and top in rules.forbidden.get(layer, ()):
            out.append(
                f"{i.where} imports {i.target}{i.how} from layer {layer}, which never imports {top}"
            )
    return list(dict.fromkeys(out))


def oversized(root: Path, rules: Rules) -> list[str]:
    """Modules over the line limit, or over their allowed ceiling; ceilings no longer needed."""
    counts = line_counts(root)
    out = []
    for path, n in counts.items():
        ceiling = rules.allowed_long.get(path)
        if ceiling is None and n > rules.max_lines:
            out.append(f"{path} has {n} lines, over {rules.max_lines}: split it by job")
        elif ceiling is not None and n > ceiling:
            out.append(f"{path} has {n} lines, over its ceiling of {ceiling} in ALLOWED_LONG")
    for path, ceiling in sorted(rules.allowed_long.items()):
        n = counts.get(path)
        if n is None or n <= rules.max_lines:
            now = "is gone" if n is None else f"has {n} lines"
            out.append(f"ALLOWED_LONG has {path!r} ({ceiling}), which now {now}: remove it")
    return out


def private(imports: list[Import], rules: Rules) -> list[str]:
    """Private names (``_x``) taken from another module, and private modules reached from
    outside their package; except the allowed ones (and allowed ones now gone)."""
    out, seen = [], set()
    for i in imports:
        if not (i.target == rules.package or i.target.startswith(rules.package + ".")):
            continue
        parts = i.target.split(".")
        # a private module may be used inside the package that holds it, not from outside
        owner = next((parts[:n] for n, p in enumerate(parts) if is_private(p)), None)
        outside = owner is not None and not (i.source + ".").startswith(".".join(owner) + ".")
        if not (outside or (i.name is not None and is_private(i.name))):
            continue
        key = f"{i.path} -> {i.what}"
        seen.add(key)
        if key not in rules.allowed_private:
            out.append(f"{i.where} imports private {i.what} from {i.source}{i.how}")
    out = list(dict.fromkeys(out))
    out += [f"ALLOWED_PRIVATE has {k!r}, which no longer happens: remove it" for k in
            sorted(rules.allowed_private - seen)]  # fmt: skip
    return out


def check(root: Path, rules: Rules) -> Iterator[str]:
    """Every problem the package at ``root`` has under ``rules``."""
    graph = import_graph(root)
    yield from unplaced(graph, root, rules)
    yield from upward(graph, rules)
    yield from forbidden(graph, rules)
    yield from oversized(root, rules)
    yield from private(graph, rules)
