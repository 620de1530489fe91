"""A handoff's numbers: what a worker's round tried, by site, and what paid, with warnings.

Why: a handoff's words used to be a list of code substitutions with gains against each
attempt's parent (a child of a weak parent "paid" while the worker stood still) and its
concerns said "progress continued" on rounds that made none. The numbers are now computed
here, from the worker's attempt log alone, before any model writes a word:

* **against the round's start**: a gain is what an attempt raised the worker's best of
  the round by, starting from the program the round began with (its base); the raises add
  up to the round's gain;
* **by site**: an attempt's site is each code line its edit changed, numbers masked as
  ``#`` (``OUTER_RADIUS = #``), the key the offline model's memory and the code embedding
  use, so twelve tries of different values at one line are one site;
* **warning signs** with their numbers: a stall (no raise in the last part of the round),
  failed evaluations by kind, duplicate proposals, attempts that made no program.

The handoff prompt shows these numbers and asks for words in the same structure (DONE,
LEARNED by site, CONCERNS from the warning signs); the offline model writes them from the
prompt alone; the store keeps the report beside the text (the ``report`` column, JSON).
Records-layer code: it imports nothing of aster_nb but :mod:`aster_nb.edits`.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .edits import summary_hunks

if TYPE_CHECKING:
    from .records import Experiment

__all__ = ["Flag", "HandoffReport", "Raise", "SiteReport", "build_report", "site_of"]

EVALUATED = frozenset({"ok", "error", "timeout", "memory", "invalid", "lost"})
NO_PROGRAM = frozenset({"edit_failed", "model_error"})
# A warning sign is raised at these shares. A stall: no raise in the last third of the
# evaluations (and at least 10 of them); failures, duplicates and attempts without a
# program: a tenth of their whole. Below that they are reported, not flagged.
STALL_SHARE, STALL_MIN, SHARE = 1 / 3, 10, 0.10
MAX_SITES = 50  # kept in a report; the rest are counted in ``more_sites``
_NAMES = {  # outcomes in words: (one, many)
    "timeout": ("timeout", "timeouts"),
    "error": ("error", "errors"),
    "memory": ("out of memory", "out of memory"),
    "invalid": ("invalid", "invalid"),
    "lost": ("lost (the sandbox died)", "lost (the sandbox died)"),
    "edit_failed": ("edit that did not apply", "edits that did not apply"),
    "model_error": ("model error", "model errors"),
}
_DIGITS = re.compile(r"\d+\.?\d*(?:[eE][-+]?\d+)?")


def site_of(line: str) -> str:
    """A code line with its numbers masked: the site an edit touched, whatever the values."""
    return _DIGITS.sub("#", line.strip())


def _hunk_sites(old: str, new: str) -> list[tuple[str, str, str]]:
    """``(site, old line, new line)`` of each line a hunk changed: line by line when the
    hunk replaced as many lines as it removed, else one site for the block."""
    olds, news = old.splitlines(), new.splitlines()
    if olds and len(olds) == len(news):
        return [(site_of(o), o, n) for o, n in zip(olds, news, strict=True) if o != n]
    kept = [ln for ln in olds if ln.strip()]
    if not kept:  # a pure insertion: named by what it added
        added = [ln for ln in news if ln.strip()]
        return [("added: " + (site_of(added[0]) if added else "(blank lines)"), old, new)]
    more = f" (+{len(kept) - 1} lines)" if len(kept) > 1 else ""
    return [(site_of(kept[0]) + more, old, new)]


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class SiteReport:
    """What the attempts that changed one site did.

    Attributes:
        site: the code line (its numbers as ``#``); ``added: ...`` for an insertion.
        tried: attempts that changed it (duplicates included).
        evaluated: of them, new programs evaluated.
        failed: of them, evaluations that failed.
        duplicates: of them, proposals of code already known.
        raised: of them, attempts that raised the round's best.
        gain: what those raised it by, in all.
        shared: of the raises, those whose edit changed other sites too (each site is
            credited the whole raise, so sites' gains may add up to more than the round's).
        margin: the best margin of an attempt here over the round's best at its time:
            its largest raise, or (negative) how close its best try came; ``None`` when
            none evaluated ok (or the round had no best yet).
        margin_n: that attempt's number.
        margin_change: its change at this site, ``'old' -> 'new'``.
    """

    site: str
    tried: int = 0
    evaluated: int = 0
    failed: int = 0
    duplicates: int = 0
    raised: int = 0
    gain: float = 0.0
    shared: int = 0
    margin: float | None = None
    margin_n: int | None = None
    margin_change: str = ""

    def line(self) -> str:
        """The site's line in a handoff prompt (read back by the offline model)."""
        margin = "none" if self.margin is None else f"{self.margin:+.6g}"
        at = "-" if self.margin_n is None else self.margin_n
        return (
            f"- site {self.site!r} | tried {self.tried} | evaluated {self.evaluated} | failed "
            f"{self.failed} | duplicates {self.duplicates} | raised {self.raised} | gain "
            f"{self.gain:+.6g} | shared {self.shared} | margin {margin} | at #{at} | change "
            f"{self.margin_change or '-'}"
        )


@dataclass(frozen=True, slots=True)
class Raise:
    """An attempt that raised the worker's best of the round.

    Attributes:
        n: the attempt's number.
        evaluation: how many evaluations the round had made with it (1-based).
        score: the new best.
        gain: over the best before it (``None``: the first valid program of a round whose
            start had no score).
        sites: the sites its edit changed.
        change: its one-line diff summary.
    """

    n: int
    evaluation: int
    score: float
    gain: float | None
    sites: tuple[str, ...]
    change: str


@dataclass(frozen=True, slots=True)
class Flag:
    """A warning sign, with its numbers.

    Attributes:
        kind: ``stall``, ``failures``, ``duplicates``, ``no_program`` or ``noise``.
        text: one sentence with the numbers, e.g. "no improvement in the last 240 of 300
            evaluations".
        count: how many (evaluations without a raise, failures, ...).
        of: out of how many (evaluations or attempts).
    """

    kind: str
    text: str
    count: int = 0
    of: int = 0

    def line(self) -> str:
        return f"- {self.kind}: {self.text}"


@dataclass(frozen=True, slots=True)
class HandoffReport:
    """A worker's round in numbers, every gain against the round's start.

    Attributes:
        start: the score the round started from (its base's; ``None``: it had none).
        best: the worker's best score at the end (``start`` if nothing beat it).
        top: the best score any attempt of the round reached, even below ``start``.
        attempts: applied attempts.
        evaluations: of them, new programs evaluated (what the worker's budget counts).
        ok: evaluations that passed.
        failures: failed evaluations by status (``timeout``, ``error``, ...).
        duplicates: proposals of code already known.
        no_program: attempts that made no program, by outcome (``edit_failed``,
            ``model_error``).
        raises: the attempts that raised the round's best, in order.
        since_raise: evaluations since the last raise (all of them when none).
        sites: per site, most paying first.
        more_sites: sites left out past :data:`MAX_SITES`.
        kinds: per kind of edit (the rationale's first word): ``(tried, raised)``.
        flags: the warning signs.
        goals: the goals in effect, ``(first attempt, goal)`` in order; more than one when
            the goal was steered during the round (the last is the handoff's goal).
    """

    start: float | None
    best: float | None
    top: float | None = None
    attempts: int = 0
    evaluations: int = 0
    ok: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    no_program: dict[str, int] = field(default_factory=dict)
    raises: tuple[Raise, ...] = ()
    since_raise: int = 0
    sites: tuple[SiteReport, ...] = ()
    more_sites: int = 0
    kinds: dict[str, tuple[int, int]] = field(default_factory=dict)
    flags: tuple[Flag, ...] = ()
    goals: tuple[tuple[int, str], ...] = ()

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def gain(self) -> float | None:
        """The round's gain over its start (``None`` when either has no score)."""
        return None if self.best is None or self.start is None else self.best - self.start

    @property
    def steered(self) -> bool:
        return len(self.goals) > 1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists for tuples): what the store keeps."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HandoffReport:
        return cls(
            **{
                **d,
                "failures": dict(d.get("failures") or {}),
                "no_program": dict(d.get("no_program") or {}),
                "raises": tuple(
                    Raise(**{**r, "sites": tuple(r["sites"])}) for r in d.get("raises") or ()
                ),
                "sites": tuple(SiteReport(**s) for s in d.get("sites") or ()),
                "kinds": {k: (int(v[0]), int(v[1])) for k, v in (d.get("kinds") or {}).items()},
                "flags": tuple(Flag(**f) for f in d.get("flags") or ()),
                "goals": tuple((int(n), str(g)) for n, g in d.get("goals") or ()),
            }
        )


def build_report(
    log: Sequence[Experiment],
    *,
    start: float | None,
    goals: Sequence[tuple[int, str]] = (),
) -> HandoffReport:
    """The report of a worker's round from its applied attempts.

    Args:
        log: the round's attempts (any order; read in attempt order).
        start: the score the round started from (``None``: its base had none).
        goals: ``(first attempt, goal)`` for each goal in effect, in order.
    """
    log = sorted(log, key=lambda e: e.n)
    best, top = start, None
    evaluations = ok = duplicates = 0
    failures: Counter[str] = Counter()
    no_program: Counter[str] = Counter()
    reasons: dict[str, str] = {}
    raises: list[Raise] = []
    sites: dict[str, dict[str, Any]] = {}
    kinds: dict[str, list[int]] = {}
    for e in log:
        if e.status in EVALUATED:
            evaluations += 1
            if e.status == "ok":
                ok += 1
            else:
                failures[e.status] += 1
        elif e.status == "duplicate":
            duplicates += 1
        elif e.status in NO_PROGRAM:
            no_program[e.status] += 1
        if e.status != "ok" and e.reason:
            reasons.setdefault(e.status, e.reason)
        hunks = [h for _, old, new in summary_hunks(e.change) for h in _hunk_sites(old, new)]
        touched = list(dict.fromkeys(s for s, _, _ in hunks))
        raised, margin = None, None
        if e.status == "ok" and e.score is not None:
            top = e.score if top is None else max(top, e.score)
            margin = None if best is None else e.score - best
            if best is None or e.score > best:
                gain = None if best is None else e.score - best
                raised = Raise(e.n, evaluations, e.score, gain, tuple(touched), e.change)
                raises.append(raised)
                best = e.score
        kind = (e.idea.split(" ")[0] or "?").lower()
        k = kinds.setdefault(kind, [0, 0])
        k[0] += 1
        k[1] += raised is not None
        for site, old, new in hunks:
            s = sites.setdefault(site, {"site": site, "tried": 0, "evaluated": 0, "failed": 0,
                                        "duplicates": 0, "raised": 0, "gain": 0.0,
                                        "shared": 0})  # fmt: skip
            if site not in touched:
                continue  # a second hunk at the same site: counted once per attempt
            touched.remove(site)
            s["tried"] += 1
            s["evaluated"] += e.status in EVALUATED
            s["failed"] += e.status in EVALUATED and e.status != "ok"
            s["duplicates"] += e.status == "duplicate"
            if raised is not None:
                s["raised"] += 1
                s["gain"] += raised.gain or 0.0
                s["shared"] += len(raised.sites) > 1
            if margin is not None and (s.get("margin") is None or margin > s["margin"]):
                change = f"{_short(old)!r} -> {_short(new)!r}"
                s.update(margin=margin, margin_n=e.n, margin_change=change)
    ordered = sorted(
        (SiteReport(**s) for s in sites.values()),
        key=lambda s: (-s.gain, -s.raised, -(s.margin if s.margin is not None else -math.inf),
                       -s.tried, s.site),
    )  # fmt: skip
    last = raises[-1].evaluation if raises else 0
    report = HandoffReport(
        start=start,
        best=best,
        top=top,
        attempts=len(log),
        evaluations=evaluations,
        ok=ok,
        failures=dict(failures.most_common()),
        duplicates=duplicates,
        no_program=dict(no_program.most_common()),
        raises=tuple(raises),
        since_raise=evaluations - last,
        sites=tuple(ordered[:MAX_SITES]),
        more_sites=max(0, len(ordered) - MAX_SITES),
        kinds={k: (v[0], v[1]) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1][0])},
        goals=tuple(goals),
    )
    return _with_flags(report, reasons)


def _with_flags(r: HandoffReport, reasons: dict[str, str]) -> HandoffReport:
    flags = []
    e, a = r.evaluations, r.attempts
    if e and not r.raises:
        flags.append(Flag("stall", f"no improvement on the round's start in {e} evaluations", e, e))
    elif e and r.since_raise >= max(STALL_MIN, math.ceil(e * STALL_SHARE)):
        text = (
            f"no improvement in the last {r.since_raise} of {e} evaluations (the best last "
            f"rose at evaluation {e - r.since_raise})"
        )
        flags.append(Flag("stall", text, r.since_raise, e))
    if e and r.failed / e >= SHARE:
        worst = next(iter(r.failures))
        # a traceback's last line with words in it (not the ~~~^^^ markers under code)
        said = [ln for ln in reasons.get(worst, "").splitlines() if re.search(r"[A-Za-z]", ln)]
        text = f"{r.failed / e:.0%} of evaluations failed ({r.failed} of {e}): " + _counted(
            r.failures
        )
        flags.append(Flag("failures", text + (f"; e.g. {_short(said[-1], 160)}" if said else ""),
                          r.failed, e))  # fmt: skip
    if a and r.duplicates / a >= SHARE:
        text = (
            f"{r.duplicates / a:.0%} of proposals were duplicates ({r.duplicates} of {a}): "
            "code already evaluated, which spent model calls and no evaluation"
        )
        flags.append(Flag("duplicates", text, r.duplicates, a))
    none = sum(r.no_program.values())
    if a and none / a >= SHARE:
        text = f"{none / a:.0%} of attempts produced no program ({none} of {a}): "
        flags.append(Flag("no_program", text + _counted(r.no_program), none, a))
    gain = r.gain
    if gain is not None and r.start is not None and 0 < gain < 1e-6 * max(1.0, abs(r.start)):
        flags.append(Flag("noise", f"the round's gain, {gain:+.3g}, is within numerical noise"))
    return replace(r, flags=tuple(flags))


def _counted(counts: dict[str, int]) -> str:
    """``12 timeouts, 1 error``: outcome counts in words, singular or plural."""
    return ", ".join(f"{n} {_NAMES.get(k, (k, k))[n != 1]}" for k, n in counts.items())
