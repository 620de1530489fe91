"""One running sandbox server, seen from the client: its process, pipes and waiting requests.

A :class:`Connection` launches ``python -m aster_nb.sandbox`` (under the launcher's
prefix), reads its responses and its stderr in two tasks, matches each ``result`` to the
request waiting on it, and notices when the server dies: every waiting request then fails
with :class:`ServerDied`, which the client answers by starting a fresh server. Messages
are built and read with :mod:`~aster_nb.sandbox.protocol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..task import Limits
from .env import sandbox_env
from .forklimit import release_cgroup_root
from .isolation import Launcher
from .protocol import Kind, cancel_request, decode, encode, eval_request, stop_request

__all__ = ["Connection", "Listener", "ServerDied"]

#: called with each report of an evaluation, ``(step, values)``; True asks to stop it
Listener = Callable[[int, dict[str, float]], bool]

_STREAM_LIMIT = 256 * 1024 * 1024  # one response line may carry two capped outputs, escaped
_STDERR_TAIL = 16 * 1024


class ServerDied(Exception):
    """The server exited (or its channel broke) while a request waited on it."""


class Connection:
    """A sandbox server process and the requests waiting on it.

    Made by :meth:`launch`; ready for requests once :meth:`handshake` has returned.

    Attributes:
        launcher: what started the server.
        info: the server's hello (empty until the handshake).
        host_pid: the server's own pid as this process sees it (not the wrapper's).
        dead: why the server is gone, or None while it runs.
        closing: :meth:`stop` was called.
    """

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        *,
        launcher: Launcher,
        on_death: Callable[[], None],
    ) -> None:
        self.proc = proc
        self.launcher = launcher
        self.info: dict[str, Any] = {}
        self.host_pid: int | None = None
        self.dead: str | None = None
        self.closing = False
        self._on_death = on_death
        self._hello: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: dict[int, Listener] = {}
        self._stderr_tail = bytearray()
        self._tasks = [
            asyncio.ensure_future(self._read_responses()),
            asyncio.ensure_future(self._read_stderr()),
        ]

    @classmethod
    async def launch(
        cls,
        command: Sequence[str],
        *,
        launcher: Launcher,
        passthrough: Sequence[str],
        on_death: Callable[[], None],
    ) -> Connection:
        """Start ``command`` (the launcher's prefix and the server's arguments).

        Args:
            command: the whole command line.
            launcher: what ``command`` starts the server under.
            passthrough: environment names the task passes to evaluations.
            on_death: called when the server dies without being stopped.

        Raises:
            RuntimeError: the process did not start.
        """
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=sandbox_env(passthrough=passthrough),
                cwd=tempfile.gettempdir(),
                start_new_session=True,  # a Ctrl-C in the terminal is not meant for the server
                limit=_STREAM_LIMIT,
            )
        except OSError as e:
            raise RuntimeError(f"sandbox server did not start: {e}") from e
        return cls(proc, launcher=launcher, on_death=on_death)

    async def handshake(self, timeout: float, *, close_timeout: float) -> None:
        """Wait for the server's hello.

        Raises:
            RuntimeError: no hello within ``timeout`` or the server died first (it is
                stopped; the message has its stderr tail).
        """
        try:
            self.info = await asyncio.wait_for(asyncio.shield(self._hello), timeout)
            self.host_pid = (
                _server_host_pid(self.proc.pid) if self.launcher.prefix else self.proc.pid
            )
        except (TimeoutError, ServerDied) as e:
            await self.stop(close_timeout)
            raise RuntimeError(
                f"sandbox server did not start: {e or 'no hello within the timeout'}; "
                f"stderr: {self._tail_text()}"
            ) from None

    async def request(
        self,
        rid: int,
        code: str,
        limits: Limits,
        env: Mapping[str, str] | None = None,
        *,
        seed: int | None = None,
        listener: Listener | None = None,
    ) -> dict[str, Any]:
        """Evaluate ``code`` (with the device variables ``env``, ``seed`` for the
        evaluator); the server's ``result`` (or ``error``) response. ``listener`` gets each
        report as it comes; when it returns True the server stops the evaluation (its
        result is then ``stopped``).

        A cancelled request asks the server to kill its evaluation.

        Raises:
            ServerDied: the server died before answering.
        """
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        if listener is not None:
            self._listeners[rid] = listener
        message = eval_request(rid, code, limits, env, seed=seed, progress=listener is not None)
        try:
            if self.dead is not None:
                raise ServerDied(self.dead)
            assert self.proc.stdin is not None
            self.proc.stdin.write(encode(message))
            with contextlib.suppress(ConnectionError):
                # if the pipe broke, the reader notices the death and fails `future`
                await self.proc.stdin.drain()
            return await future
        except asyncio.CancelledError:
            self._pending.pop(rid, None)
            self._send_quietly(cancel_request(rid))
            raise
        finally:
            self._listeners.pop(rid, None)

    async def stop(self, timeout: float) -> None:
        """End the server's input (it kills its evaluations and exits); kill it after
        ``timeout`` seconds."""
        self.closing = True
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # end of input: the server kills its children and exits
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _send_quietly(self, message: Mapping[str, Any]) -> None:
        if self.dead is None and self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.write(encode(message))

    # -- reading -----------------------------------------------------------------------

    async def _read_responses(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                self._dispatch(line)
        except (ValueError, asyncio.LimitOverrunError) as e:
            # the channel is out of sync; a fresh server is the only way back
            self.dead = f"protocol error: {e}"
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        finally:
            await self._gone()

    def _dispatch(self, line: bytes) -> None:
        try:
            message = decode(line)
        except ValueError:
            return
        kind = message.get("type")
        if kind == Kind.HELLO and not self._hello.done():
            self._hello.set_result(message)
        elif kind == Kind.PROGRESS:
            self._progress(message)
        elif kind in (Kind.RESULT, Kind.ERROR):
            future = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(message)

    def _progress(self, message: dict[str, Any]) -> None:
        rid = message.get("id")
        listener = self._listeners.get(rid)  # type: ignore[arg-type]
        if listener is None:
            return
        try:
            stop = listener(message["step"], message["values"])
        except Exception:  # the listener's fault must not break the channel
            stop = False
        if stop:
            self._listeners.pop(rid, None)  # type: ignore[arg-type]
            self._send_quietly(stop_request(rid))  # type: ignore[arg-type]

    async def _read_stderr(self) -> None:
        # drained so the server never blocks on a full pipe; the tail explains a crash
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self._stderr_tail += chunk
            del self._stderr_tail[:-_STDERR_TAIL]

    async def _gone(self) -> None:
        returncode = await self.proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._tasks[1]), 1.0)
        if self.closing:
            reason = "executor closed"
        else:
            self._on_death()
            how = (
                f"killed by {signal.Signals(-returncode).name}"
                if returncode < 0 and -returncode in signal.valid_signals()
                else f"exit code {returncode}"
            )
            reason = f"sandbox server died: {self.dead or how}; stderr: {self._tail_text()}"
        self.dead = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ServerDied(reason))
        self._pending.clear()
        if not self._hello.done():
            self._hello.set_exception(ServerDied(reason))
        _cleanup_after(self.info)

    def _tail_text(self, lines: int = 15) -> str:
        text = self._stderr_tail.decode("utf-8", "replace").strip()
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def _server_host_pid(wrapper: int) -> int | None:
    # `unshare --fork` has exactly one child: the server
    try:
        children = Path(f"/proc/{wrapper}/task/{wrapper}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _cleanup_after(info: Mapping[str, Any]) -> None:
    """Kill what a dead server's evaluations left and remove its directories (a server
    that exits normally has done this itself, so this is then a no-op)."""
    if info.get("cgroup_root"):
        release_cgroup_root(Path(info["cgroup_root"]), wait=0.5)
    if info.get("work_root"):
        shutil.rmtree(info["work_root"], ignore_errors=True)
