"""An optimizer for a small character-level language model.

Entry point: ``make_optimizer(params) -> torch.optim.Optimizer``. ``params`` is the list of
the model's parameter tensors (a 2-layer transformer, d = 64: embeddings and weight
matrices are 2-D, biases and LayerNorm scales 1-D). The evaluator trains for a fixed number
of steps: it zeroes the gradients, runs a batch backwards, multiplies every param group's
``lr`` by its own schedule (warm-up, then cosine decay) and calls ``step()`` (without a
closure). The score is minus the validation loss. The optimizer may only update parameters
from their gradients and its own state.

Two parts: ``hyperparameters`` are the numbers (learning rate, betas, weight decay, which
tensors decay) and ``update_rule`` is the step itself, written out (AdamW) so it can be
changed: momentum, normalisation, sign or orthogonalised updates, per-shape rules.
"""

import math

import torch

# EVOLVE-BLOCK-START hyperparameters
# AdamW's usual defaults, not tuned for this model.
LR = 0.002
BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-8
WEIGHT_DECAY = 0.01  # decoupled, applied to matrices only
DECAY_VECTORS = False  # also decay 1-D tensors (biases, LayerNorm scales)


def param_groups(params):
    matrices = [p for p in params if p.ndim >= 2]
    vectors = [p for p in params if p.ndim < 2]
    return [
        {"params": matrices, "weight_decay": WEIGHT_DECAY},
        {"params": vectors, "weight_decay": WEIGHT_DECAY if DECAY_VECTORS else 0.0},
    ]


# EVOLVE-BLOCK-END


# EVOLVE-BLOCK-START update_rule
# Adam with decoupled weight decay (Loshchilov and Hutter, 2019), step by step.
class Evolved(torch.optim.Optimizer):
    def __init__(self, groups, lr, betas, eps):
        super().__init__(groups, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": 0.0})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["t"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["t"] += 1
                m, v, t = state["m"], state["v"], state["t"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                m_hat = m / (1 - beta1**t)
                v_hat = v / (1 - beta2**t)
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(m_hat / (v_hat.sqrt() + group["eps"]), alpha=-group["lr"])
        return None


# EVOLVE-BLOCK-END


def make_optimizer(params):
    assert math.isfinite(LR)
    return Evolved(param_groups(params), lr=LR, betas=(BETA1, BETA2), eps=EPS)
