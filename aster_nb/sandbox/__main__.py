"""``python -m aster_nb.sandbox``: parse the arguments, move the response channel off fd 1,
detect the fork limit and serve until stdin closes."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import __doc__ as package_doc
from .forklimit import detect_fork_limit
from .server import SandboxServer


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m aster_nb.sandbox``."""
    args = _parse_args(argv)
    with _private_channel() as out_fd:
        fork_limit = detect_fork_limit(args.fork_limit)
        work_root = Path(tempfile.mkdtemp(prefix="aster_nb-sandbox-", dir=args.work_root))
        server = SandboxServer(
            evaluator=args.evaluator.resolve(),
            preload=[m for spec in args.preload for m in spec.split(",") if m],
            fork_limit=fork_limit,
            work_root=work_root,
            out_fd=out_fd,
        )
        try:
            server.load()
            server.serve()
        finally:
            server.cleanup()
    return 0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m aster_nb.sandbox", description=(package_doc or "").split("\n")[0]
    )
    parser.add_argument(
        "--evaluator", required=True, type=Path, help="path of the evaluator module"
    )
    parser.add_argument(
        "--preload", action="append", default=[], help="module to import once (repeatable)"
    )
    parser.add_argument(
        "--work-root",
        type=Path,
        default=None,
        help="where per-evaluation temp directories go (default: the temp dir)",
    )
    parser.add_argument(
        "--fork-limit",
        choices=["auto", "cgroup", "nproc", "none"],
        default="auto",
        help="process-count mechanism; auto picks the best available",
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def _private_channel() -> Iterator[int]:
    """Move the response channel off fd 1 so stray prints go to stderr instead."""
    sys.stdout.flush()
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield out_fd
    finally:
        os.close(out_fd)


if __name__ == "__main__":
    sys.exit(main())
