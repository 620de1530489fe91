"""Surface areas in code: named regions between ``EVOLVE-BLOCK`` markers.

A region is written as::

    # EVOLVE-BLOCK-START layout
    ...code the agents may change...
    # EVOLVE-BLOCK-END

The name after ``EVOLVE-BLOCK-START`` is the surface area's name; a bare marker is named
``main``. Markers may be indented; blocks do not nest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UserInputError

_START = re.compile(r"^[ \t]*#[ \t]*EVOLVE-BLOCK-START(?:[ \t]+(?P<name>[A-Za-z_][\w.-]*))?[ \t]*$")
_END = re.compile(r"^[ \t]*#[ \t]*EVOLVE-BLOCK-END\b.*$")


class BlockError(UserInputError):
    """The EVOLVE-BLOCK markers of a program are malformed.

    A user error when it is the task's initial program (the command line prints it as one
    line); agents' edits that break markers are caught and recorded as failed edits.
    """


@dataclass(frozen=True, slots=True)
class Block:
    """One marked region.

    Attributes:
        name: the surface area's name.
        start: index of the first line inside the block (0-based, after the START marker).
        end: index one past the last line inside the block (the END marker's index).
        text: the lines inside the block, joined with their newlines.
    """

    name: str
    start: int
    end: int
    text: str


def find_blocks(code: str) -> dict[str, Block]:
    """Every marked block of ``code`` by name, in source order.

    Raises:
        BlockError: an unclosed or nested block, an END without START, or a name used twice.
    """
    lines = code.splitlines(keepends=True)
    out: dict[str, Block] = {}
    open_name: str | None = None
    open_at = -1
    for i, line in enumerate(lines):
        if m := _START.match(line.rstrip("\r\n")):
            if open_name is not None:
                raise BlockError(
                    f"line {i + 1}: EVOLVE-BLOCK-START inside block {open_name!r} "
                    f"(opened at line {open_at}); blocks cannot nest"
                )
            open_name, open_at = m.group("name") or "main", i + 1
            if open_name in out:
                raise BlockError(f"line {i + 1}: block name {open_name!r} is used twice")
        elif _END.match(line.rstrip("\r\n")):
            if open_name is None:
                raise BlockError(f"line {i + 1}: EVOLVE-BLOCK-END without a START")
            out[open_name] = Block(open_name, open_at, i, "".join(lines[open_at:i]))
            open_name = None
    if open_name is not None:
        raise BlockError(f"block {open_name!r} opened at line {open_at} is never closed")
    return out


def replace_block(code: str, name: str, text: str) -> str:
    """``code`` with the inside of block ``name`` replaced by ``text``."""
    blocks = find_blocks(code)
    if name not in blocks:
        raise BlockError(f"no block named {name!r}; blocks are {sorted(blocks)}")
    b = blocks[name]
    lines = code.splitlines(keepends=True)
    if text and not text.endswith("\n"):
        text += "\n"
    return "".join(lines[: b.start]) + text + "".join(lines[b.end :])


# what :func:`touched_areas` names for a change outside every block (no area can be named
# so: names are identifiers)
OUTSIDE = "(outside)"


def touched_areas(before: str, after: str) -> tuple[str, ...]:
    """The surface areas whose code differs between two versions of a program, in
    ``after``'s order (then :data:`OUTSIDE` if code outside the blocks changed).

    Why: which areas an attempt edited is what steering changes, so the store keeps it.
    Code with malformed markers counts as changed everywhere it is compared.
    """
    try:
        old, new = find_blocks(before), find_blocks(after)
    except BlockError:
        return (OUTSIDE,)
    out = [n for n, b in new.items() if n not in old or old[n].text != b.text]
    out += [n for n in old if n not in new]

    def rest(code: str, blocks: dict[str, Block]) -> list[str]:
        lines = code.splitlines()
        inside = {i for b in blocks.values() for i in range(b.start, b.end)}
        return [ln for i, ln in enumerate(lines) if i not in inside]

    if rest(before, old) != rest(after, new):
        out.append(OUTSIDE)
    return tuple(out)
