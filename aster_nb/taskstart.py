"""Whether a task can run: the sandbox imported its evaluator and the initial program evaluates.

Before a run spends anything, :func:`check_start` asks the started sandbox whether the
evaluator imported and defines ``evaluate``, and evaluates the initial program once. An
initial program that raises, times out or runs out of memory is an error: that is almost
always a broken setup (a missing import or data file), and the agents would spend the whole
budget on it. An initial program the evaluator calls *invalid* (``"valid": False``) is
allowed: the first agents repair it. So a stub for the agents to fill in should return
something the evaluator rejects (say ``None``) rather than raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .program import EvalResult, Status
from .taskfile import TaskError

if TYPE_CHECKING:
    from .task import Task


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
