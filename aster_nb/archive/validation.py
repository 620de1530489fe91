"""Argument checks the archives share, with messages that name the expected shape.

Every archive validates alike through these: its constructor's common arguments, an ``ok``
program's ``descriptor`` against the archive's ``dims``, what a computed descriptor gave, and
the arguments of :meth:`~aster_nb.archive.base.ArchiveBase.sample`. A new archive calls
them rather than writing its own messages.
"""

from __future__ import annotations

import numpy as np

from ..features import Descriptor
from ..program import Program
from .selection import SELECTIONS

__all__ = [
    "check_archive_args",
    "check_descriptor",
    "check_nonempty",
    "check_program_descriptor",
    "check_sample_args",
]


def check_archive_args(
    *, dims: int | None, tournament: int, selection: str, descriptor: Descriptor | None
) -> None:
    """Check the arguments every archive's constructor takes (see
    :class:`~aster_nb.archive.base.ArchiveBase`).

    Raises:
        ValueError: ``dims`` not a positive int or ``None``, ``tournament < 1``, or an
            unknown ``selection`` (the message lists the valid ones).
        TypeError: ``descriptor`` is not callable.
    """
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise ValueError(f"dims must be a positive int (descriptor length), got {dims!r}")
    if not isinstance(tournament, int) or tournament < 1:
        raise ValueError(f"tournament must be an int >= 1, got {tournament!r}")
    if descriptor is not None and not callable(descriptor):
        raise TypeError(
            "descriptor must be an aster_nb.features.Descriptor (e.g. "
            f"make_descriptor('embedding')), got {type(descriptor).__name__}"
        )
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}; got {selection!r}")


def check_program_descriptor(program: Program, *, dims: int, archive: str) -> np.ndarray:
    """``program.descriptor`` as an array of ``dims`` finite floats.

    Args:
        program: an ``ok`` program offered to an archive.
        dims: the archive's descriptor length.
        archive: the archive's name, for the messages.

    Raises:
        ValueError: the descriptor is missing, not numbers, of another length or not finite.
    """
    if program.descriptor is None:
        raise ValueError(
            f"{archive} archive requires program.descriptor: a tuple of {dims} "
            f"floats (where the archive places it), program {program.id} has None; "
            "give it one with program.evaluated(result, descriptor)"
        )
    try:
        desc = np.asarray(program.descriptor, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"program.descriptor must be {dims} numbers, got {program.descriptor!r}"
        ) from e
    if desc.shape != (dims,):
        raise ValueError(
            f"{archive} archive expects a descriptor of length {dims} (dims={dims}), "
            f"got shape {desc.shape} for program {program.id}: {program.descriptor!r}"
        )
    if not np.all(np.isfinite(desc)):
        raise ValueError(
            f"program.descriptor must be finite, got {program.descriptor!r} for {program.id}"
        )
    return desc


def check_nonempty(desc: np.ndarray, *, descriptor: Descriptor, program_id: str) -> None:
    """Check that what ``descriptor`` gave a program, the first one, which sets the
    archive's ``dims``, has at least one dimension.

    Raises:
        ValueError: ``desc`` is empty.
    """
    if len(desc) == 0:
        raise ValueError(
            f"the {descriptor.kind} descriptor gave program {program_id} an "
            "empty descriptor; an archive needs at least one dimension"
        )


def check_descriptor(
    desc: np.ndarray, *, dims: int, descriptor: Descriptor, program_id: str
) -> None:
    """Check what ``descriptor`` gave a program: ``dims`` finite numbers.

    Raises:
        ValueError: another shape, or a value that is not finite.
    """
    if desc.shape != (dims,) or not np.all(np.isfinite(desc)):
        raise ValueError(
            f"the {descriptor.kind} descriptor must give {dims} finite numbers "
            f"per program, got {desc.tolist()} for program {program_id}"
        )


def check_sample_args(n_inspirations: int, explore: float) -> None:
    """Check the arguments of an archive's ``sample``.

    Raises:
        ValueError: ``explore`` outside ``[0, 1]`` or ``n_inspirations < 0``.
    """
    if not 0.0 <= explore <= 1.0:
        raise ValueError(f"explore must be a probability in [0, 1], got {explore!r}")
    if n_inspirations < 0:
        raise ValueError(f"n_inspirations must be >= 0, got {n_inspirations!r}")
