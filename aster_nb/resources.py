"""What one evaluation needs of a node: ``task.toml``'s ``[resources]``.

Why apart from :mod:`aster_nb.taskfile`: the Ray executor places each evaluation by these
numbers (:mod:`aster_nb.sandbox.cluster`), in Ray's names; the local executor ignores them
(it runs ``concurrency`` evaluations on this machine). Checked when built: a
:class:`ValueError` names the field and what was expected (the task loader turns it into a
:class:`~aster_nb.taskfile.TaskError` naming the file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Resources"]

#: names Ray keeps for itself; a custom resource must not shadow them
_RAY_OWN = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """What one evaluation needs of a node, for a scheduler that places evaluations (Ray;
    the local executor runs ``concurrency`` of them on this machine and ignores this).

    Attributes:
        cpus: CPUs one evaluation occupies (fractions allowed, e.g. 0.5).
        gpus: GPUs one evaluation gets: 0, a fraction up to 1 (evaluations share a GPU),
            or a whole number. The evaluation sees the ones it got in
            ``CUDA_VISIBLE_DEVICES``.
        memory_mb: memory the scheduler reserves per evaluation (MiB), if any. Not a cap:
            ``[limits] memory_mb`` is what stops a process that maps more.
        custom: the node's custom resources one evaluation needs, e.g. ``(("special",
            1.0),)`` for a node started with ``--resources='{"special": 1}'``.
    """

    cpus: float = 1.0
    gpus: float = 0.0
    memory_mb: int | None = None
    custom: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        def number(name: str, value: object, *, zero: bool) -> None:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
                or (value == 0 and not zero)
            ):
                rule = ">= 0" if zero else "> 0"
                raise ValueError(f"{name} must be a finite number {rule}, got {value!r}")

        number("cpus", self.cpus, zero=False)
        number("gpus", self.gpus, zero=True)
        if self.gpus > 1 and self.gpus != int(self.gpus):
            # Ray's rule: a fraction of one GPU is shared, more than one is whole GPUs
            raise ValueError(f"gpus must be a fraction up to 1 or a whole number, got {self.gpus}")
        if self.memory_mb is not None:
            if isinstance(self.memory_mb, bool) or not isinstance(self.memory_mb, int):
                raise ValueError(f"memory_mb must be a whole number of MiB, got {self.memory_mb!r}")
            number("memory_mb", self.memory_mb, zero=False)
        for pair in self.custom:
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
                raise ValueError(f"custom must be (name, amount) pairs, got {pair!r}")
            name, amount = pair
            if not name or name in _RAY_OWN or name.startswith("node:"):
                raise ValueError(
                    f"custom names a node's own resource {name!r}; expected a "
                    f"name other than {', '.join(sorted(_RAY_OWN))} and node:*"
                )
            number(f"custom[{name!r}]", amount, zero=False)

    @property
    def needs(self) -> dict[str, float]:
        """Every resource one evaluation needs, by Ray's names (``memory`` in bytes)."""
        out = {"CPU": float(self.cpus)}
        if self.gpus:
            out["GPU"] = float(self.gpus)
        if self.memory_mb is not None:
            out["memory"] = float(self.memory_mb) * 1024 * 1024
        out.update((name, float(amount)) for name, amount in self.custom)
        return out
