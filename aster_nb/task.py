"""Tasks: a folder with an initial program, an evaluator and its surface areas.

Layout of a task folder::

    my_task/
        task.toml            # settings, surface-area descriptions (below)
        initial_program.py   # the starting program, with EVOLVE-BLOCK markers
        evaluator.py         # def evaluate(program_path: str) -> dict
        README.md            # the problem statement shown to the agents

``evaluate`` returns ``{"score": float}`` (higher is better) and optionally ``"metrics"``
(a dict of numbers), ``"features"`` (a list of numbers: the behaviour descriptor for the
archive), or ``"valid": False`` with ``"reason"`` when the program's output breaks the rules.
It runs inside the sandbox, never in the caller's process.

``task.toml``::

    name = "circle_packing"
    preload = ["numpy"]          # modules the warm sandbox server imports once
    target = 2.5                 # optional: score that counts as "reached" in benchmarks
    descriptor = "auto"          # optional: what the archive's cells separate (below)
    noise = 0.0                  # optional: std. dev. of the score between re-evaluations
    [limits]                     # optional; see Limits
    timeout = 30
    memory_mb = 2048
    [features]                   # optional: names and bounds of the evaluator's features
    names = ["a", "b"]
    bounds = [[0.0, 1.0], [0.0, 1.0]]
    [sandbox]                    # optional: what evaluations may reach
    network = false              # true lets evaluations use the network (default: none)
    env = ["DATA_DIR"]           # environment variables passed through to evaluations
    [surface_areas]              # one line per EVOLVE-BLOCK name in initial_program.py
    layout = "Where the circles start."

``descriptor`` is ``"features"`` (the evaluator's, named in ``[features]``), ``"metrics"``
(the evaluator's metrics), ``"embedding"`` (a code embedding fit on the run's history, which
sees every changed constant), ``"code"`` (code size and numeric share) or ``"auto"`` (the
default: ``features`` when ``[features]`` names them, else the embedding); see
:mod:`aster_nb.features`.

Every key is checked when the task loads: an unknown key (a typo), a value of the wrong
type, feature bounds that are not one ``[low, high]`` pair per name, EVOLVE-BLOCK markers
that do not pair up, and an initial program or evaluator that does not parse are each a
:class:`TaskError` naming the file and what was expected. ``[sandbox].env`` never passes a
variable whose name looks like a credential (``*KEY*``, ``*TOKEN*``, ``ANTHROPIC_*``, ...;
see :func:`aster_nb.errors.looks_like_credential`): naming one is an error, because the
sandbox exists to keep model-written code away from such secrets.

Before a run spends anything, :func:`check_start` asks the started sandbox whether the
evaluator imported and defines ``evaluate``, and evaluates the initial program once. An
initial program that raises, times out or runs out of memory is an error: that is almost
always a broken setup (a missing import or data file), and the agents would spend the whole
budget on it. An initial program the evaluator calls *invalid* (``"valid": False``) is
allowed: the first agents repair it. So a stub for the agents to fill in should return
something the evaluator rejects (say ``None``) rather than raise.
"""

from __future__ import annotations

import ast
import difflib
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from .blocks import BlockError, find_blocks
from .errors import UserInputError, looks_like_credential
from .features import DESCRIPTORS
from .program import EvalResult, Status

BUILTIN_DIR = Path(__file__).parent / "tasks"


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


@dataclass(frozen=True, slots=True)
class Task:
    """A loaded task. Build one with :meth:`Task.load`.

    Attributes:
        name: short name.
        root: the task folder.
        statement: the problem statement (README.md).
        initial_code: the starting program's source.
        evaluator_path: path of the evaluator module.
        surface_areas: the marked regions, in source order, with their descriptions.
        limits: sandbox limits for one evaluation.
        preload: modules the warm sandbox server imports once, so each evaluation forks
            with them already loaded.
        feature_names: names of the evaluator's features, if it reports any.
        feature_bounds: ``(low, high)`` per feature, if known (used by grid archives).
        target: a score that counts as reaching the goal (benchmarks), if any.
        descriptor: what the archives' cells separate: ``auto``, ``features``,
            ``metrics``, ``embedding`` or ``code`` (see :mod:`aster_nb.features`).
        noise: standard deviation of the score between re-evaluations (0: deterministic).
        network: whether evaluations may use the network (``[sandbox] network``; default
            no network).
        env: names of environment variables passed through to evaluations (``[sandbox]
            env``); none looks like a credential.
    """

    name: str
    root: Path
    statement: str
    initial_code: str
    evaluator_path: Path
    surface_areas: tuple[SurfaceArea, ...]
    limits: Limits = field(default_factory=Limits)
    preload: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()
    feature_bounds: tuple[tuple[float, float], ...] | None = None
    target: float | None = None
    descriptor: str = "auto"
    noise: float = 0.0
    network: bool = False
    env: tuple[str, ...] = ()

    @classmethod
    def load(cls, name_or_path: str | Path) -> Task:
        """Load a built-in task by name, or a task folder by path.

        Raises:
            TaskError: no such task or folder, or the folder is malformed (see the module).
        """
        text = str(name_or_path)
        path = Path(name_or_path)
        if path.is_dir():
            return _load_folder(path.resolve())
        names = builtin_tasks()
        if text in names:
            return _load_folder((BUILTIN_DIR / text).resolve())
        if path.exists():
            raise TaskError(
                f"{path} is a file; expected a task folder (with task.toml, "
                "initial_program.py and evaluator.py) or a built-in task name"
            )
        # a name with a separator was meant as a path: built-in names are no help then
        if "/" in text or "\\" in text or text.startswith("~"):
            raise TaskError(
                f"no task folder at {path}: expected a folder with task.toml, "
                "initial_program.py and evaluator.py"
            )
        close = difflib.get_close_matches(text, names, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise TaskError(
            f"no task {text!r}: expected a built-in name ({', '.join(names)}) "
            f"or a path to a task folder{hint}"
        )

    @property
    def area_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.surface_areas)


def builtin_tasks() -> list[str]:
    """Names of the tasks shipped with aster_nb."""
    return sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / "task.toml").is_file())


_KEYS = {
    "": {
        "name",
        "initial",
        "evaluator",
        "preload",
        "target",
        "descriptor",
        "noise",
        "limits",
        "features",
        "surface_areas",
        "sandbox",
    },
    "limits": {f.name for f in fields(Limits)},
    "features": {"names", "bounds"},
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


def _load_folder(root: Path) -> Task:
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

    target = cfg.get("target")
    descriptor = cfg.get("descriptor", "auto")
    if descriptor not in DESCRIPTORS:
        raise toml.fail("descriptor", f"one of {', '.join(map(repr, DESCRIPTORS))}", descriptor)
    if descriptor == "features" and not names:
        raise TaskError(
            f'{toml_path}: descriptor = "features" needs the evaluator\'s features named in '
            '[features] names; or choose "metrics", "embedding" or "code"'
        )
    noise = toml.number("noise", cfg.get("noise", 0.0))
    if noise < 0:
        raise toml.fail("noise", "a standard deviation >= 0", noise)
    return Task(
        name=toml.string("name", root.name),
        root=root,
        statement=statement,
        initial_code=initial,
        evaluator_path=evaluator,
        surface_areas=areas,
        limits=limits,
        preload=toml.strings("preload", cfg.get("preload", [])),
        feature_names=names,
        feature_bounds=bounds,
        target=None if target is None else toml.number("target", target),
        descriptor=descriptor,
        noise=noise,
        network=network,
        env=env,
    )


class Sandbox(Protocol):
    """What :func:`check_start` and :func:`check_evaluator` need of an executor (``aster_nb.sandbox.LocalExecutor``)."""

    @property
    def server_info(self) -> Mapping[str, Any]: ...

    async def submit(self, code: str) -> EvalResult: ...


def _last_line(text: str | None) -> str:
    """The line of a traceback that names the exception."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no error message"


def check_evaluator(task: Task, executor: Sandbox) -> None:
    """Check that the started sandbox imported the task's ``preload`` modules and its
    evaluator, and that the evaluator defines ``evaluate``.

    Raises:
        TaskError: naming the module or the evaluator and the exception's last line.
    """
    info = executor.server_info
    if failed := info.get("preload_errors"):
        module, error = next(iter(failed.items()))
        raise TaskError(
            f"{task.root / 'task.toml'} preload: module {module!r} does not import in the "
            f"sandbox: {_last_line(error)}; expected modules installed in this environment"
        )
    if error := info.get("evaluator_error"):
        last = _last_line(error)
        if "defines no callable evaluate" in last:
            raise TaskError(
                f"the evaluator {task.evaluator_path} defines no evaluate(); expected "
                "def evaluate(program_path: str) -> dict"
            )
        raise TaskError(f"the evaluator {task.evaluator_path} does not import: {last}")


async def check_start(task: Task, executor: Sandbox) -> EvalResult:
    """Evaluate the initial program once and check what a run needs before it spends anything
    (:func:`check_evaluator`, then the result).

    The evaluation goes through the executor's cache, so the run's own first evaluation of
    the initial program reuses it.

    Returns:
        The initial program's result: ``ok``, or ``invalid`` (the first agents repair it;
        the caller may warn), or ``lost`` (the sandbox failed, not the program).

    Raises:
        TaskError: the sandbox could not import a ``preload`` module or the evaluator, the
            evaluator has no ``evaluate``, the initial program raised, timed out or ran out
            of memory, or it returned a number of features other than ``task.toml``
            declares.
    """
    result = await executor.submit(task.initial_code)  # starts the server if needed
    check_evaluator(task, executor)
    first = f"the initial program of task {task.name!r} ({task.root})"
    if result.status is Status.ERROR:
        raise TaskError(
            f"{first} fails its first evaluation: {_last_line(result.error)}; expected a "
            "program that runs (one the evaluator rejects as invalid is fine: agents repair it)"
        )
    if result.status is Status.TIMEOUT:
        raise TaskError(
            f"{first} timed out in its first evaluation; expected it to finish within "
            f"[limits] timeout = {task.limits.timeout:g} s"
        )
    if result.status is Status.MEMORY:
        raise TaskError(
            f"{first} ran out of memory in its first evaluation; expected it to fit in "
            f"[limits] memory_mb = {task.limits.memory_mb}"
        )
    names = task.feature_names
    if result.ok and names and len(result.features or ()) != len(names):
        got = "none" if result.features is None else f"{len(result.features)}"
        raise TaskError(
            f"task {task.name!r} declares features {list(names)} in task.toml but its "
            f"evaluator returned {got}; expected evaluate() to return one number per "
            "declared feature"
        )
    return result
