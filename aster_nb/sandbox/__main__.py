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
from . import confine
from .forklimit import detect_fork_limit
from .server import SandboxServer

_FULL = confine.Confinement(pid_ns=True, mount_ns=True, user_ns=True, caps=True, seccomp=True)


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
            confinement=_FULL if args.confine == "auto" else confine.NONE,
            launcher=args.launcher,
            network=not args.no_network,
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
    parser.add_argument(
        "--confine",
        choices=["auto", "off"],
        default="auto",
        help="per-evaluation namespaces, no capabilities and seccomp, where they work",
    )
    parser.add_argument(
        "--launcher",
        choices=["bubblewrap", "unshare", "none"],
        default="none",
        help="what started this server (reported to the client)",
    )
    parser.add_argument(
        "--no-network", action="store_true", help="evaluations have no network (reported)"
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
