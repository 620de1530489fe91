# EVOLVE-BLOCK-START knobs
TRUE = 1.0
LUCK = {}
LOSS = 1.0
STEPS = 8
# EVOLVE-BLOCK-END
SLEEP = 0.0  # seconds per step: outside the block, so only tests make a run slow
