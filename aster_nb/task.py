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
    noise = 0.0                  # optional: std. dev. of the score between re-evaluations
    [limits]                     # optional; see Limits
    timeout = 30
    memory_mb = 2048
    [features]                   # optional: names and bounds of the evaluator's features
    names = ["a", "b"]
    bounds = [[0.0, 1.0], [0.0, 1.0]]
    [surface_areas]              # one line per EVOLVE-BLOCK name in initial_program.py
    layout = "Where the circles start."
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .blocks import find_blocks

BUILTIN_DIR = Path(__file__).parent / "tasks"


class TaskError(ValueError):
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
        noise: standard deviation of the score between re-evaluations (0: deterministic).
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
    noise: float = 0.0

    @classmethod
    def load(cls, name_or_path: str | Path) -> Task:
        """Load a built-in task by name, or a task folder by path."""
        path = Path(name_or_path)
        if not path.is_dir():
            builtin = BUILTIN_DIR / str(name_or_path)
            if not builtin.is_dir():
                raise TaskError(
                    f"no task {str(name_or_path)!r}: expected a built-in name "
                    f"({', '.join(builtin_tasks())}) or a path to a task folder"
                )
            path = builtin
        return _load_folder(path.resolve())

    @property
    def area_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.surface_areas)


def builtin_tasks() -> list[str]:
    """Names of the tasks shipped with aster_nb."""
    return sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / "task.toml").is_file())


def _load_folder(root: Path) -> Task:
    def need(fname: str) -> Path:
        p = root / fname
        if not p.is_file():
            raise TaskError(f"task folder {root} has no {fname}")
        return p

    try:
        cfg = tomllib.loads(need("task.toml").read_text())
    except tomllib.TOMLDecodeError as e:
        raise TaskError(f"{root / 'task.toml'}: {e}") from e
    initial = need(cfg.get("initial", "initial_program.py")).read_text()
    evaluator = need(cfg.get("evaluator", "evaluator.py"))
    statement = (root / "README.md").read_text() if (root / "README.md").is_file() else ""

    blocks = find_blocks(initial)
    described = {str(k): str(v) for k, v in cfg.get("surface_areas", {}).items()}
    # No markers: the whole program is one open area, and planners ask their model for goals.
    missing = [n for n in blocks if n not in described]
    extra = [n for n in described if n not in blocks]
    if missing or extra:
        raise TaskError(
            f"{root}/task.toml [surface_areas] must describe exactly the marked blocks "
            f"{list(blocks)}; undescribed: {missing}, not in the program: {extra}"
        )
    areas = tuple(SurfaceArea(n, described[n]) for n in blocks)

    try:
        limits = Limits(**cfg.get("limits", {}))
    except TypeError as e:
        raise TaskError(f"{root}/task.toml [limits]: {e}") from e

    feats = cfg.get("features", {})
    names = tuple(str(n) for n in feats.get("names", ()))
    bounds = feats.get("bounds")
    if bounds is not None:
        if len(bounds) != len(names) or any(len(b) != 2 or b[0] >= b[1] for b in bounds):
            raise TaskError(
                f"{root}/task.toml [features].bounds must be one [low, high] pair with "
                f"low < high per name in {list(names)}; got {bounds}"
            )
        bounds = tuple((float(lo), float(hi)) for lo, hi in bounds)

    return Task(
        name=str(cfg.get("name", root.name)),
        root=root,
        statement=statement,
        initial_code=initial,
        evaluator_path=evaluator,
        surface_areas=areas,
        limits=limits,
        preload=tuple(cfg.get("preload", ())),
        feature_names=names,
        feature_bounds=bounds,
        target=cfg.get("target"),
        noise=float(cfg.get("noise", 0.0)),
    )
