"""Tasks: a folder with an initial program, an evaluator and its surface areas.

Layout of a task folder::

    my_task/
        task.toml            # settings, surface-area descriptions (below)
        initial_program.py   # the starting program, with EVOLVE-BLOCK markers
        evaluator.py         # def evaluate(program_path: str, *, seed=None, report=None) -> dict
        README.md            # the problem statement shown to the agents

``evaluate`` returns ``{"score": float}`` (higher is better) and optionally ``"metrics"``
(a dict of numbers), ``"features"`` (a list of numbers: the behaviour descriptor for the
archive), or ``"valid": False`` with ``"reason"`` when the program's output breaks the rules.
It runs inside the sandbox, never in the caller's process.

``task.toml``::

    name = "circle_packing"
    preload = ["numpy"]          # modules the warm sandbox server imports once
    target = 2.5                 # optional: score that counts as "reached" in benchmarks
    record = 2.635983            # optional: the best known score, in the same units
    record_source = "..."        # optional: who set it, shown with the record line
    score_description = "sum of the radii"  # optional: what the score is, for axis titles
    descriptor = "auto"          # optional: what the archive's cells separate (below)
    noise = 0.0                  # optional: std. dev. of the score between re-evaluations
    [limits]                     # optional; see Limits
    timeout = 30
    memory_mb = 2048
    [features]                   # optional: names and bounds of the evaluator's features
    names = ["a", "b"]
    bounds = [[0.0, 1.0], [0.0, 1.0]]
    descriptions = {a = "width (m)", b = "share of time idle"}  # axis titles, units
    [resources]                  # optional: what one evaluation needs of a Ray node
    cpus = 1                     # (the local executor ignores it); see Resources
    gpus = 0
    custom = {special = 1}
    [sandbox]                    # optional: what evaluations may reach
    network = false              # true lets evaluations use the network (default: none)
    env = ["DATA_DIR"]           # environment variables passed through to evaluations
    [evaluation]                 # optional: noisy, slow evaluations (aster_nb.evalplan)
    seeds = 1                    # seeds each ordinary evaluation runs (score = their mean)
    confirm_seeds = 3            # seeds a would-be best is evaluated on before it is best
    intermediate = "loss"        # the reported value the dashboard plots, early_stop reads
    early_stop = {after = 0.25, margin = 0.05, direction = "min"}
    [surface_areas]              # one line per EVOLVE-BLOCK name in initial_program.py
    layout = "Where the circles start."

A noisy task (``noise > 0``, or ``seeds`` or ``confirm_seeds`` above 1) has an evaluator
``evaluate(program_path, *, seed=None, report=None)``: the sandbox passes ``seed=`` (an int,
``0 .. confirm_seeds-1``) and ``report=`` only when its signature accepts them, so
``evaluate(program_path)`` keeps working. ``[evaluation]``'s keys:

* ``seeds`` (1 to 1000, default 1): seeds every evaluation runs; the score is their mean,
  stored with its spread (standard deviation) and count.
* ``confirm_seeds`` (``>= seeds``; default 3 for a noisy task, else ``seeds``): a program
  that would become a worker's or a planner's best is first evaluated on the seeds it has
  not run up to this many, concurrently, and judged on that mean.
* ``intermediate`` (default none): the name of a value the evaluator reports with
  ``report(step, {"loss": 0.4})`` while it runs; the dashboard plots it live, the store
  keeps every report (bounded per evaluation).
* ``early_stop`` (default none; needs ``intermediate``): ``after`` (share of the parent's
  recorded steps, 0 to 1, default 0.25), ``margin`` (how much worse than the parent's value
  at the same step, as a share of its magnitude, default 0.05) and ``direction`` (``min``
  or ``max``). The parent side kills such a run; its result is ``stopped``, with the last
  reported values as metrics: never cached, never ranked, remembered by the agent as
  stopped rather than as a crash.

Without ``[evaluation]`` a task with ``noise = 0`` runs exactly as before (one call, no seed,
results cached per code). A noisy task's results are cached per (code, seed), a run with
a given seed being one exact sample; a noisy task that passes no seed (``noise > 0`` with
``seeds = confirm_seeds = 1``) has nothing cached at all.

``descriptor`` is ``"features"`` (the evaluator's, named in ``[features]``), ``"metrics"``
(the evaluator's metrics), ``"embedding"`` (a code embedding fit on the run's history, which
sees every changed constant), ``"code"`` (code size and numeric share) or ``"auto"`` (the
default: ``features`` when ``[features]`` names them, else the embedding); see
:mod:`aster_nb.features`.

Reading and checking a folder is :mod:`aster_nb.taskfile`'s job (every key is checked when
the task loads; a mistake is a :class:`TaskError` naming the file and what was expected);
the checks before a run spends anything (:func:`check_start`) are
:mod:`aster_nb.taskstart`'s. Their public names are importable from here too.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from .evalplan import EvalPlan
from .resources import Resources
from .taskfile import Limits, SurfaceArea, TaskError, read_folder
from .taskstart import Sandbox, check_evaluator, check_start

BUILTIN_DIR = Path(__file__).parent / "tasks"


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
        resources: what one evaluation needs of a node, for the Ray executor
            (``[resources]``; default one CPU).
        preload: modules the warm sandbox server imports once, so each evaluation forks
            with them already loaded.
        feature_names: names of the evaluator's features, if it reports any.
        feature_bounds: ``(low, high)`` per feature, if known (used by grid archives).
        feature_descriptions: what each feature measures, with its unit, in the order of
            ``feature_names`` (``[features] descriptions``; empty if not given): the axis
            titles of archive maps.
        target: a score that counts as reaching the goal (benchmarks), if any.
        record: the best known score, in the score's units and sign (a minimised
            quantity ``M`` scored as ``-M`` has its record as ``-M*``), if given: the
            record line of score figures.
        record_source: who set the record, and where it is published.
        score_description: what the score is, with its unit (``"sum of the 26 radii"``);
            empty if not given.
        descriptor: what the archives' cells separate: ``auto``, ``features``,
            ``metrics``, ``embedding`` or ``code`` (see :mod:`aster_nb.features`).
        noise: standard deviation of the score between re-evaluations (0: deterministic).
        network: whether evaluations may use the network (``[sandbox] network``; default
            no network).
        env: names of environment variables passed through to evaluations (``[sandbox]
            env``); none looks like a credential.
        evaluation: seeds, confirmation, intermediate values and early stopping
            (``[evaluation]``; see above and :class:`~aster_nb.evalplan.EvalPlan`).
    """

    name: str
    root: Path
    statement: str
    initial_code: str
    evaluator_path: Path
    surface_areas: tuple[SurfaceArea, ...]
    limits: Limits = field(default_factory=Limits)
    resources: Resources = field(default_factory=Resources)
    preload: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()
    feature_bounds: tuple[tuple[float, float], ...] | None = None
    target: float | None = None
    descriptor: str = "auto"
    noise: float = 0.0
    network: bool = False
    env: tuple[str, ...] = ()
    feature_descriptions: tuple[str, ...] = ()
    record: float | None = None
    record_source: str = ""
    score_description: str = ""
    evaluation: EvalPlan = field(default_factory=EvalPlan)

    @classmethod
    def load(cls, name_or_path: str | Path) -> Task:
        """Load a built-in task by name, or a task folder by path.

        Raises:
            TaskError: no such task or folder, or the folder is malformed (see the module).
        """
        text = str(name_or_path)
        path = Path(name_or_path)
        if path.is_dir():
            return cls(**read_folder(path.resolve()))
        names = builtin_tasks()
        if text in names:
            return cls(**read_folder((BUILTIN_DIR / text).resolve()))
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


__all__ = [
    "BUILTIN_DIR",
    "Limits",
    "Resources",
    "Sandbox",
    "SurfaceArea",
    "Task",
    "TaskError",
    "builtin_tasks",
    "check_evaluator",
    "check_start",
]
