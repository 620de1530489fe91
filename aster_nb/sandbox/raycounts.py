"""What the Ray pool counts: its node sandboxes as the driver sees them, and the counters
over the cluster that :attr:`RayExecutor.stats
<aster_nb.sandbox.cluster.RayExecutor.stats>` shows.

A node's sandbox can die and be replaced while the run goes on; the counts are the run's,
so what a dead sandbox did is kept (:meth:`PoolCounts.retire`) and added to its node's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NodeActor", "PoolCounts"]

_STRENGTH = {"none": 0, "partial": 1, "full": 2}  # the weakest node is the run's isolation
_NODE_KEYS = ("server_deaths", "reruns", "lost", "restarts")  # what a sandbox counts


@dataclass(eq=False, slots=True)
class NodeActor:
    """One node's sandbox as the driver sees it.

    Attributes:
        handle: the Ray actor handle.
        node_id: the Ray node it is pinned to.
        slots: evaluations it runs at once.
        busy: evaluations sent to it and not yet answered.
        info: what it said when it started (host, pid, gpu_ids, server_info, stats).
        counters: its sandbox's server_deaths, reruns, lost and restarts so far.
        evaluations: evaluations it answered.
    """

    handle: Any
    node_id: str
    slots: int
    busy: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    evaluations: int = 0


@dataclass(slots=True)
class PoolCounts:
    """The pool's own counters, and what its dead sandboxes counted.

    Attributes:
        evaluations: evaluations answered by any sandbox.
        retries: evaluations sent again after a sandbox died under them.
        lost: evaluations given up after a second death.
        actor_deaths: sandboxes that died (or became unreachable) and were dropped.
        retired: the dead sandboxes' own counters, summed (:data:`_NODE_KEYS`).
        dead: per node id, the host and the evaluations of its sandboxes that died.
    """

    evaluations: int = 0
    retries: int = 0
    lost: int = 0
    actor_deaths: int = 0
    retired: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_NODE_KEYS, 0))
    dead: dict[str, tuple[Any, int]] = field(default_factory=dict)

    def answered(self, actor: NodeActor, counters: dict[str, int]) -> None:
        """``actor`` answered an evaluation; ``counters`` are its sandbox's now."""
        actor.evaluations += 1
        actor.counters = counters
        self.evaluations += 1

    def retire(self, actor: NodeActor) -> None:
        """``actor`` died: keep what it counted."""
        self.actor_deaths += 1
        for key in _NODE_KEYS:
            self.retired[key] += actor.counters.get(key, 0)
        before = self.dead.get(actor.node_id, (None, 0))[1]
        self.dead[actor.node_id] = (actor.info.get("host"), before + actor.evaluations)

    def stats(self, actors: Sequence[NodeActor], unplaced: Mapping[str, str]) -> dict[str, Any]:
        """The counters over the cluster, with ``actors`` the live sandboxes (see
        :attr:`RayExecutor.stats <aster_nb.sandbox.cluster.RayExecutor.stats>`)."""
        node = {k: self.retired[k] + sum(a.counters.get(k, 0) for a in actors) for k in _NODE_KEYS}
        infos = [a.info for a in actors if a.info]
        isolations = [i["stats"].get("isolation") for i in infos]
        first = infos[0]["stats"] if infos else {}
        return {
            "evaluations": self.evaluations,
            "in_flight": sum(a.busy for a in actors),
            "restarts": node["restarts"],
            "server_deaths": node["server_deaths"],
            "reruns": node["reruns"] + self.retries,
            "lost": node["lost"] + self.lost,
            "actor_deaths": self.actor_deaths,
            "fork_limit": first.get("fork_limit"),
            "isolation": min(isolations, key=lambda i: _STRENGTH.get(i, -1), default=None),
            "launcher": first.get("launcher"),
            "confinement": first.get("confinement"),
            "network": first.get("network"),
            "concurrency": sum(a.slots for a in actors),
            "unplaced": dict(unplaced),
            "nodes": self.nodes(actors),
        }

    def nodes(self, actors: Sequence[NodeActor]) -> dict[str, dict[str, Any]]:
        """Per node: its live sandbox's facts, and the evaluations of all its sandboxes; a
        node whose sandbox died and that has none now stays, with no slots, if it ran any."""
        nodes = {n: _facts({"host": h}, evaluations=k) for n, (h, k) in self.dead.items() if k}
        for a in actors:
            done = self.dead.get(a.node_id, (None, 0))[1]
            nodes[a.node_id] = _facts(
                a.info, slots=a.slots, busy=a.busy, evaluations=done + a.evaluations
            )
        return nodes


def _facts(
    info: Mapping[str, Any], *, evaluations: int, slots: int = 0, busy: int = 0
) -> dict[str, Any]:
    """One node's entry of ``stats["nodes"]``, from its sandbox's start ``info``."""
    return {
        "host": info.get("host"),
        "pid": info.get("pid"),
        "slots": slots,
        "busy": busy,
        "evaluations": evaluations,
        "gpu_ids": info.get("gpu_ids", []),
        "isolation": info.get("stats", {}).get("isolation"),
    }
