"""The fixed model, batches, schedule and loss of ``optimizer_search``.

A 2-layer pre-norm transformer over characters (d = 64, 4 heads, context 64, untied output
layer: 112,577 parameters for the 65 characters of tinyshakespeare), trained for ``steps``
steps on batches of ``BATCH`` windows drawn from the training split in an order fixed by
the seed. The learning rate of every parameter group is multiplied by the evaluator's
schedule (linear warm-up over ``WARMUP`` of the steps, then cosine decay to ``FINAL_LR``
of the start), whatever optimizer the program builds. Everything here belongs to the
evaluator: the program sees only parameters and their gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

D_MODEL = 64
HEADS = 4
LAYERS = 2
CONTEXT = 64
BATCH = 32
WARMUP = 0.05  # share of the steps
FINAL_LR = 0.1  # the schedule's last multiplier
VALID_BATCH = 256  # windows per forward pass of the validation loss (memory, not result)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(D_MODEL)
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
        self.proj = nn.Linear(D_MODEL, D_MODEL)
        self.ln2 = nn.LayerNorm(D_MODEL)
        self.fc = nn.Linear(D_MODEL, 4 * D_MODEL)
        self.out = nn.Linear(4 * D_MODEL, D_MODEL)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, HEADS, d // HEADS).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class CharLM(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, D_MODEL)
        self.pos = nn.Embedding(CONTEXT, D_MODEL)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def build_model(vocab: int, seed: int) -> CharLM:
    """The model with the initial weights of ``seed`` (PyTorch's default initialisation)."""
    torch.manual_seed(seed)
    return CharLM(vocab)


def schedule(step: int, steps: int) -> float:
    """The learning-rate multiplier at ``step`` (0-based) of ``steps``."""
    warm = max(1, round(WARMUP * steps))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    return FINAL_LR + (1.0 - FINAL_LR) * 0.5 * (1.0 + math.cos(math.pi * progress))


def batch_starts(n_tokens: int, steps: int, seed: int) -> np.ndarray:
    """``(steps, BATCH)`` window starts in the training split: the batch order of ``seed``."""
    rng = np.random.default_rng([seed, 1])
    return rng.integers(0, n_tokens - CONTEXT - 1, size=(steps, BATCH))


def train(
    model: CharLM,
    optimizer: torch.optim.Optimizer,
    tokens: np.ndarray,
    steps: int,
    seed: int,
    *,
    every: int = 100,
    on_loss: Callable[[int, float], None] | None = None,
) -> list[tuple[int, float]]:
    """Train for ``steps`` steps; every ``every`` steps (and at the last) the mean training
    loss of the steps since the previous report is recorded (and passed to ``on_loss``).
    The optimizer's ``step`` is called without a closure: it sees gradients, never data."""
    data = torch.from_numpy(tokens.astype(np.int64))
    base = [float(g["lr"]) for g in optimizer.param_groups]
    offsets = torch.arange(CONTEXT + 1)
    curve: list[tuple[int, float]] = []
    total, count = 0.0, 0
    for step, starts in enumerate(batch_starts(len(tokens), steps, seed)):
        window = data[torch.from_numpy(starts)[:, None] + offsets]
        logits = model(window[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1))
        model.zero_grad(set_to_none=True)
        loss.backward()
        factor = schedule(step, steps)
        for group, lr in zip(optimizer.param_groups, base, strict=True):
            group["lr"] = lr * factor
        optimizer.step()
        total, count = total + loss.item(), count + 1
        if (step + 1) % every == 0 or step + 1 == steps:
            curve.append((step + 1, total / count))
            if on_loss is not None:
                on_loss(step + 1, total / count)
            total, count = 0.0, 0
    return curve


@torch.no_grad()
def validation_loss(model: CharLM, tokens: np.ndarray) -> float:
    """Mean cross-entropy (nats per character) over the whole split, cut into consecutive
    windows of ``CONTEXT`` characters (each predicts its next characters; the tail that does
    not fill a window is dropped)."""
    data = torch.from_numpy(tokens.astype(np.int64))
    n = (len(data) - 1) // CONTEXT
    x = data[: n * CONTEXT].view(n, CONTEXT)
    y = data[1 : n * CONTEXT + 1].view(n, CONTEXT)
    model.eval()
    total = 0.0
    for i in range(0, n, VALID_BATCH):
        logits = model(x[i : i + VALID_BATCH])
        total += float(
            F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                y[i : i + VALID_BATCH].reshape(-1),
                reduction="sum",
            )
        )
    return total / (n * CONTEXT)
