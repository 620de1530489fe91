"""One evaluation on a node's sandbox actor, from the driver: a plain call, or, when a
``listener`` watches it, a Ray generator that streams the evaluation's reports back.

A listener is called on the driver with each report, as it is locally. Stopping early is
decided where the evaluation runs when the listener carries a picklable ``decide`` rule
(:class:`aster_nb.agents.noise.Watch` does): the node stops the evaluation at the very
report, as the local server would. A listener without one still stops it, by a call to the
node that takes effect at the evaluation's next report (a network round trip later).

The other side, :func:`stream_reports`, is the body of such a generator: the node's
sandbox (:class:`~aster_nb.sandbox.raynode.NodeSandbox`) and the run's evaluation service
for workers in other processes (:class:`~aster_nb.actors.service.EvalService`) speak the
same three calls (``evaluate``, ``evaluate_watched``, ``stop``), so one client serves both.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from ..task import Limits
from .cache import Evaluation
from .connection import Listener

__all__ = ["on_node", "stream_reports"]

T = TypeVar("T")


async def on_node(
    handle: Any, ray: Any, code: str, limits: Limits, extra: dict[str, Any]
) -> tuple[Evaluation, dict[str, Any]]:
    """Evaluate ``code`` on the actor ``handle``: the evaluation and the node's counters.

    Raises:
        ray.exceptions.RayError: as awaiting the actor's call does (the actor or its node
            died, or the actor's code failed).
    """
    seed, listener = extra.get("seed"), extra.get("listener")
    if listener is None:
        ref = handle.evaluate.remote(code, limits, seed)
        try:
            return await ref
        except asyncio.CancelledError:
            ray.cancel(ref)  # the node kills the evaluation
            raise
    return await _watched(handle, ray, code, limits, seed, listener)


async def _watched(
    handle: Any, ray: Any, code: str, limits: Limits, seed: int | None, listener: Listener
) -> tuple[Evaluation, dict[str, Any]]:
    decide = getattr(listener, "decide", None)
    key = uuid.uuid4().hex
    stream = handle.evaluate_watched.remote(code, limits, seed, decide, key)
    asked = False
    try:
        async for ref in stream:
            item = await ref
            if item[0] == "done":
                return item[1], item[2]
            _, step, values = item
            try:
                stop = listener(step, values)
            except Exception:  # the listener's fault must not lose the evaluation
                stop = False
            if stop and decide is None and not asked:
                asked = True
                handle.stop.remote(key)  # answered by the node; nothing to wait for
    except asyncio.CancelledError:
        ray.cancel(stream)  # the node kills the evaluation
        raise
    raise ray.exceptions.RayError(f"the node's stream ended without a result (evaluation {key})")


async def stream_reports(
    start: Callable[[Listener], Awaitable[T]],
    decide: Callable[[int, dict[str, float]], bool] | None,
    stopped: Callable[[], bool],
) -> AsyncIterator[tuple[Any, ...]]:
    """The evaluation ``start(listener)`` runs, as a stream: ``("report", step, values)``
    as they come, then ``("done", result)``.

    ``decide(step, values)`` (a picklable rule sent by the caller) stops the evaluation at
    the report it says so, with no round trip; without one, ``stopped()`` turning true
    stops it at the next report. Closing the stream early cancels the evaluation.
    """
    reports: asyncio.Queue[tuple[int, dict[str, float]]] = asyncio.Queue()

    def listen(step: int, values: dict[str, float]) -> bool:
        reports.put_nowait((step, values))
        return decide(step, values) if decide is not None else stopped()

    run = asyncio.ensure_future(start(listen))
    waiting: asyncio.Future[tuple[int, dict[str, float]]] | None = None
    try:
        while not run.done():
            waiting = asyncio.ensure_future(reports.get())
            await asyncio.wait({run, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if waiting.done():
                yield ("report", *waiting.result())
        if waiting is not None and not waiting.done():
            waiting.cancel()  # before it can take a report the loop below must yield
        while not reports.empty():
            yield ("report", *reports.get_nowait())
        yield ("done", run.result())
    finally:
        for pending in (run, waiting):  # the caller cancelled: the evaluation is killed
            if pending is not None:
                pending.cancel()
