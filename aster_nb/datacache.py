"""Caches a task prepares from its data once per machine, for evaluators and the kernel.

A task's data module (``text_data``, ``protein_data``) turns the user's files into arrays
an evaluator loads fast. It is built where it can be written: the user's
``~/.cache/aster_nb/<name>`` (or the task's variable), found from the password database
because the sandbox resets ``HOME``; inside the sandbox that folder is read-only, and a
cache nobody prepared is built in a temporary folder of the server's instead, once per
sandbox server. An evaluator therefore reads what it needs at import, before evaluations
are forked with their own fresh ``/tmp`` (keep a file descriptor, not a path).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["ensure_built", "user_cache"]


def user_cache(name: str, variable: str) -> Path:
    """``$variable``, else ``~/.cache/aster_nb/<name>`` of the user this process runs as."""
    if env := os.environ.get(variable):
        return Path(env)
    try:
        home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        home = Path.home()
    return home / ".cache" / "aster_nb" / name


def ensure_built(
    final: Path,
    *,
    marker: str,
    data: Path,
    build: Callable[[Path, Path], None],
    script: str | None = None,
    what: str = "the cache",
    timeout: float = 600.0,
) -> Path:
    """The folder ``final`` (complete once it holds ``marker``), made from ``data`` if
    missing; the folder to read.

    ``build(data, folder)`` makes it; with ``script``, ``python script build <data>
    <folder>`` does, in a child process, so the threads a build starts (``datasets`` does)
    never exist in a process that forks evaluations afterwards. It is built beside
    ``final`` and renamed into place, so a reader never sees half a cache and two builders
    do not clash; in a temporary folder when ``final``'s parent is not writable.

    Raises:
        RuntimeError: the script failed (the end of its stderr, naming ``what``).
    """
    if (final / marker).is_file():
        return final
    if not _writable(final.parent):
        final = Path(tempfile.mkdtemp(prefix=f"aster-{final.parent.name}-")).resolve() / final.name
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    if script is None:
        build(data, tmp)
    else:
        cmd = [sys.executable, script, "build", str(data), str(tmp)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"building {what} failed:\n{done.stderr[-4000:]}")
    try:
        tmp.rename(final)
    except OSError:  # another process built it first
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _writable(root: Path) -> bool:
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            return True
    except OSError:
        return False
