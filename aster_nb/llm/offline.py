"""The offline default model: an honest search operator that needs no key and no network.

It is not an LLM and not a script: it reads the prompt a worker sends (the parent program,
the areas its goal names, the inspirations, the agent's memory) and proposes real edits:

* numeric perturbations at several scales (multiplicative for floats, stepped for ints);
* swaps of operators and calls with a natural opposite (``min``/``max``, ``+``/``-``, ...);
* crossover: a block or a hunk of the focus area taken from an inspiration;
* continuation: a change that paid in the agent's memory, repeated in the same direction.

Memory steers it: edits identical to ones that failed are never proposed again, sites whose
edits kept failing are chosen less, and directions that paid are continued. It knows
nothing about any task. Its randomness is a pure function of ``(seed, prompt)``, so a run
with a fixed seed proposes the same edits. ``latency`` simulates a remote model's delay.

Each job has its module: the edits :mod:`~aster_nb.llm.proposals`, tool sessions
:mod:`~aster_nb.llm.toolturns`, handoffs :mod:`~aster_nb.llm.handoffs`, plans and merges
:mod:`~aster_nb.llm.synthesis`. This one is the model: the protocol, the latency, the
randomness and the token counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import numpy as np

from . import proposals
from .base import Request, Response, Usage
from .handoffs import write_handoff
from .proposals import OP_WEIGHTS
from .synthesis import write_merge, write_plan
from .toolturns import tool_turn


class OfflineModel:
    """Task-agnostic search operator behind the :class:`~aster_nb.llm.base.Model` protocol.

    Args:
        seed: base seed; each call's randomness is derived from it and the prompt.
        latency: seconds to wait per call, simulating a remote model (default 0).
        max_tries: candidate edits drawn per call before giving up on novelty.
    """

    def __init__(self, *, seed: int = 0, latency: float = 0.0, max_tries: int = 24) -> None:
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency}")
        self.name = "offline"
        self.seed = int(seed)
        self.latency = float(latency)
        self.max_tries = int(max_tries)
        self._turn: asyncio.Lock | None = None
        self._turn_loop: asyncio.AbstractEventLoop | None = None

    async def complete(self, request: Request) -> Response:
        t0 = time.perf_counter()
        if self.latency:
            await asyncio.sleep(self.latency)
        # A reply costs milliseconds of CPU on the event loop the notebook shares. Replies
        # whose latencies end together (agents that sampled together) would all run in one
        # loop iteration and hold up every other task, a cell's execution among them, for
        # the whole burst; taking turns, one reply per iteration, lets the loop serve the
        # rest in between. Replies depend only on the request, so the order changes nothing.
        async with self._turns():
            await asyncio.sleep(0)
            return self._reply(request, t0)

    def _turns(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._turn is None or self._turn_loop is not loop:  # a lock serves one loop
            self._turn, self._turn_loop = asyncio.Lock(), loop
        return self._turn

    def _reply(self, request: Request, t0: float) -> Response:
        rng = self._rng(request)
        if request.purpose == "handoff":
            text = write_handoff(request.prompt)
        elif request.purpose == "merge":
            text = write_merge(request.prompt, rng, request.seed or 0)
        elif request.purpose == "plan":
            text = write_plan(request.prompt)
        elif request.purpose == "tool" and request.tools:
            text, calls = tool_turn(request, rng, self.propose)
            usage = Usage(
                input_tokens=_tokens(request.system)
                + sum(_tokens(str(m)) for m in request.messages),
                output_tokens=_tokens(text) + 20 * len(calls),
            )
            return Response(
                text=text,
                tool_calls=calls,
                usage=usage,
                latency=time.perf_counter() - t0,
                model=self.name,
                stop_reason="tool_use" if calls else "end_turn",
            )
        else:
            text = self.propose(request.prompt, rng)
        usage = Usage(
            input_tokens=_tokens(request.system) + _tokens(request.prompt),
            output_tokens=_tokens(text),
        )
        return Response(text=text, usage=usage, latency=time.perf_counter() - t0, model=self.name)

    def _rng(self, request: Request) -> np.random.Generator:
        h = hashlib.sha256(request.prompt.encode()).digest()
        extra = request.seed if request.seed is not None else 0
        return np.random.default_rng([self.seed, extra, int.from_bytes(h[:8], "little")])

    def propose(self, prompt: str, rng: np.random.Generator) -> str:
        """An edit for a propose prompt (see :func:`aster_nb.llm.proposals.propose`)."""
        return proposals.propose(prompt, rng, self.max_tries)


def _tokens(text: str) -> int:
    # A rough token count (about 4 characters a token), so usage figures are plausible.
    return max(1, len(text) // 4)


__all__ = ["OP_WEIGHTS", "OfflineModel", "write_handoff"]
