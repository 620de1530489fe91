"""The offline model's handoff: what a worker did, learned and worries about, from the prompt.

Like an LLM would, it reads only the handoff prompt: the outcome counts and the attempt log
it shows. The numbers it reports are the worker's own; what it learned is the changes that
paid most, the success rate by kind of edit and the sites that never paid.
"""

from __future__ import annotations

import re
from collections import Counter

from .promptparse import parse_memory, sections
from .proposals import site_stats


def write_handoff(prompt: str) -> str:
    """A handoff written from the prompt: the outcome counts and the attempt log it shows."""
    sec = sections(prompt)
    log = parse_memory(sec.get("attempt log", ""))
    outcome = sec.get("outcome", "")
    base = _field(outcome, "base score")
    best = _field(outcome, "best score")

    def count(name: str, fallback: int) -> int:
        v = _field(outcome, name)
        return int(v) if v is not None else fallback

    failed_log = [m for m in log if not m.ok and not m.reason.startswith("duplicate")]
    n = count("attempts", len(log))
    if n == 0:
        return (
            "DONE: No attempts were made.\nLEARNED: Nothing yet.\n"
            "CONCERNS: The worker had no budget to spend."
        )
    ok = count("evaluated ok", sum(m.ok for m in log))
    improved = sorted(
        (m for m in log if m.ok and (m.delta or 0) > 0), key=lambda m: m.delta or 0, reverse=True
    )
    n_improved = count("improved on their parent", len(improved))
    failed = count("failed evaluations", len(failed_log))
    no_apply = count("edits that did not apply", 0) + count("model errors", 0)
    dups = count("duplicates", 0)
    kinds = Counter(m.reason.split(":")[0] for m in failed_log)
    gain = (best - base) if base is not None and best is not None else None

    done = (
        f"{n} attempts: {ok} evaluated ok, {n_improved} beat their parent, {failed} failed "
        f"evaluation, {no_apply} produced no program, {dups} repeated a known program."
    )
    if gain is not None:
        done += f" Best score {best:.10g} from base {base:.10g} ({gain:+.6g})."
    elif best is not None:
        done += f" Best score {best:.10g}; the base had no score."

    learned = []
    for m in improved[:3]:
        chg = "; ".join(f"`{o.strip()}` -> `{w.strip()}`" for o, w in m.changes[:2]) or m.idea[:120]
        learned.append(f"{chg} paid {m.delta:+.4g} (#{m.n})")
    verbs = Counter(m.idea.split(" ")[0] for m in log)
    wins = Counter(m.idea.split(" ")[0] for m in improved)
    rates = ", ".join(f"{v.lower()} {wins[v]}/{c}" for v, c in verbs.most_common(4))
    learned.append(f"success by kind of edit (in the log shown): {rates}")
    site_f, site_w = site_stats(log)
    dead = [s for s, c in site_f.most_common(3) if c >= 3 and not site_w[s]]
    if dead:
        learned.append("never paid: " + "; ".join(f"`{s}` ({site_f[s]} tries)" for s in dead))

    concerns = []
    if failed and failed / n > 0.2 and kinds:
        kind = kinds.most_common(1)[0][0]
        example = next(m.reason for m in failed_log if m.reason.startswith(kind))
        concerns.append(
            f"{failed / n:.0%} of attempts failed evaluation, most as {kind} (e.g. {example[:160]})"
        )
    if no_apply and no_apply / n > 0.2:
        concerns.append(
            f"{no_apply / n:.0%} of attempts produced no program (edit or model failures)"
        )
    last_gain = max((m.n for m in improved), default=None)
    last_n = max((m.n for m in log), default=0)
    if not n_improved:
        concerns.append("no attempt improved on its parent")
    elif last_gain is not None and last_n - last_gain >= max(10, n // 3):
        concerns.append(f"stagnating: no improvement in the last {last_n - last_gain} attempts")
    if gain is not None and 0 < gain < 1e-6 * max(1.0, abs(base or 0)):
        concerns.append("the gain is tiny and could be numerical noise")
    return (
        f"DONE: {done}\nLEARNED: "
        + "; ".join(learned)
        + ".\nCONCERNS: "
        + (
            "; ".join(concerns) + "."
            if concerns
            else "none: failures were rare and progress continued."
        )
    )


def _field(text: str, name: str) -> float | None:
    m = re.search(rf"^{name}: (\S+)", text, re.MULTILINE)
    try:
        return float(m.group(1)) if m else None
    except ValueError:
        return None
