"""The environment a sandbox server starts with: an allowlist, never a credential.

The server gets ``PATH``, ``LANG``, ``LC_*``, ``TZ``, ``TMPDIR``, ``PYTHONHASHSEED``, the
OpenBLAS CPU hints and the names a task lists in ``env``, minus anything that looks like
a credential (:func:`aster_nb.errors.looks_like_credential`), with BLAS/OpenMP pinned to
one thread. It is built in the client's process, before bubblewrap starts (a variable in
bubblewrap's own environment would be readable from its ``/proc/1/environ``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import UserInputError, looks_like_credential

__all__ = ["PACKAGE_PARENT", "check_passthrough", "sandbox_env"]

#: the folder holding the ``aster_nb`` package (the server imports it from there)
PACKAGE_PARENT = Path(__file__).resolve().parent.parent.parent
_ENV_KEEP = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "PYTHONHASHSEED",
        "OPENBLAS_CORETYPE",
        "OPENBLAS_L2_SIZE",
    }
)
_THREADS_ONE = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}


def sandbox_env(
    base: Mapping[str, str] | None = None, passthrough: Sequence[str] = ()
) -> dict[str, str]:
    """The environment the sandbox server gets: an allowlist of ``base`` (default
    ``os.environ``) plus the ``passthrough`` names a task asked for (a relative path that
    exists from here made absolute), minus anything that looks like a credential, plus single-threaded BLAS and a ``PYTHONPATH`` that finds
    this package.

    Raises:
        UserInputError: a ``passthrough`` name looks like a credential.
    """
    base = os.environ if base is None else base
    check_passthrough(passthrough)
    wanted = _ENV_KEEP | set(passthrough)
    env = {
        k: v
        for k, v in base.items()
        if (k in wanted or k.startswith("LC_")) and not looks_like_credential(k)
    }
    for name in passthrough:
        # the server runs elsewhere (its own working directory, maybe another machine): a
        # relative path that names something from here, as `X=../data` in a shell does,
        # is passed as the absolute path it means
        value = env.get(name)
        if value and not os.path.isabs(value) and os.path.exists(value):
            env[name] = os.path.abspath(value)
    env.update(_THREADS_ONE)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    paths = [str(PACKAGE_PARENT), *filter(None, base.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def check_passthrough(names: Sequence[str]) -> None:
    """Check the names a task passes to the sandbox (``env``).

    Raises:
        UserInputError: not a list of variable names, or a name looks like a credential.
    """
    if isinstance(names, str):
        raise UserInputError(f"env must be a list of variable names, got the string {names!r}")
    for name in names:
        if not isinstance(name, str) or not name or "=" in name:
            raise UserInputError(f"env names variables to pass to the sandbox; got {name!r}")
        if looks_like_credential(name):
            raise UserInputError(
                f"env asks to pass {name!r} to the sandbox, but it looks like a credential "
                "(*KEY*, *TOKEN*, *SECRET*, ANTHROPIC_*, ...); credentials never reach "
                "model-written code"
            )
