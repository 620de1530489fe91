"""How an archive picks a parent among its elites (:data:`SELECTIONS`).

===============  ==========================================================================
``adaptive``     (the default) the best elite while the best score keeps improving; once it
                 stalls (:class:`Progress`), ``dns``
``tournament``   the best of ``tournament`` random elites (Goldberg & Deb 1991)
``uniform``      a uniformly random elite, the classic MAP-Elites and CVT-MAP-Elites rule
                 (Mouret & Clune 2015; Vassiliades et al. 2018)
``curiosity``    the tournament entrant whose cell's children most often became elites:
                 +1 per child that did, -0.5 per child that did not (Cully & Demiris 2018,
                 "Quality and Diversity Optimization: A Unifying Modular Framework")
``dns``          the tournament entrant with the highest dominated novelty: the mean
                 distance to its 3 nearest better elites, infinite for the best
                 (Bahlous-Boldi et al. 2025, "Dominated Novelty Search")
===============  ==========================================================================

Every rule but ``uniform`` and the exploiting phase of ``adaptive`` takes a uniformly
random elite with probability ``explore``.

Why ``adaptive`` (``benchmarks/archives.py``, offline model, 8 agents, 1,000 evaluations,
Cluster-Elites over the code embedding; mean best over 8 seeds): on circle packing from a
bare start, where steady local improvement pays, ``tournament`` scored 1.726 against
greedy's 1.885 -- 80% of its parents were not the best program -- while ``adaptive``
scored 1.872 (``dns`` alone 1.73, 3 seeds); on the deceptive task, where the best basin
lies past worse programs, greedy stops at the trap (3.0), ``tournament`` reached 3.25 and
``adaptive`` 4.73 (a constant across the valley in 7 of 8 seeds). Once stalled, ``dns``
is what crosses: the same switch to ``tournament`` stayed at 3.0, because the programs
on the way down from the trap rank low by score but are the elites farthest from
anything better. ``curiosity`` as published keeps a cumulative count, so the cell of the
best program, tried most, sinks lowest (bare circle packing 1.01, 3 seeds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

SELECTIONS: tuple[str, ...] = ("adaptive", "tournament", "uniform", "curiosity", "dns")

DNS_K = 3
"""Nearest better elites whose mean distance is an elite's dominated novelty (the paper's k)."""
STALL_TOL = 1e-3
"""An improvement of the best counts when it exceeds this share of the archive's score range
(best minus lowest): convergence onto a local peak (2.9999 -> 2.99999) is not progress."""
STALL_FACTOR = 2.0
"""Stalled once the adds since the last improvement exceed this many times the mean gap
between the recent ones (a gap twice the usual one is unusual for a search still climbing)."""
STALL_WINDOW = 8
"""Recent gaps averaged, and the fewest adds that can count as a stall."""


@dataclass(slots=True)
class Progress:
    """The best score's significant improvements, counted in adds; says when it stalls.

    Everything is derived from the order of adds, so a replay or a resumed run that adds
    the same programs in the same order stalls at the same moments.
    """

    since: int = 0  # adds since the last significant improvement
    gaps: list[int] = field(default_factory=list)  # adds between recent improvements

    def update(self, score: float, best_before: float | None, lowest: float) -> None:
        """Count one add of a program scoring ``score`` (``best_before``: the best until now)."""
        if best_before is None or score > best_before + STALL_TOL * (
            max(score, best_before) - lowest
        ):
            self.gaps.append(self.since + 1)
            del self.gaps[:-STALL_WINDOW]
            self.since = 0
        else:
            self.since += 1

    def stalled(self) -> bool:
        """Whether the best has not improved for unusually long (see :data:`STALL_FACTOR`)."""
        usual = sum(self.gaps) / len(self.gaps) if self.gaps else 0.0
        return self.since >= max(STALL_FACTOR * usual, STALL_WINDOW)


def dominated_novelty(x: np.ndarray, scores: np.ndarray, *, scaled: bool) -> np.ndarray:
    """Each elite's dominated novelty: the mean distance to its ``DNS_K`` nearest elites
    that score higher; ``inf`` for one that none beats.

    Args:
        x: descriptors of the elites, ``(n, dims)``.
        scores: their scores, ``(n,)``.
        scaled: the dimensions share one unit (an embedding); else each is divided by its
            standard deviation over the elites first, so no unit dominates.
    """
    if not scaled:
        std = x.std(axis=0)
        x = x / np.where(std > 0, std, 1.0)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    d = np.where(scores[None, :] > scores[:, None], d, np.inf)  # only better elites count
    nearest = np.sort(d, axis=1)[:, :DNS_K]
    finite = np.isfinite(nearest)
    counts = finite.sum(axis=1)
    sums = np.where(finite, nearest, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)


def choose_parent(
    selection: str,
    rng: np.random.Generator,
    *,
    n: int,
    tournament: int,
    explore: float,
    stalled: bool,
    merit: Callable[[str], np.ndarray],
) -> int:
    """Position of the parent among ``n`` elites ranked best first.

    Args:
        selection: one of :data:`SELECTIONS`.
        rng: the source of every random pick.
        n: number of elites, ``>= 1``.
        tournament: entrants per tournament.
        explore: probability of a uniformly random elite (see the module docs).
        stalled: whether the archive's best has stalled (``adaptive``).
        merit: ``merit(kind)`` gives each ranked elite's ``"curiosity"`` or ``"dns"``
            (higher wins); called only when needed.
    """
    if selection == "adaptive":
        if not stalled:
            return 0
        selection = "dns"
    if selection == "uniform" or rng.random() < explore:
        return int(rng.integers(n))
    entrants = rng.choice(n, size=min(tournament, n), replace=False)
    if selection == "tournament":
        return int(entrants.min())  # ranked best first: the lowest position wins
    m = merit(selection)
    # the highest merit wins; on a tie, the better elite (the lower position)
    return int(entrants[np.lexsort((entrants, -m[entrants]))[0]])
