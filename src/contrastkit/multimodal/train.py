"""A plain PyTorch loop for two-tower methods: seeded batches of matched rows, AdamW with linear
warm-up and cosine decay, and the ``after_optimizer_step`` hook (CLIP's logit-scale clamp).

Two-tower runs are small here (a frozen or pre-trained tower, a few hundred steps), so this loop
stays outside Lightning; every loss is an engine call, so it runs unchanged under
``torch.distributed`` (candidates gathered across ranks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError


def batches(n_rows: int, batch_size: int, n_steps: int, seed: int) -> list[np.ndarray]:
    """``n_steps`` index batches: seeded permutations of the rows, epoch after epoch, without a
    short last batch (the losses' in-batch structure wants equal sizes)."""
    if batch_size < 2 or batch_size > n_rows:
        raise ContrastkitError(
            f"towers.batch_size must lie in [2, {n_rows}] (the training pairs), got {batch_size}."
        )
    rng = np.random.default_rng(seed)
    per_epoch = n_rows // batch_size
    out: list[np.ndarray] = []
    while len(out) < n_steps:
        order = rng.permutation(n_rows)
        out.extend(order[i * batch_size : (i + 1) * batch_size] for i in range(per_epoch))
    return out[:n_steps]


def warmup_cosine(step: int, n_steps: int, warmup: float) -> float:
    """Learning-rate factor: linear warm-up over ``warmup·n_steps`` steps, then cosine to 0."""
    warm = max(1, round(warmup * n_steps))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, n_steps - warm)))


def train_steps(
    model: nn.Module,
    make_batch: Callable[[np.ndarray], tuple[Any, Any]],
    n_rows: int,
    *,
    n_steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.01,
    warmup: float = 0.1,
    seed: int = 0,
) -> list[float]:
    """Train ``model.training_loss(*make_batch(indices), progress=...)`` for ``n_steps``; returns
    the loss of every step. A non-finite loss stops training with a clear error."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if n_steps and not parameters:
        raise ContrastkitError(
            "Nothing to train: every tower is frozen and there is no projection."
        )
    losses: list[float] = []
    if n_steps == 0:
        return losses
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, n_steps, warmup)
    )
    model.train()
    for step, rows in enumerate(batches(n_rows, batch_size, n_steps, seed)):
        loss = model.training_loss(*make_batch(rows), progress=step / n_steps)
        if not torch.isfinite(loss):
            raise ContrastkitError(
                f"The loss became {float(loss.detach())} at step {step}; lower towers.lr or the temperature."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        after_optimizer_step(model)
        losses.append(float(loss.detach()))
    return losses


def after_optimizer_step(model: nn.Module) -> None:
    """Call ``after_optimizer_step()`` on every submodule that defines it (e.g. a clamp)."""
    for module in model.modules():
        hook = getattr(module, "after_optimizer_step", None)
        if callable(hook) and module is not model:
            hook()


@torch.no_grad()
def encode(
    model: nn.Module,
    side: str,
    items: Sequence,
    prepare: Callable[[Sequence], Any],
    *,
    batch_size: int = 128,
) -> Tensor:
    """Eval-mode embeddings ``model.embed(side, ·)`` of ``items``, batch by batch, on the CPU."""
    was_training = model.training
    model.eval()
    try:
        parts = [
            model.embed(side, prepare(items[i : i + batch_size])).float().cpu()
            for i in range(0, len(items), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(parts)
