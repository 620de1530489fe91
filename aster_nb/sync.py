"""A blocking layer over :class:`~aster_nb.run.Run` for plain scripts.

The async API never needs this. It is the one place that uses ``nest_asyncio2`` (the
maintained fork ipykernel moved to), and only when a blocking call is made while an event
loop is already running in this thread (a notebook cell); it is applied to that loop then,
never at import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from .records import RoundResult
from .run import Run

T = TypeVar("T")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class SyncRun:
    """Blocking twin of :class:`Run`: ``SyncRun.create("toy").step()``.

    Attribute reads (``status``, ``best``, ``history()``, ``steer()``, ``pause()`` ...) pass
    through to the wrapped run.
    """

    def __init__(self, run: Run, loop: asyncio.AbstractEventLoop) -> None:
        self.run = run
        self._loop = loop

    @classmethod
    def create(cls, task: Any, **kw: Any) -> SyncRun:
        return cls._make(lambda: Run.create(task, **kw))

    @classmethod
    def open(cls, path: str | Path, **kw: Any) -> SyncRun:
        return cls._make(lambda: Run.open(path, **kw))

    @classmethod
    def _make(cls, make: Callable[[], Coroutine[Any, Any, Run]]) -> SyncRun:
        running = _running_loop()
        loop = running or asyncio.new_event_loop()
        try:
            return cls(_call(loop, make()), loop)
        except BaseException:
            if running is None:
                loop.close()  # the failed run released everything it started on it
            raise

    def step(self) -> RoundResult:
        return _call(self._loop, self.run.step())

    def steps(self, rounds: int) -> list[RoundResult]:
        return [self.step() for _ in range(rounds)]

    def close(self) -> None:
        _call(self._loop, self.run.close())
        if _running_loop() is not self._loop and not self._loop.is_running():
            self._loop.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.run, name)

    def __enter__(self) -> SyncRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _call(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    running = _running_loop()
    if running is None:
        return loop.run_until_complete(coro)
    if running is not loop:
        coro.close()
        raise RuntimeError(
            "this SyncRun belongs to another event loop; use it from the thread that made it"
        )
    import nest_asyncio2  # only a blocking call inside a running loop needs re-entrancy

    nest_asyncio2.apply(running)
    return running.run_until_complete(coro)
