"""Connecting the driver to Ray for a run, and leaving it as it was found.

:func:`connect` joins the cluster at an address (``--ray-address``, else ``RAY_ADDRESS``),
or, with neither, starts a private single-node Ray for the run: bound to 127.0.0.1 where
Ray allows it (its node address and dashboard; Ray's own servers listen on every
interface whatever the node address, so the cluster gets a random token that the driver
and the processes it starts share, and nothing else has), its files in a temp dir of its
own, no usage statistics sent. :func:`disconnect` undoes exactly what :func:`connect` did:
it shuts down the Ray it started (or leaves the cluster it joined) and leaves a Ray the
caller had already started running.

Ray is imported here, lazily: ``import aster_nb`` and the local executor never load it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field

from ..errors import UserInputError

__all__ = ["RaySession", "connect", "disconnect"]

# one per process: Ray caches the token it first reads, so a second private Ray in the same
# process (a notebook's second run) must get the same one
_TOKEN = secrets.token_hex(32)


@dataclass(slots=True, kw_only=True)
class RaySession:
    """What :func:`connect` did, for :func:`disconnect` to undo.

    Attributes:
        address: the cluster's address, or ``"local"`` for a Ray started for the run, or
            None when a Ray the caller started was reused.
        owned: :func:`connect` called ``ray.init`` (so :func:`disconnect` shuts it down).
        temp_dir: the private Ray's files, removed after it stops.
        saved_env: variables set for the private Ray, with their values before.
    """

    address: str | None
    owned: bool
    temp_dir: str | None = None
    saved_env: dict[str, str | None] = field(default_factory=dict)


def connect(address: str | None) -> RaySession:
    """Connect to Ray: the cluster at ``address`` (default ``RAY_ADDRESS``), or a private
    local one when neither is given; a Ray already initialized in this process is reused.

    Blocks while Ray starts or connects (seconds): ``ray.init`` has no asynchronous form.

    Raises:
        UserInputError: Ray is not installed, or there is no cluster at ``address``.
    """
    try:
        import ray
    except ImportError as e:
        raise UserInputError(
            "the Ray executor needs Ray: pip install 'aster_nb[ray]' (ray 2.60); "
            "or run with the local executor"
        ) from e
    if ray.is_initialized():
        return RaySession(address=None, owned=False)
    address = address or os.environ.get("RAY_ADDRESS") or None
    # worker logs stay in the nodes' log files: the driver's stderr is the run's progress
    common = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is not None:
        try:
            ray.init(address=address, **common)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserInputError(
                f"cannot connect to a Ray cluster at {address!r} ({_first_line(e)}); "
                "expected the address `ray start --head` printed, e.g. 10.0.0.5:6379"
            ) from e
        return RaySession(address=address, owned=True)
    temp_dir = tempfile.mkdtemp(prefix="aster_nb-ray-")
    wanted = {"RAY_USAGE_STATS_ENABLED": "0"}
    if "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN" not in os.environ:
        # Ray would otherwise write a token to ~/.ray/auth_token
        wanted["RAY_AUTH_TOKEN"] = _TOKEN
    saved = {k: os.environ.get(k) for k in wanted}
    for key, value in wanted.items():
        os.environ.setdefault(key, value)  # a user's own choice stands
    session = RaySession(address="local", owned=True, temp_dir=temp_dir, saved_env=saved)
    try:
        ray.init(
            address="local",
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            _temp_dir=temp_dir,
            **common,
        )
    except BaseException:
        disconnect(session)
        raise
    return session


def disconnect(session: RaySession) -> None:
    """Undo :func:`connect`: shut down the Ray it started or leave the cluster it joined,
    remove the private Ray's files and restore the environment."""
    if session.owned:
        import ray

        with contextlib.suppress(Exception):  # shutting down must not hide the run's end
            ray.shutdown()
    if session.temp_dir is not None:
        shutil.rmtree(session.temp_dir, ignore_errors=True)
    for key, value in session.saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    session.owned, session.saved_env = False, {}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
