"""The offline model's handoff: what a worker did, learned and worries about, from the prompt.

Like an LLM would, it reads only the handoff prompt: the outcome counts, the sites the edits
changed and the warning signs, every score against the round's start. It writes the three
sections the prompt asks for, in words: DONE (what was tried and what came of it), LEARNED
(one line per site that paid, then the sites tried most that never did) and CONCERNS (each
warning sign with its numbers, or "none" with the numbers that show it).
"""

from __future__ import annotations

import re

from .promptparse import SiteLine, parse_flags, parse_sites, sections

PAYING_SHOWN, DEAD_SHOWN = 6, 3  # sites in LEARNED: the most paying, the most tried in vain


def write_handoff(prompt: str) -> str:
    """A handoff written from the prompt's outcome, sites and warning signs."""
    sec = sections(prompt)
    outcome = sec.get("outcome", "")

    def count(name: str) -> int:
        v = _field(outcome, name)
        return int(v) if v is not None else 0

    n = count("attempts")
    if n == 0:
        return (
            "DONE: No attempts were made.\nLEARNED: Nothing was tried.\n"
            "CONCERNS:\n- the worker had no budget to spend: 0 attempts."
        )
    start, best, top = (
        _field(outcome, k) for k in ("round start score", "best score", "best attempt score")
    )
    evals, ok, failed, dups = (
        count(k) for k in ("evaluations", "evaluated ok", "failed evaluations", "duplicates")
    )
    no_program = count("edits that did not apply") + count("model errors")
    raises, last = count("raises of the best"), count("last raise at evaluation")
    sites = parse_sites(sec.get("sites", ""))
    flags = parse_flags(sec.get("warning signs", ""))

    done = (
        f"{n} attempts from the round's start"
        + (f" ({start:.10g})" if start is not None else ", which had no score")
        + f": {evals} evaluations ({ok} ok, {failed} failed), {dups} duplicates, "
        f"{no_program} without a program."
    )
    if raises and best is not None:
        gain = f" ({best - start:+.4g} over the start)" if start is not None else ""
        done += (
            f" The best rose {_times(raises)}, to {best:.10g}{gain}, "
            f"the last time at evaluation {last} of {evals}."
        )
    else:
        done += " No attempt beat the round's start"
        if top is not None and start is not None:
            done += f"; the closest scored {top:.10g} ({top - start:+.4g})"
        done += "."
    steer = next((ln for ln in sec.get("goal", "").splitlines() if ln.startswith("Steered")), "")
    if steer:
        done += " " + steer.replace("Steered during the round:", "The goal was steered:", 1)

    paying = [s for s in sites if s.raised][:PAYING_SHOWN]
    tried_in_vain = (s for s in sites if not s.raised and s.tried >= 2)
    dead = sorted(tried_in_vain, key=lambda s: -s.tried)[:DEAD_SHOWN]
    learned = [_paid(s) for s in paying] + [_unpaid(s) for s in dead]
    rest = [s for s in sites if s not in paying and s not in dead]
    if rest:
        paid = sum(s.gain for s in rest if s.raised)
        learned.append(
            f"- {len(rest)} more sites, {sum(s.tried for s in rest)} tries"
            + (f", raising the best by {paid:+.4g} in all" if paid else ", none raised the best")
            + "."
        )
    if not learned:
        learned.append("- no edit changed a line that could be told apart.")

    if flags:
        concerns = [f"- {text}." for _, text in flags]
    else:
        last_rise = f"the last time at evaluation {last} of {evals}" if raises else "no raise"
        concerns = [
            f"- none: the best rose {_times(raises)} ({last_rise}); "
            f"{failed} of {evals} evaluations failed ({_pct(failed, evals)}), "
            f"{dups} of {n} proposals were duplicates ({_pct(dups, n)})."
        ]
    return (
        f"DONE: {done}\nLEARNED: by site, against the round's start:\n"
        + "\n".join(learned)
        + "\nCONCERNS:\n"
        + "\n".join(concerns)
    )


def _tries(s: SiteLine) -> str:
    parts = [f"{s.evaluated} evaluated"]
    parts += [f"{s.failed} failed"] if s.failed else []
    parts += [f"{s.duplicates} duplicate{'s' if s.duplicates != 1 else ''}"] if s.duplicates else []
    return f"{s.tried} {'try' if s.tried == 1 else 'tries'} ({', '.join(parts)})"


def _paid(s: SiteLine) -> str:
    shared = ""
    if s.shared:
        shared = f" ({'one' if s.shared == 1 else s.shared} of them with other sites)"
    most = ""
    if s.margin is not None and s.change != "-":
        most = f"; the largest, {s.change} (#{s.at}), {s.margin:+.4g}"
    return (
        f"- `{s.site}`: {_tries(s)}; raised the best {_times(s.raised)}{shared}, "
        f"{s.gain:+.4g} in all{most}."
    )


def _unpaid(s: SiteLine) -> str:
    if s.margin is None:
        tail = "none of them evaluated ok"
    elif s.margin >= 0:  # a tie: as good as the best then, not better
        tail = f"the closest, {s.change} (#{s.at}), matched the best then"
    else:
        tail = f"the closest, {s.change} (#{s.at}), fell {-s.margin:.4g} short of the best then"
    return f"- `{s.site}`: {_tries(s)}, never raised the best; {tail}."


def _times(k: int) -> str:
    return "once" if k == 1 else f"{k} times"


def _pct(k: int, n: int) -> str:
    return f"{k / n:.0%}" if n else "-"


def _field(text: str, name: str) -> float | None:
    m = re.search(rf"^{name}: (\S+)", text, re.MULTILINE)
    try:
        return float(m.group(1)) if m else None
    except ValueError:
        return None
