"""What fits where: a task's ``[resources]`` against a Ray node's, and the task folder that
every node gets a copy of.

The Ray executor (:mod:`aster_nb.sandbox.raypool`) places one sandbox actor per node and
sizes it in evaluation *slots*: :func:`slots_on` says how many evaluations of a task fit
on a node, :func:`actor_options` what Ray must reserve for that many. No Ray import here.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ..resources import Resources

__all__ = [
    "MAX_TASK_BYTES",
    "actor_options",
    "needs_text",
    "slots_on",
    "task_files",
    "unpack_task",
]

# a task folder's copy in an actor: aster_nb-task-<pid of the actor>-<random>
_PREFIX = "aster_nb-task-"

#: the most a task folder may hold to be shipped to every node
MAX_TASK_BYTES = 64 * 1024 * 1024


def task_files(root: Path, *, limit: int = MAX_TASK_BYTES) -> dict[str, bytes]:
    """The task folder's files (no hidden ones, no ``__pycache__``), to ship to the nodes.

    Raises:
        UserInputError: the folder holds more than ``limit`` bytes.
    """
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(p.startswith(".") or p == "__pycache__" for p in rel.parts) or not path.is_file():
            continue
        total += path.stat().st_size
        if total > limit:
            raise UserInputError(
                f"task folder {root} holds more than {limit // 2**20} MiB; the Ray executor "
                "copies it to every node: keep data elsewhere (a path every node sees) and "
                "pass its location through [sandbox] env"
            )
        files[rel.as_posix()] = path.read_bytes()
    return files


def slots_on(node: Mapping[str, float], resources: Resources) -> int:
    """How many evaluations fit on a node with ``node``'s total resources."""
    fits = []
    for name, amount in resources.needs.items():
        have = float(node.get(name, 0.0))
        if name == "GPU" and amount < 1:
            # a GPU is shared by whole numbers of evaluations, never split across two
            fits.append(math.floor(have + 1e-9) * math.floor(1 / amount + 1e-9))
        else:
            fits.append(math.floor(have / amount + 1e-9))
    return max(min(fits), 0)


def actor_options(resources: Resources, slots: int) -> dict[str, Any]:
    """Ray's options for an actor holding ``slots`` evaluations' resources."""
    gpus = resources.gpus * slots
    if 0 < resources.gpus < 1 and gpus > 1:
        # Ray reserves more than one GPU only whole: the GPUs the shares fill
        gpus = math.ceil(slots / math.floor(1 / resources.gpus + 1e-9))
    options: dict[str, Any] = {"num_cpus": resources.cpus * slots, "num_gpus": gpus}
    if resources.memory_mb is not None:
        options["memory"] = resources.memory_mb * 2**20 * slots
    if resources.custom:
        options["resources"] = {name: amount * slots for name, amount in resources.custom}
    return options


def needs_text(resources: Resources) -> str:
    """What one evaluation needs, in Ray's names, for messages."""
    return ", ".join(f"{k}={v:g}" for k, v in resources.needs.items())


def unpack_task(files: Mapping[str, bytes]) -> Path:
    """Write a shipped task folder (:func:`task_files`) into a new private directory of
    this process; the caller removes it when done. Copies left by processes that are gone
    (an actor killed with its node never cleans up) are removed first."""
    _sweep()
    root = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _sweep() -> None:
    """Remove the task copies of actors that are gone."""
    for path in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*-*"):
        pid = path.name[len(_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and not ours to clean
        return True
    return True
