"""One evaluation on a node's sandbox actor, from the driver: a plain call, or, when a
``listener`` watches it, a Ray generator that streams the evaluation's reports back.

A listener is called on the driver with each report, as it is locally. Stopping early is
decided where the evaluation runs when the listener carries a picklable ``decide`` rule
(:class:`aster_nb.agents.noise.Watch` does): the node stops the evaluation at the very
report, as the local server would. A listener without one still stops it, by a call to the
node that takes effect at the evaluation's next report (a network round trip later).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from ..task import Limits
from .cache import Evaluation
from .connection import Listener

__all__ = ["on_node"]


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
