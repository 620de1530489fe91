"""Toy task: four constants in two independent blocks; the evaluator scores how close they are.

Entry point: ``solve() -> dict`` with the numbers ``a``, ``b``, ``c`` and ``d``.
"""

# EVOLVE-BLOCK-START alpha
A = 1.0
C = 0.0
# EVOLVE-BLOCK-END

# EVOLVE-BLOCK-START beta
B = 1.0
D = 0.5
# EVOLVE-BLOCK-END


def solve():
    return {"a": A, "b": B, "c": C, "d": D}
