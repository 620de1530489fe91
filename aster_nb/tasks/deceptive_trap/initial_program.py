"""Three positive constants, each scored on a deceptive landscape (see README.md).

``solve() -> {"a": A, "b": B, "c": C}``.
"""

# EVOLVE-BLOCK-START constants
A = 1.0
B = 1.0
C = 1.0
# EVOLVE-BLOCK-END


def solve():
    return {"a": A, "b": B, "c": C}
