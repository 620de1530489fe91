"""The result cache: any evaluation backend behind one ``await submit(code)``, identical code
evaluated once.

:class:`Cached` wraps a backend the way :class:`~aster_nb.llm.spend.Metered` wraps a
model: same protocol outside, one concern inside. Identical submissions (same
:func:`~aster_nb.program.code_hash` and limits) get the cached result, and concurrent ones
share one evaluation, which is cancelled only when every submission waiting on it is. The
backend says per evaluation whether its result may be kept (:class:`Evaluation`): a
result that says nothing about the program (cancelled, the server died under it, ``lost``)
is never cached. ``timeout`` results are kept, though they can depend on machine load.

A noisy task's score is a sample, never cached as if exact: results are keyed by (code,
limits, seed), one seed's run being one exact sample, and with ``noisy`` set a submission
without a seed is never cached (nor shared). A submission with a ``listener`` (it watches
the run's reports, and may stop it) runs on its own, never joining another's evaluation;
a ``stopped`` result is never cached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from ..program import EvalResult, code_hash
from ..task import Limits

__all__ = ["Backend", "Cached", "Evaluation", "Listener"]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One evaluation as a backend reports it.

    Attributes:
        result: what the program scored, or why it failed.
        cacheable: whether ``result`` is about the program (and so may be reused for
            identical code), rather than about this attempt to run it.
    """

    result: EvalResult
    cacheable: bool


class Backend(Protocol):
    """What :class:`Cached` needs of the executor it wraps."""

    limits: Limits

    @property
    def stats(self) -> Mapping[str, Any]: ...

    async def evaluate(self, code: str, limits: Limits) -> Evaluation:
        """Also takes ``seed=`` and ``listener=`` keywords, which are passed only when
        given (a backend without them serves deterministic tasks)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


#: what a result is cached under: the code's hash, the limits and the seed
_Key = tuple[str, Limits, int | None]
#: called with each report of an evaluation, ``(step, values)``; True asks to stop it
Listener = Callable[[int, dict[str, float]], bool]


@dataclass(eq=False, slots=True)
class _Shared:
    """An evaluation in progress that several identical submissions wait on."""

    task: asyncio.Task[EvalResult] | None = None
    waiters: int = 0


class Cached:
    """``executor`` with identical code evaluated once.

    Use as ``async with Cached(executor) as ex: result = await ex.submit(code)``.

    Args:
        executor: the backend that evaluates (e.g. a
            :class:`~aster_nb.sandbox.client.SandboxClient`).
        size: results kept; the least recently used go first (each may hold two captured
            outputs).
        noisy: the task's score is a sample: a submission without a seed is not cached.
    """

    def __init__(self, executor: Backend, *, size: int = 4096, noisy: bool = False) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size must be an int >= 0, got {size!r}")
        self.executor = executor
        self.size = size
        self.noisy = bool(noisy)
        self._cache: dict[_Key, EvalResult] = {}
        self._shared: dict[_Key, _Shared] = {}
        self._hits = 0
        self._closed = False

    @property
    def limits(self) -> Limits:
        """The backend's default limits (the cache key's when :meth:`submit` gets none)."""
        return self.executor.limits

    async def start(self) -> None:
        """Start the backend now (otherwise the first :meth:`submit` does)."""
        await self.executor.start()

    async def close(self) -> None:
        """Close the backend; evaluations in flight end (as ``error``)."""
        self._closed = True
        await self.executor.close()
        shared = [s.task for s in self._shared.values() if s.task is not None]
        await asyncio.gather(*shared, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def submit(
        self,
        code: str,
        *,
        limits: Limits | None = None,
        seed: int | None = None,
        listener: Listener | None = None,
    ) -> EvalResult:
        """Evaluate ``code`` (or return the cached result of identical code and seed).

        Args:
            code: the program's full source; written to ``program.py`` in a temp dir and
                passed to ``evaluate``.
            limits: limits for this evaluation instead of the executor's.
            seed: passed as ``evaluate(..., seed=)`` when the evaluator takes it; part of
                the cache key.
            listener: gets each ``report(step, values)`` as it comes; returning True
                stops the evaluation (a ``stopped`` result).

        Returns:
            The result. Failures of the program are results (``error``, ``timeout``,
            ``memory``, ``invalid``), not exceptions.

        Raises:
            RuntimeError: the executor was closed.
        """
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, got {type(code).__name__}")
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(
                f"limits must be an aster_nb.task.Limits or None, got {type(limits).__name__}"
            )
        if self._closed:
            raise RuntimeError("this executor is closed; create a new one")
        key = (code_hash(code), limits or self.limits, seed)
        extra: dict[str, Any] = {}
        if seed is not None:
            extra["seed"] = seed
        if listener is not None:
            extra["listener"] = listener
        if self.noisy and seed is None:
            # a sample, not a fact about the code: run it, keep nothing
            return (await self.executor.evaluate(code, key[1], **extra)).result
        cached = self._cache.pop(key, None)
        if cached is not None:
            self._cache[key] = cached  # most recently used goes last
            self._hits += 1
            return cached
        shared = self._shared.get(key) if listener is None else None
        if shared is None:
            shared = _Shared()
            if listener is None:  # a watched run is its own: nobody joins it
                self._shared[key] = shared
            shared.task = asyncio.ensure_future(self._evaluate_shared(key, code, shared, extra))
        else:
            self._hits += 1
        assert shared.task is not None
        shared.waiters += 1
        try:
            return await asyncio.shield(shared.task)
        finally:
            shared.waiters -= 1
            if shared.waiters == 0 and not shared.task.done():
                # everyone who wanted this result is gone: kill the evaluation
                if self._shared.get(key) is shared:
                    del self._shared[key]
                shared.task.cancel()

    async def _evaluate_shared(
        self, key: _Key, code: str, shared: _Shared, extra: dict[str, Any]
    ) -> EvalResult:
        try:
            evaluation = await self.executor.evaluate(code, key[1], **extra)
            if evaluation.cacheable:
                self._cache[key] = evaluation.result
                while len(self._cache) > self.size:
                    del self._cache[next(iter(self._cache))]
            return evaluation.result
        finally:
            if self._shared.get(key) is shared:
                del self._shared[key]

    @property
    def stats(self) -> dict[str, Any]:
        """The backend's counters with the cache's: ``cache_hits`` (submissions answered
        from the cache or by joining an evaluation in flight), ``cached`` (results kept)
        and ``waiting`` (submissions not yet running on the backend)."""
        inner = dict(self.executor.stats)
        in_flight = inner.pop("in_flight", 0)
        return {
            "evaluations": inner.pop("evaluations", 0),
            "cache_hits": self._hits,
            "cached": len(self._cache),
            "in_flight": in_flight,
            "waiting": max(len(self._shared) - in_flight, 0),
            **inner,
        }
