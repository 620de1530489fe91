"""A noisy, slow evaluation in miniature: a training run whose score depends on its seed.

The program's TRUE is its real score; each seed adds a small deterministic noise, and
LUCK (seed -> offset) stands in for the noise that happens to favour a program on one
seed: a program lucky on seed 0 looks best after one evaluation and is found out on
seeds 1 and 2. The "training" reports a loss of LOSS / (step + 1) every 10 steps.
"""

import importlib.util
import time


def evaluate(program_path, *, seed=None, report=None):
    spec = importlib.util.spec_from_file_location("program", program_path)
    program = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(program)
    seed = 0 if seed is None else seed
    for i in range(int(program.STEPS)):
        if report is not None:
            report(10 * i, {"loss": float(program.LOSS) / (i + 1), "lr": 0.1})
        time.sleep(float(program.SLEEP))
    noise = 0.01 * (seed % 3 - 1)
    luck = float(dict(program.LUCK).get(seed, 0.0))
    return {"score": float(program.TRUE) + noise + luck, "metrics": {"seed": float(seed)}}
