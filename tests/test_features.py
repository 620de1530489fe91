"""Code-derived descriptors."""

from __future__ import annotations

import math

from aster_nb.features import CODE_FEATURE_NAMES, code_features, describe
from aster_nb.program import EvalResult, Status

COMPUTED = '''
import math

def pack(n):
    """Place n circles on a ring."""
    out = []
    for i in range(n):
        angle = 2 * math.pi * i / n
        out.append((0.5 + 0.3 * math.cos(angle), 0.5 + 0.3 * math.sin(angle)))
    return out
'''

HARD_CODED = """
def pack(n):
    return [(0.1, 0.1), (0.1, 0.3), (0.1, 0.5), (0.3, 0.1), (0.3, 0.3), (0.3, 0.5),
            (0.5, 0.1), (0.5, 0.3), (0.5, 0.5), (0.7, 0.1), (0.7, 0.3), (0.7, 0.5)][:n]
"""


def test_deterministic_and_two_dimensional() -> None:
    f = code_features(COMPUTED)
    assert f == code_features(COMPUTED) == code_features(str(COMPUTED))
    assert len(f) == len(CODE_FEATURE_NAMES) == 2
    assert all(isinstance(x, float) and math.isfinite(x) for x in f)


def test_structurally_different_code_differs() -> None:
    computed, table = code_features(COMPUTED), code_features(HARD_CODED)
    assert table[1] > 3 * computed[1]  # hard-coded numbers dominate the table's tokens
    bigger = code_features(COMPUTED + COMPUTED.replace("def pack", "def pack2"))
    assert bigger[0] > computed[0] + 0.5  # twice the code: log size up by ~log(2)
    assert code_features("x = 1\n") != code_features("for i in range(3):\n    print(i)\n")


def test_syntax_errors_do_not_raise() -> None:
    for bad in ["def f(:\n    return 1\n", "x = (1, 2,\n", '"""never closed', "\x00", "if x\n"]:
        size, numeric = code_features(bad)
        assert math.isfinite(size) and size >= 0.0
        assert 0.0 <= numeric <= 1.0
    # Broken code of about the same length lands near its parseable version on size.
    ok = code_features(COMPUTED)
    broken = code_features(COMPUTED.replace("def pack(n):", "def pack(n:"))
    assert abs(broken[0] - ok[0]) < 1.0
    assert abs(broken[1] - ok[1]) < 0.01  # all tokens are read: only the ")" is missing


def test_empty_code() -> None:
    size, numeric = code_features("")
    assert numeric == 0.0 and size >= 0.0


def test_describe_prefers_the_evaluator() -> None:
    with_feats = EvalResult(status=Status.OK, score=1.0, features=(3, 4.5))
    assert describe(COMPUTED, with_feats) == (3.0, 4.5)
    without = EvalResult(status=Status.OK, score=1.0)
    assert describe(COMPUTED, without) == code_features(COMPUTED)
