from __future__ import annotations

import pytest

from aster_nb.blocks import BlockError, find_blocks, replace_block
from aster_nb.edits import (
    EditError,
    apply_edit,
    changed_lines,
    diff_summary,
    parse_edit,
    unified_diff,
)

CODE = "x = 1\n# EVOLVE-BLOCK-START a\ny = 2\nz = y + 1\n# EVOLVE-BLOCK-END\nprint(x)\n"


def _sr(search: str, replace: str) -> str:
    return f"idea\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def test_search_replace_applies() -> None:
    out = apply_edit(CODE, parse_edit(_sr("y = 2", "y = 3")))
    assert "y = 3\n" in out and "y = 2" not in out


def test_several_blocks_apply_in_order() -> None:
    text = _sr("y = 2", "y = 5") + _sr("y = 5\nz = y + 1", "y = 5\nz = y * 2")
    out = apply_edit(CODE, parse_edit(text))
    assert "z = y * 2" in out and "y = 5" in out


def test_missing_search_is_a_failure_with_reason() -> None:
    with pytest.raises(EditError, match="not found"):
        apply_edit(CODE, parse_edit(_sr("w = 9", "w = 1")))


def test_ambiguous_search_is_rejected() -> None:
    code = "a = 1\na = 1\n"
    with pytest.raises(EditError, match="occurs 2 times"):
        apply_edit(code, parse_edit(_sr("a = 1", "a = 2")))


def test_trailing_whitespace_is_tolerated() -> None:
    code = "a = 1   \nb = 2\n"
    out = apply_edit(code, parse_edit(_sr("a = 1", "a = 7")))
    assert out == "a = 7\nb = 2\n"


def test_full_rewrite_and_no_change() -> None:
    out = apply_edit(CODE, parse_edit("new version:\n```python\nprint(1)\n```\n"))
    assert out == "print(1)\n"
    with pytest.raises(EditError, match="unchanged"):
        apply_edit(CODE, parse_edit(_sr("y = 2", "y = 2")))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("just words", "no SEARCH/REPLACE block"),
        ("<<<<<<< SEARCH\nx\n>>>>>>> REPLACE\n", "malformed"),
        ("```python\na\n```\n```python\nb\n```", "2 code blocks"),
    ],
)
def test_unparseable_replies(text: str, reason: str) -> None:
    with pytest.raises(EditError, match=reason):
        parse_edit(text)


def test_diffs() -> None:
    new = CODE.replace("y = 2", "y = 3")
    d = unified_diff(CODE, new)
    assert "-y = 2" in d and "+y = 3" in d
    assert changed_lines(CODE, new) == (1, 1)
    assert diff_summary(CODE, new) == "L3: 'y = 2' -> 'y = 3'"


def test_blocks() -> None:
    b = find_blocks(CODE)
    assert list(b) == ["a"] and b["a"].text == "y = 2\nz = y + 1\n"
    assert "q = 0" in replace_block(CODE, "a", "q = 0")
    with pytest.raises(BlockError, match="never closed"):
        find_blocks("# EVOLVE-BLOCK-START a\nx = 1\n")
    with pytest.raises(BlockError, match="cannot nest"):
        find_blocks("# EVOLVE-BLOCK-START a\n# EVOLVE-BLOCK-START b\n")
    with pytest.raises(BlockError, match="without a START"):
        find_blocks("# EVOLVE-BLOCK-END\n")


def test_search_is_anchored_at_line_starts() -> None:
    code = "max_x = 1\nx = 1\n"
    assert apply_edit(code, parse_edit(_sr("x = 1", "x = 2"))) == "max_x = 1\nx = 2\n"
    # overlapping occurrences count as two
    with pytest.raises(EditError, match="occurs 2 times"):
        apply_edit("a\na\na\n", parse_edit(_sr("a\na", "b")))


def test_diff_summary_round_trips_slashes_and_long_lines() -> None:
    from aster_nb.llm.promptparse import parse_memory

    long = "value = " + " + ".join(f"w{i} / {i}.0" for i in range(30))
    new = long.replace("w0 / 0.0", "w0 / 0.5")
    summary = diff_summary(long + "\n", new + "\n")
    line = f"- #1 from abc (1.0): idea | change: {summary} | result: ok 2.0 (+1)"
    (m,) = parse_memory(line)
    assert m.changes and m.changes[0][0].startswith("value = w0 / 0.0")
    assert m.changes[0][1].startswith("value = w0 / 0.5")
