"""A task folder read and checked: ``task.toml``'s keys, the programs, the limits.

The format is documented in :mod:`aster_nb.task`; this module turns a folder into the
fields of a :class:`~aster_nb.task.Task`, or into a :class:`TaskError` that names the file
and what was expected. It also holds the parts of a task that ``task.toml`` declares
(:class:`Limits`, :class:`SurfaceArea`), so the sandbox can take them without the rest.

Every key is checked when the task loads: an unknown key (a typo), a value of the wrong
type, feature bounds that are not one ``[low, high]`` pair per name, EVOLVE-BLOCK markers
that do not pair up, feature descriptions that do not describe exactly the named features,
and an initial program or evaluator that does not parse are each a :class:`TaskError`
naming the file and what was expected. ``[sandbox].env`` never passes a
variable whose name looks like a credential (``*KEY*``, ``*TOKEN*``, ``ANTHROPIC_*``, ...;
see :func:`aster_nb.errors.looks_like_credential`): naming one is an error, because the
sandbox exists to keep model-written code away from such secrets.
"""

from __future__ import annotations

import ast
import difflib
import math
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypedDict

from .blocks import BlockError, find_blocks
from .errors import UserInputError, looks_like_credential
from .evalplan import EvalPlan, read_evaluation
from .features import DESCRIPTORS
from .resources import Resources


class TaskError(UserInputError):
    """A task folder is missing a part or is malformed."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits for one evaluation in the sandbox.

    Attributes:
        timeout: wall-clock seconds before the whole process group is killed.
        cpu_seconds: CPU-time limit (``RLIMIT_CPU``); default ``timeout + 1``.
        memory_mb: address-space limit (``RLIMIT_AS``) in MiB.
        max_processes: processes the evaluation may have at once (fork bombs stop here).
        max_file_mb: largest file the evaluation may write (``RLIMIT_FSIZE``), MiB.
        max_output_bytes: stdout and stderr are each kept up to this many bytes.
    """

    timeout: float = 30.0
    cpu_seconds: float | None = None
    memory_mb: int = 4096
    max_processes: int = 64
    max_file_mb: int = 64
    max_output_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in ("timeout", "memory_mb", "max_processes", "max_file_mb", "max_output_bytes"):
            if not getattr(self, name) > 0:
                raise TaskError(f"Limits.{name} must be > 0, got {getattr(self, name)!r}")

    @property
    def cpu(self) -> float:
        return self.cpu_seconds if self.cpu_seconds is not None else self.timeout + 1.0


@dataclass(frozen=True, slots=True)
class SurfaceArea:
    """A named region of the program that a worker can be asked to improve."""

    name: str
    description: str


class TaskFields(TypedDict):
    """What a task folder declares: :class:`~aster_nb.task.Task`'s fields, checked."""

    name: str
    root: Path
    statement: str
    initial_code: str
    evaluator_path: Path
    surface_areas: tuple[SurfaceArea, ...]
    limits: Limits
    resources: Resources
    preload: tuple[str, ...]
    feature_names: tuple[str, ...]
    feature_bounds: tuple[tuple[float, float], ...] | None
    feature_descriptions: tuple[str, ...]
    target: float | None
    record: float | None
    record_source: str
    score_description: str
    descriptor: str
    noise: float
    network: bool
    env: tuple[str, ...]
    evaluation: EvalPlan


_KEYS = {
    "": {
        "name",
        "initial",
        "evaluator",
        "preload",
        "target",
        "record",
        "record_source",
        "score_description",
        "descriptor",
        "noise",
        "limits",
        "features",
        "surface_areas",
        "sandbox",
        "resources",
        "evaluation",
    },
    "limits": {f.name for f in fields(Limits)},
    "resources": {"cpus", "gpus", "memory_mb", "custom"},
    "features": {"names", "bounds", "descriptions"},
    "sandbox": {"network", "env"},
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Toml:
    """Typed reads from a task.toml: every mistake is a TaskError naming the file and key."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    def fail(self, key: str, expected: str, got: object) -> TaskError:
        return TaskError(f"{self.path}: {key} must be {expected}, got {got!r}")

    def check_keys(self) -> None:
        for table, known in _KEYS.items():
            values = self.data if not table else self.table(table)
            for key in values:
                if key in known:
                    continue
                where = f"[{table}] " if table else ""
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise TaskError(
                    f"{self.path}: unknown key {where}{key!r}{hint}; "
                    f"expected {', '.join(sorted(known))}"
                )

    def table(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(f"[{name}]", "a table", value)
        return value

    def string(self, key: str, default: str) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(key, "a non-empty string", value)
        return value

    def strings(self, where: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(where, "a list of non-empty strings", value)
        if len(set(value)) != len(value):
            raise self.fail(where, "a list without repeats", value)
        return tuple(value)

    def number(self, where: str, value: object, *, above: float | None = None) -> float:
        """A finite number (``> above`` if given); ``None`` for ``above`` allows any."""
        # bool is an int in Python, but `timeout = true` is a mistake, not 1 second
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or (above is not None and not value > above)
        ):
            rule = "a finite number" + ("" if above is None else f" > {above:g}")
            raise self.fail(where, rule, value)
        return float(value)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TaskError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise TaskError(f"{path} cannot be read: {e.strerror or e}") from e


def _check_parses(path: Path, code: str, what: str) -> None:
    """A file that does not parse cannot run at all: say so before anything runs."""
    try:
        ast.parse(code, filename=str(path))
    except SyntaxError as e:
        raise TaskError(
            f"{what} {path} does not parse: {e.msg} (line {e.lineno}); expected valid Python source"
        ) from e
    except ValueError as e:  # null bytes in the source
        raise TaskError(f"{what} {path} does not parse: {e}") from e


def read_folder(root: Path) -> TaskFields:
    """Read and check the task folder ``root``: the fields of its :class:`~aster_nb.task.Task`.

    Raises:
        TaskError: a part is missing or malformed (see the module).
    """

    def need(fname: str) -> Path:
        p = root / fname
        if not p.is_file():
            raise TaskError(f"task folder {root} has no {fname}")
        return p

    toml_path = need("task.toml")
    try:
        toml = _Toml(toml_path, tomllib.loads(_read(toml_path)))
    except tomllib.TOMLDecodeError as e:
        raise TaskError(f"{toml_path} is not valid TOML: {e}") from e
    toml.check_keys()
    cfg = toml.data

    initial_path = need(toml.string("initial", "initial_program.py"))
    initial = _read(initial_path)
    _check_parses(initial_path, initial, "the initial program")
    evaluator = need(toml.string("evaluator", "evaluator.py"))
    _check_parses(evaluator, _read(evaluator), "the evaluator")
    statement = _read(root / "README.md") if (root / "README.md").is_file() else ""

    try:
        blocks = find_blocks(initial)
    except BlockError as e:
        raise TaskError(
            f"{initial_path}: {e}; expected pairs of # EVOLVE-BLOCK-START name / # EVOLVE-BLOCK-END"
        ) from e
    areas_table = toml.table("surface_areas")
    for key, value in areas_table.items():
        if not isinstance(value, str):
            raise toml.fail(f"[surface_areas] {key}", "a one-line description string", value)
    described = {str(k): str(v) for k, v in areas_table.items()}
    # No markers: the whole program is one open area, and planners ask their model for goals.
    missing = [n for n in blocks if n not in described]
    extra = [n for n in described if n not in blocks]
    if missing or extra:
        raise TaskError(
            f"{toml_path} [surface_areas] must describe exactly the marked blocks "
            f"{list(blocks)}; undescribed: {missing}, not in the program: {extra}"
        )
    areas = tuple(SurfaceArea(n, described[n]) for n in blocks)

    raw_limits = toml.table("limits")
    for key, value in raw_limits.items():
        toml.number(f"[limits] {key}", value, above=0)
    limits = Limits(**raw_limits)

    feats = toml.table("features")
    names = toml.strings("[features] names", feats.get("names", []))
    bounds = feats.get("bounds")
    if bounds is not None:
        pairs = isinstance(bounds, list) and all(
            isinstance(b, list)
            and len(b) == 2
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in b)
            and math.isfinite(b[0])
            and math.isfinite(b[1])
            and b[0] < b[1]
            for b in bounds
        )
        if not pairs or len(bounds) != len(names):
            raise TaskError(
                f"{toml_path} [features] bounds must be one [low, high] pair of finite "
                f"numbers with low < high per name in {list(names)}; got {bounds!r}"
            )
        bounds = tuple((float(lo), float(hi)) for lo, hi in bounds)
    descriptions = _feature_descriptions(toml, names, feats.get("descriptions"))

    sandbox = toml.table("sandbox")
    network = sandbox.get("network", False)
    if not isinstance(network, bool):
        raise toml.fail("[sandbox] network", "true or false", network)
    env = toml.strings("[sandbox] env", sandbox.get("env", []))
    for var in env:
        if not _ENV_NAME.fullmatch(var):
            raise toml.fail("[sandbox] env", "environment variable names", var)
        if looks_like_credential(var):
            raise TaskError(
                f"{toml_path}: [sandbox] env names {var}, which looks like a credential; "
                "secrets never reach the sandbox: pass data through a file or rename the "
                "variable if it holds no secret"
            )

    resources = _resources(toml)
    target = cfg.get("target")
    descriptor = cfg.get("descriptor", "auto")
    if descriptor not in DESCRIPTORS:
        raise toml.fail("descriptor", f"one of {', '.join(map(repr, DESCRIPTORS))}", descriptor)
    if descriptor == "features" and not names:
        raise TaskError(
            f'{toml_path}: descriptor = "features" needs the evaluator\'s features named in '
            '[features] names; or choose "metrics", "embedding" or "code"'
        )
    record = cfg.get("record")
    record = None if record is None else toml.number("record", record)
    record_source = toml.string("record_source", "") if "record_source" in cfg else ""
    if record_source and record is None:
        raise TaskError(f"{toml_path}: record_source names where a record is from; set record too")
    noise = toml.number("noise", cfg.get("noise", 0.0))
    if noise < 0:
        raise toml.fail("noise", "a standard deviation >= 0", noise)
    evaluation = read_evaluation(toml.table("evaluation"), noise=noise, fail=toml.fail)
    return TaskFields(
        name=toml.string("name", root.name),
        root=root,
        statement=statement,
        initial_code=initial,
        evaluator_path=evaluator,
        surface_areas=areas,
        limits=limits,
        resources=resources,
        preload=toml.strings("preload", cfg.get("preload", [])),
        feature_names=names,
        feature_bounds=bounds,
        feature_descriptions=descriptions,
        target=None if target is None else toml.number("target", target),
        record=record,
        record_source=record_source,
        score_description=(
            toml.string("score_description", "") if "score_description" in cfg else ""
        ),
        descriptor=descriptor,
        noise=noise,
        network=network,
        env=env,
        evaluation=evaluation,
    )


def _feature_descriptions(toml: _Toml, names: tuple[str, ...], table: object) -> tuple[str, ...]:
    """``[features] descriptions``, one per name in ``names``' order (``()`` if not given).

    Each is what a figure's axis says: what the feature measures, with its unit. A table
    that leaves a feature out or describes one not in ``names`` (a typo) is refused, as
    ``[surface_areas]`` is: a half-described map would mix titles and bare names.
    """
    if table is None:
        return ()
    if not isinstance(table, dict):
        raise toml.fail("[features] descriptions", "a table of feature name = description", table)
    for key, value in table.items():
        if not isinstance(value, str) or not value.strip():
            raise toml.fail(f"[features] descriptions {key}", "a one-line description", value)
    missing = [n for n in names if n not in table]
    extra = [str(k) for k in table if k not in names]
    if missing or extra:
        hints = [
            f"{k!r} -> {m[0]!r}?" for k in extra if (m := difflib.get_close_matches(k, missing, 1))
        ]
        raise TaskError(
            f"{toml.path}: [features] descriptions must describe exactly the features in "
            f"names {list(names)}; undescribed: {missing}, not in names: {extra}"
            + (f" (did you mean {', '.join(hints)})" if hints else "")
        )
    return tuple(" ".join(table[n].split()) for n in names)


def _resources(toml: _Toml) -> Resources:
    """``[resources]``: what one evaluation needs of a node (see :class:`Resources`)."""
    table = toml.table("resources")
    memory = table.get("memory_mb")
    if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int)):
        raise toml.fail("[resources] memory_mb", "a whole number of MiB > 0", memory)
    custom = table.get("custom", {})
    if not isinstance(custom, dict):
        raise toml.fail("[resources] custom", "a table of amounts, e.g. {special = 1}", custom)
    cpus = toml.number("[resources] cpus", table.get("cpus", 1.0), above=0)
    gpus = toml.number("[resources] gpus", table.get("gpus", 0.0))
    pairs = tuple(
        (name, toml.number(f"[resources] custom.{name}", amount, above=0))
        for name, amount in custom.items()
    )
    try:
        return Resources(cpus=cpus, gpus=gpus, memory_mb=memory, custom=pairs)
    except ValueError as e:  # the rules Ray keeps (whole GPUs above one, its own names)
        raise TaskError(f"{toml.path}: [resources] {e}") from e
