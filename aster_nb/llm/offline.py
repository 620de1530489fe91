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
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections import Counter

import numpy as np

from ..edits import EditError, parse_edit
from . import operators as ops
from .base import Request, Response, ToolCall, Usage
from .promptparse import ProposePrompt, Remembered, parse_memory, parse_propose, sections
from .synthesis import write_merge, write_plan

_DIGITS = re.compile(r"\d+\.?\d*(?:[eE][-+]?\d+)?")


def _mask(line: str) -> str:
    """A line with its numbers masked: the 'site' an edit touched, whatever the values."""
    return _DIGITS.sub("#", line.strip())


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
            text, calls = self._tool_turn(request, rng)
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

    # -- the tool protocol ---------------------------------------------------------------

    def _tool_turn(
        self, request: Request, rng: np.random.Generator
    ) -> tuple[str, tuple[ToolCall, ...]]:
        """One turn of a tool session: read, edit, evaluate, then submit or try again."""
        first = request.messages[0]["content"]
        prompt = first if isinstance(first, str) else ""
        history = _tool_history(request.messages)
        turn = len(request.messages) // 2

        def call(name: str, **args: object) -> ToolCall:
            return ToolCall(id=f"toolu_{turn}_{name}", name=name, arguments=dict(args))

        current = _current_program(history)
        if not history or current is None:
            return "Read the program first.", (call("read_file", path="program.py"),)
        last_name, _, last_result, last_error = history[-1]
        trials = [json.loads(r) for n, _, r, e in history if n == "run_evaluation" and not e]
        if last_name == "submit":
            return "Submitted.", ()
        if last_error:
            return f"That failed ({last_result[:120]}); re-reading the file.", (
                call("read_file", path="program.py"),
            )
        if last_name == "run_evaluation":
            pm = re.search(r"## Parent program \(id \w+, score ([-+\d.eE]+|inf|nan)\)", prompt)
            parent = float(pm.group(1)) if pm else None
            res = trials[-1]
            better = res.get("status") == "ok" and (
                parent is None or (res.get("score") or -np.inf) > parent
            )
            if better or len(trials) >= 2:
                why = "it beats the parent" if better else "evaluations are limited"
                return f"Submit: {why} (score {res.get('score')}).", (call("submit"),)
        # Propose against the file as it now stands, as if it were the parent.
        text = self.propose(_with_parent(prompt, current), rng)
        try:
            edit = parse_edit(text)
        except EditError:
            return "No edit to make; submitting.", (call("submit"),)
        calls = [
            ToolCall(
                id=f"toolu_{turn}_{i}",
                name="edit_file",
                arguments={"path": "program.py", "old_string": r.search, "new_string": r.replace},
            )
            for i, r in enumerate(edit.replacements)
        ]
        rationale = text.split("<<<<<<<")[0].strip()
        return rationale, (*calls, call("run_evaluation"))

    # -- proposals -----------------------------------------------------------------------

    def propose(self, prompt: str, rng: np.random.Generator) -> str:
        try:
            p = parse_propose(prompt)
        except ValueError as e:
            return f"I cannot propose an edit: {e}."
        # Edits that failed or did not pay (a repair of a scoreless parent counts as paying).
        bad = {
            _pair(c)
            for m in p.memory
            if not m.ok or (m.delta is not None and m.delta <= 0)
            for c in m.changes
        }
        site_fails, site_wins = _site_stats(p.memory)
        where = ops.editable_lines(p.parent, p.focus)
        for _ in range(self.max_tries):
            prop = self._draw(p, where, rng, site_fails, site_wins)
            if prop is not None and not any(_pair(c) in bad for c in prop.changes):
                return _render(prop)
        prop = self._draw(p, where, rng, site_fails, site_wins)
        if prop is None:
            return "I found nothing in the focus area that I know how to change."
        return _render(prop)

    def _draw(
        self,
        p: ProposePrompt,
        where: tuple[list[int], str],
        rng: np.random.Generator,
        fails: Counter,
        wins: Counter,
    ) -> ops.Proposal | None:
        lines, area = where  # ops.editable_lines of the parent, the same for every draw
        # Operators in a random order drawn by weight; the first that applies is used.
        names = list(OP_WEIGHTS)
        w = np.array([OP_WEIGHTS[k] for k in names])
        for name in rng.choice(names, size=len(names), replace=False, p=w / w.sum()):
            prop = self._op(str(name), p, rng, lines, area, fails, wins)
            if prop is not None:
                return prop
        return None

    def _op(
        self,
        name: str,
        p: ProposePrompt,
        rng: np.random.Generator,
        lines: list[int],
        area: str,
        fails: Counter,
        wins: Counter,
    ) -> ops.Proposal | None:
        if name == "continue":
            return _continuation(p, rng, lines)
        if name == "crossover" and p.inspirations:
            donor_id, donor = p.inspirations[int(rng.integers(len(p.inspirations)))]
            x = ops.crossover(p.parent, donor, p.focus, rng)
            if x is None:
                return None
            search, replace, new_code, what = x
            return ops.Proposal(
                "crossover",
                f"Take {what} from inspiration {donor_id}, whose version of it differs, "
                "to test whether its choices work on this parent.",
                ((search, replace),),
                new_code,
                _line_changes(p.parent, new_code),
            )
        if name == "swap":
            return _swap(p.parent, lines, area, rng)
        if name == "perturb":
            n_sites = 1 if rng.random() < 0.8 else int(rng.integers(2, 4))
            return _perturb(p.parent, lines, area, rng, n_sites, fails, wins)
        return None


# How often each operator is tried first. Perturbation does most of the work; the others
# are rarer because they are larger jumps (swap, crossover) or need a paying memory.
OP_WEIGHTS = {"perturb": 0.55, "continue": 0.2, "crossover": 0.15, "swap": 0.1}


def _pair(change: tuple[str, str]) -> tuple[str, str]:
    # Memories hold stripped lines (diff_summary), proposals indented ones.
    return change[0].strip(), change[1].strip()


def _site_stats(memory: tuple[Remembered, ...]) -> tuple[Counter, Counter]:
    fails: Counter = Counter()
    wins: Counter = Counter()
    for m in memory:
        for old, _new in m.changes:
            (wins if m.ok and (m.delta or 0) > 0 else fails)[_mask(old)] += 1
    return fails, wins


def _perturb(
    code: str,
    lines: list[int],
    area: str,
    rng: np.random.Generator,
    n_sites: int,
    fails: Counter,
    wins: Counter,
) -> ops.Proposal | None:
    blocks, notes, changes = [], [], []
    cur = code
    scale = float(rng.choice(ops.SCALES, p=ops.SCALE_P))
    touched: set[int] = set()
    # The parent's sites serve every step: an edit changes one number on one line, which
    # later steps skip, so the other lines' sites stay where they were (and re-tokenizing
    # the edited program each step would cost milliseconds on the event loop).
    all_sites = ops.numeric_sites(code, lines)
    for _ in range(n_sites):
        sites = [s for s in all_sites if s.line not in touched]
        if not sites:
            break
        cur_lines = cur.splitlines(keepends=True)
        # Sites whose edits kept failing are drawn less; sites that paid, more.
        w = np.array(
            [
                (1.0 + 2.0 * wins[_mask(cur_lines[s.line])])
                / (1.0 + fails[_mask(cur_lines[s.line])])
                for s in sites
            ]
        )
        site = sites[int(rng.choice(len(sites), p=w / w.sum()))]
        new = ops.perturb_number(site.text, rng, scale)
        if new is None:
            continue
        touched.add(site.line)
        old_line = cur_lines[site.line]
        new_line = old_line[: site.start] + new + old_line[site.end :]
        search, replace, cur = ops.line_edit(cur, site.line, new_line)
        blocks.append((search, replace))
        changes.append((old_line.rstrip("\n"), new_line.rstrip("\n")))
        name = ops.name_on(old_line)
        notes.append(f"{name + ' ' if name else ''}{site.text} -> {new}")
    if not blocks:
        return None
    hist = (
        "; earlier edits here did not pay, so I try a fresh value"
        if any(fails[_mask(o)] for o, _ in changes)
        else ""
    )
    return ops.Proposal(
        "perturb",
        f"Perturb {', '.join(notes)} in {area} (relative scale {scale:g}){hist}.",
        tuple(blocks),
        cur,
        tuple(changes),
    )


def _swap(code: str, lines: list[int], area: str, rng: np.random.Generator) -> ops.Proposal | None:
    sites = ops.swap_sites(code, lines)
    if not sites:
        return None
    s = sites[int(rng.integers(len(sites)))]
    old_line = code.splitlines(keepends=True)[s.line]
    new_tok = ops.SWAPS[s.text]
    new_line = old_line[: s.start] + new_tok + old_line[s.end :]
    search, replace, new_code = ops.line_edit(code, s.line, new_line)
    return ops.Proposal(
        "swap",
        f"Swap `{s.text}` for `{new_tok}` in `{old_line.strip()}` ({area}) to test the opposite choice.",
        ((search, replace),),
        new_code,
        ((old_line.rstrip("\n"), new_line.rstrip("\n")),),
    )


def _continuation(
    p: ProposePrompt, rng: np.random.Generator, lines: list[int]
) -> ops.Proposal | None:
    """Repeat a paying change's step on the same line of the parent, if it is there."""
    paid = [m for m in p.memory if m.ok and (m.delta or 0) > 0 and m.changes]
    if not paid:
        return None
    paid.sort(key=lambda m: m.delta or 0, reverse=True)
    m = paid[int(rng.integers(min(3, len(paid))))]
    code_lines = p.parent.splitlines(keepends=True)
    allowed = [i for i in lines if i < len(code_lines)]
    for old, new in m.changes:
        old, new = old.strip(), new.strip()
        hits = [i for i in allowed if code_lines[i].strip() == new]
        if not hits:
            # The paying change was made on another parent: carry it over if it fits here.
            src = [i for i in allowed if code_lines[i].strip() == old]
            if src and not p.parent_id.startswith(m.parent):
                line = code_lines[src[0]]
                indent = line[: len(line) - len(line.lstrip())]
                search, replace, new_code = ops.line_edit(p.parent, src[0], indent + new)
                return ops.Proposal(
                    "continue",
                    f"Carry over a change that paid on another parent (#{m.n}, {m.delta:+.4g}): "
                    f"`{old}` -> `{new}`.",
                    ((search, replace),),
                    new_code,
                    ((line.rstrip("\n"), indent + new),),
                )
            continue
        line = code_lines[hits[0]].rstrip("\n")
        a = list(_DIGITS.finditer(old))
        b = list(_DIGITS.finditer(new))
        here = list(_DIGITS.finditer(line))
        if not (len(a) == len(b) == len(here)):
            continue
        # Step each number that changed once more, at its own position on the line.
        out, notes, shift = line, [], 0
        for x, y, at in zip(a, b, here, strict=True):
            if x.group() == y.group():
                continue
            nxt = _step_again(x.group(), y.group())
            if nxt is None:
                continue
            s0, s1 = at.start() + shift, at.end() + shift
            out = out[:s0] + nxt + out[s1:]
            shift += len(nxt) - (s1 - s0)
            notes.append(f"{y.group()} -> {nxt}")
        if out == line:
            continue
        search, replace, new_code = ops.line_edit(p.parent, hits[0], out)
        return ops.Proposal(
            "continue",
            f"Continue a direction that paid (#{m.n}, {m.delta:+.4g}): {', '.join(notes)} on "
            f"`{line.strip()}`.",
            ((search, replace),),
            new_code,
            ((line, out),),
        )
    return None


def _step_again(x: str, y: str) -> str | None:
    """The value one more step past ``y`` in the direction ``x -> y`` took."""
    is_int = all(c.isdigit() for c in x + y)
    if is_int:
        nxt = int(y) + (int(y) - int(x))
        return str(nxt) if nxt >= 0 else None
    r = ops.number_ratio(x, y)
    if r is None:
        return None
    v = f"{float(y) * r:.6g}"
    return v if any(c in v for c in ".en") else v + ".0"


def _line_changes(a: str, b: str) -> tuple[tuple[str, str], ...]:
    import difflib

    sm = difflib.SequenceMatcher(a=a.splitlines(), b=b.splitlines(), autojunk=False)
    return tuple(
        (sm.a[i1], sm.b[j1])
        for tag, i1, i2, j1, j2 in sm.get_opcodes()
        if tag == "replace" and i2 - i1 == 1 and j2 - j1 == 1
    )


def _render(p: ops.Proposal) -> str:
    parts = [p.rationale, ""]
    for search, replace in p.blocks:
        # removesuffix, not rstrip: a trailing blank line may be what makes SEARCH unique.
        parts += ["<<<<<<< SEARCH", search.removesuffix("\n"), "======="]
        if replace:
            parts.append(replace.removesuffix("\n"))
        parts += [">>>>>>> REPLACE", ""]
    return "\n".join(parts)


def _tokens(text: str) -> int:
    # A rough token count (about 4 characters a token), so usage figures are plausible.
    return max(1, len(text) // 4)


# -- handoffs --------------------------------------------------------------------------------


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
    site_f, site_w = _site_stats(log)
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


# -- tool-session state, read back from the conversation -------------------------------------


def _tool_history(messages: tuple[dict, ...]) -> list[tuple[str, dict, str, bool]]:
    """``(tool, arguments, result, is_error)`` for every answered tool call, in order."""
    calls: dict[str, tuple[str, dict]] = {}
    out = []
    for m in messages:
        content = m.get("content")
        if not isinstance(content, list):
            continue
        for b in content:
            if not isinstance(b, dict):
                continue
            if b.get("type") == "tool_use":
                calls[b["id"]] = (b["name"], b.get("input") or {})
            elif b.get("type") == "tool_result" and b.get("tool_use_id") in calls:
                name, args = calls[b["tool_use_id"]]
                body = b.get("content")
                text = body if isinstance(body, str) else json.dumps(body)
                out.append((name, args, text, bool(b.get("is_error"))))
    return out


def _current_program(history: list[tuple[str, dict, str, bool]]) -> str | None:
    """The program as the model last read it, with its successful edits since applied."""
    current = None
    for name, args, result, error in history:
        if error:
            continue
        if name == "read_file" and args.get("path") == "program.py":
            current = result
        elif name == "edit_file" and current is not None:
            current = current.replace(args.get("old_string", ""), args.get("new_string", ""), 1)
    return current


def _with_parent(prompt: str, code: str) -> str:
    """``prompt`` with the parent section's code replaced by ``code``."""
    m = re.search(
        r"(## Parent program[^\n]*\n)(`{3,})python\n.*?^\2[ \t]*$", prompt, re.DOTALL | re.MULTILINE
    )
    if m is None:
        return prompt
    fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", code)), default=0))
    body = code if code.endswith("\n") else code + "\n"
    return prompt[: m.start()] + m.group(1) + f"{fence}python\n{body}{fence}" + prompt[m.end() :]
