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
random elite with probability ``explore``. While ``adaptive`` exploits, it is greedy
exactly: the best program as parent, the next best programs as inspirations.

Why ``adaptive`` (``benchmarks/archives.py``, offline model, 8 agents, 1,000 evaluations,
Cluster-Elites; mean best over seeds; the code embedding on the two featureless tasks):

=====================  ========  ============  ==========  ==========================
task (seeds)           greedy    tournament    adaptive    others
=====================  ========  ============  ==========  ==========================
circle_packing_bare    1.926     1.726 (8)     1.926       stalls on a tied start 1.912,
(30)                                                       recent-gap stall only 1.852,
                                                           dns 1.73, curiosity 1.01 (3)
deceptive_trap (30)    3.20 (10) 3.25 (8)      4.56        recent-gap stall only 4.77,
                                                           dns 4.20, uniform 2.83 (10)
circle_packing (5-6)   2.083     2.150         2.050       recent-gap stall only 2.071
erdos_min_overlap (6)  -0.3912   -0.3897       -0.3922
=====================  ========  ============  ==========  ==========================

Where steady local improvement pays (circle packing from a bare start), ``tournament``
spends 80% of its parents on other elites than the best and fell 0.21 behind greedy.
``adaptive``'s exploiting phase reproduces greedy's runs exactly, seed for seed, so what it
loses there is what its stalled phase spends. With a stall read against the recent gaps
only (3 times their mean), it was 0.074 behind greedy over 30 seeds (95% bootstrap
interval 0.021-0.127): replayed on greedy's own runs that rule fires on 45-240 of 1,000
evaluations, and greedy climbs again after them, because the waits between improvements
grow as a climb goes on. A stall is therefore also read against the run so far
(:data:`STALL_SHARE`): no significant improvement during the last third of the adds, as
CMA-ES restarts judge stagnation and the handoff reports flag a stalled worker. Replayed on
the same 30 greedy runs, it fires in 2 of them once past the start's flat stretch; run, the
bare task's gap to greedy fell to 0.013 (paired by seed, 95% interval -0.048-0.023: not
distinguishable), 0.060 above the recent-gap rule alone, and the deceptive task, where
the later stall leaves fewer evaluations to cross, gave 4.56 against 4.77 (20 and 22 of 30
seeds crossed; difference -0.22, interval -0.98-0.50), both far above greedy's 3.20 (the
earlier 5.28 of that row was 10 lucky seeds). The rest of the bare task's gap was the
start, where every program scores 0 and the 30-add stall sent 22 of the 30 runs off
greedy's path by add 143 (see :class:`Progress`); a start where every score ties is no
longer a stall, and the bare task now gives 1.926, greedy's own runs in 28 of 30 seeds
(the other two: +0.018 and -0.003), while the deceptive task's 30 runs are unchanged. On
this task and budget the exploiting phase is all there is to win: greedy's best last rose
at evaluation 715-999 (median 960) in each of its 30 runs, so a 1,000-evaluation run
never stalls long enough for exploring to pay back. At 3,000 evaluations (10 seeds) greedy
does stall -- its best last rose before evaluation 1,800 in 6 of 10 runs -- yet exploring
still did not pay there: cluster 1.980 against greedy's 1.996 (paired -0.016, interval
-0.039-0.000; above greedy in 1 run, below in 7): one-off picks among the elites never
raised the best after greedy's had stopped. Climbing from one novel elite instead (return
to it and breed from its line until 30 of its children fail to improve it, as Go-Explore
returns to a cell before exploring, Ecoffet et al. 2021) did, in 4 of those 10 runs, and
gave 1.995, greedy's mean (above it in 3 runs by up to 0.139, below in 5 by up to 0.121,
where greedy would have climbed again); on the deceptive task it fell to 4.0 (5 of 10
seeds crossed): a line climbed from the way down the trap climbs back up it. While
exploiting, drawing the inspirations from other cells' elites instead of the next best
programs gave 1.930 against greedy's 1.935 (10 seeds), one random other cell's elite among
the two 1.835: the next best programs stay. Variants of the stalled phase tried on the
bare task before (10 seeds each, none better): exploiting half the time while stalled
(1.886; deceptive 3.9), breeding from the best with the chance a still-improving best
would have had (1.797; deceptive 4.62), inspirations outside the parent's ancestry (1.78),
exploration in bursts that double after each failed return (1.869); stall factors 2, 3
and 4 in a prototype gave 1.88, 1.83 and 1.92 there (4.40, 5.32 and 4.00 on the deceptive
task), within the seeds' spread, so 3 is kept for the reading at :data:`STALL_FACTOR`, not
tuned. What crosses the
deceptive task is the stalled phase's rule: switching to ``tournament`` there stayed at
3.0 (4 seeds), because the programs on the way down from the trap rank low by score but
are the elites farthest from anything better. With the evaluators' features the rules are
within about one standard deviation of each other (0.12-0.19 on circle packing,
0.002-0.003 on Erdős). ``curiosity`` as published keeps a cumulative count, so the cell of
the best program, tried most, sinks lowest. Flageat & Cully 2023 ("Uncertain
Quality-Diversity", IEEE TEVC) is about noisy scores and descriptors (re-evaluating elites
before trusting them), so it bears on a task's ``noise``, not on parent selection.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

SELECTIONS: tuple[str, ...] = ("adaptive", "tournament", "uniform", "curiosity", "dns")

DNS_K = 3
"""Nearest better elites whose mean distance is an elite's dominated novelty (the paper's k)."""
STALL_TOL = 1e-3
"""An improvement of the best counts when it exceeds this share of the archive's score range
(best minus lowest): convergence onto a local peak (2.9999 -> 2.99999) is not progress."""
STALL_FACTOR = 3.0
"""Stalled once the adds since the last improvement exceed this many times the mean gap
between the recent ones. Were improvements still arriving at their recent rate (gaps about
exponential), a gap this long would happen 5% of the time (``exp(-3)``): the usual level at
which to stop believing it."""
TOP_K = 8
"""The best programs ``adaptive`` draws inspirations from while it exploits (greedy's pool)."""
STALL_WINDOW = 8
"""Recent gaps averaged."""
STALL_SHARE = 1 / 3
"""Stalled only once the best has not improved during this share of all adds so far: the
wait for an improvement grows with the run (records of a search arrive ever more rarely), so
a gap long against the recent ones is a false alarm while it is short against the run. CMA-ES
restarts judge stagnation the same way, over a window that is a share of the iterations so
far (Hansen 2009, "Benchmarking a BI-Population CMA-ES on the BBOB-2009 Function Testbed");
the handoff reports flag a stalled worker by the same third."""
STALL_MIN = 30
"""The fewest adds that can count as a stall: about four generations of 8 agents in
flight."""


@dataclass(slots=True)
class Progress:
    """The best score's significant improvements, counted in adds; says when it stalls.

    While every score so far ties (``flat``), nothing has stalled: the run has not begun.
    On such a plateau no elite dominates another, so the stalled phase's Dominated Novelty
    Search has nothing to rank and its picks are a random walk over programs that differ in
    ways the score cannot see. On the bare circle packing (every program scores 0 until the
    26th circle fits, the first 25-60 adds) that walk drifted away from the start: the first
    valid program came at evaluation 66 on average against 53 when breeding from the start
    (30 seeds), and the best at 200 evaluations was 1.29 against 1.43.

    Everything is derived from the order of adds, so a replay or a resumed run that adds
    the same programs in the same order stalls at the same moments.
    """

    since: int = 0  # adds since the last significant improvement
    adds: int = 0  # every add counted
    flat: bool = True  # every score so far ties (best == lowest)
    gaps: list[int] = field(default_factory=list)  # adds between recent improvements

    def update(self, score: float, best_before: float | None, lowest: float) -> None:
        """Count one add of a program scoring ``score`` (``best_before``: the best until now)."""
        self.adds += 1
        self.flat = max(score, score if best_before is None else best_before) <= lowest
        if best_before is None or score > best_before + STALL_TOL * (
            max(score, best_before) - lowest
        ):
            self.gaps.append(self.since + 1)
            del self.gaps[:-STALL_WINDOW]
            self.since = 0
        else:
            self.since += 1

    def stalled(self) -> bool:
        """Whether the best has not improved for unusually long: against the recent gaps
        (:data:`STALL_FACTOR`) and against the run so far (:data:`STALL_SHARE`); never while
        every score ties."""
        if self.flat:
            return False
        usual = sum(self.gaps) / len(self.gaps) if self.gaps else 0.0
        return self.since >= max(STALL_FACTOR * usual, STALL_SHARE * self.adds, STALL_MIN)


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


def mix_top_and_random(rng: np.random.Generator, ranked: np.ndarray, n: int) -> list[int]:
    """Inspirations: the first ``ceil(n/2)`` entries of ``ranked`` (what works), then
    random distinct later entries (what differs); fewer when ``ranked`` is shorter.

    Args:
        rng: the source of the random picks.
        ranked: candidates (positions or history rows), best first.
        n: number wanted, ``>= 0``.
    """
    n = min(n, len(ranked))
    n_top = math.ceil(n / 2)
    top = [int(x) for x in ranked[:n_top]]
    rest = ranked[n_top:]
    rand = rng.choice(rest, size=n - n_top, replace=False) if n > n_top else []
    return top + [int(x) for x in rand]
