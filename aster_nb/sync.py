"""A blocking layer over :class:`~aster_nb.run.Run` for plain scripts.

The async API never needs this. It is the one place that uses ``nest_asyncio2`` (the
maintained fork ipykernel moved to), and only when a blocking call is made while an event
loop is already running in this thread (a notebook cell); it is applied to that loop then,
never at import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from .agents.planner import RoundResult
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
        loop = _running_loop() or asyncio.new_event_loop()
        return cls(_call(loop, Run.create(task, **kw)), loop)

    @classmethod
    def open(cls, path: str | Path, **kw: Any) -> SyncRun:
        loop = _running_loop() or asyncio.new_event_loop()
        return cls(_call(loop, Run.open(path, **kw)), loop)

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
