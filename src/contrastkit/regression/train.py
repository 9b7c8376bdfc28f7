"""Training loops for tables: a plain regressor, the same with ConR, and SupReMix pre-training.

Views of a table row are SCARF-style corruptions (Bahri et al. 2022, "SCARF", §2): each entry is
replaced, with probability ``rate``, by the same feature of another random row of the batch, then
Gaussian noise of scale ``noise`` is added (features are standardised).

Targets are standardised inside (``(y − mean) / std`` of the training targets), so the losses'
windows (ConR's ω, SupReMix's ε and δ) are in standard deviations of the target; predictions are
returned in the target's own units.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.eval.inputs import check_features
from contrastkit.regression.conr import ConRLoss
from contrastkit.regression.pairs import check_targets
from contrastkit.regression.supremix import supremix_loss

__all__ = ["MLPEncoder", "Regressor", "corrupt", "encode", "fit_regression", "fit_supremix"]


class MLPEncoder(nn.Sequential):
    """``Linear → BatchNorm → ReLU`` ×2 then ``Linear(hidden, out_dim)``: rows ``[n, d]`` →
    features ``[n, out_dim]``."""

    def __init__(self, in_dim: int, hidden_dim: int = 128, out_dim: int = 64) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
        self.out_dim = out_dim


class Regressor(nn.Module):
    """Encoder + linear head; ``forward(x) → (features, standardised prediction)``,
    :meth:`predict` in target units."""

    def __init__(self, encoder: nn.Module, feature_dim: int, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(feature_dim, 1)
        self.register_buffer("target_mean", torch.tensor(float(mean)))
        self.register_buffer("target_std", torch.tensor(float(std)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return h, self.head(h).squeeze(1)

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 4096) -> Tensor:
        was_training = self.training
        self.eval()
        out = torch.cat([self(x[i : i + batch_size])[1] for i in range(0, len(x), batch_size)])
        self.train(was_training)
        return out * self.target_std + self.target_mean


def corrupt(
    x: Tensor, rate: float = 0.3, noise: float = 0.1, generator: torch.Generator | None = None
) -> Tensor:
    """A SCARF view: entries replaced w.p. ``rate`` by another row's value, plus noise."""
    if not 0 <= rate <= 1 or noise < 0:
        raise ContrastkitError(f"Need 0 ≤ rate ≤ 1 and noise ≥ 0, got {rate} and {noise}.")
    n, d = x.shape
    replace = torch.rand(n, d, generator=generator) < rate
    donors = x[torch.randint(n, (n, d), generator=generator), torch.arange(d)]
    out = torch.where(replace, donors, x)
    return out + noise * torch.randn(n, d, generator=generator) if noise > 0 else out


@torch.no_grad()
def encode(encoder: nn.Module, x: Tensor, batch_size: int = 4096) -> Tensor:
    """Frozen features of ``x`` (eval mode)."""
    was_training = encoder.training
    encoder.eval()
    out = torch.cat([encoder(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    encoder.train(was_training)
    return out


def _check(x: Any, y: Any, epochs: int, batch_size: int) -> tuple[Tensor, Tensor]:
    x = check_features(x, "x").float()
    y = check_targets(y, "y", len(x)).float()
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ContrastkitError(f"{name} must be a positive integer, got {value!r}.")
    if batch_size < 2 or len(x) < 2:
        raise ContrastkitError("Training needs batches of at least 2 rows (BatchNorm, pairs).")
    return x, y


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """A shuffled epoch; a last batch of one row joins the previous one (BatchNorm)."""
    order = torch.randperm(n, generator=generator)
    cuts = list(range(0, n, batch_size))
    if n - cuts[-1] < 2 and len(cuts) > 1:
        cuts.pop()
    return [order[a:b] for a, b in zip(cuts, [*cuts[1:], n], strict=True)]


def fit_regression(
    x: Any,
    y: Any,
    *,
    conr: ConRLoss | None = None,
    encoder: nn.Module | None = None,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    rate: float = 0.3,
    noise: float = 0.1,
    seed: int = 0,
    log: Callable[[int, dict[str, float]], None] | None = None,
) -> Regressor:
    """L1 regression on a corrupted view of each batch; with ``conr``, plus ``β · L_ConR`` on the
    encoder features of two more views with their detached predictions (ConR's training loop:
    three augmented copies, ``agedb-dir/train.py``). AdamW; the final epoch is returned."""
    x, y = _check(x, y, epochs, batch_size)
    mean, std = float(y.mean()), float(y.std().clamp_min(1e-12))
    y_std = (y - mean) / std
    encoder = encoder if encoder is not None else MLPEncoder(x.shape[1])
    model = Regressor(encoder, encoder.out_dim, mean, std)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    for epoch in range(epochs):
        sums: dict[str, float] = {}
        batches = _batches(len(x), batch_size, generator)
        for index in batches:
            xb, yb = x[index], y_std[index]
            _, pred = model(corrupt(xb, rate, noise, generator))
            loss = F.l1_loss(pred, yb)
            parts = {"l1": loss.detach()}
            if conr is not None:
                views = torch.cat([corrupt(xb, rate, noise, generator) for _ in range(2)])
                features, view_pred = model(views)
                reg = conr(features, yb.repeat(2), view_pred.detach())
                loss = loss + reg
                parts["conr"] = reg.detach()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + float(value) / len(batches)
        if log is not None:
            log(epoch, sums)
    return model


def fit_supremix(
    x: Any,
    y: Any,
    *,
    encoder: nn.Module | None = None,
    projection_dim: int = 32,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    rate: float = 0.3,
    noise: float = 0.1,
    seed: int = 0,
    log: Callable[[int, dict[str, float]], None] | None = None,
    **loss_options: Any,
) -> nn.Module:
    """SupReMix pre-training (two corrupted views, projection head ``Linear → ReLU → Linear``);
    returns the encoder (to be probed frozen). ``loss_options`` go to
    :func:`~contrastkit.regression.supremix.supremix_loss` (on standardised targets)."""
    x, y = _check(x, y, epochs, batch_size)
    y_std = (y - y.mean()) / y.std().clamp_min(1e-12)
    encoder = encoder if encoder is not None else MLPEncoder(x.shape[1])
    head = nn.Sequential(
        nn.Linear(encoder.out_dim, encoder.out_dim),
        nn.ReLU(inplace=True),
        nn.Linear(encoder.out_dim, projection_dim),
    )
    generator = torch.Generator().manual_seed(seed)
    params = [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    encoder.train()
    for epoch in range(epochs):
        total = 0.0
        batches = _batches(len(x), batch_size, generator)
        for index in batches:
            xb = x[index]
            views = torch.cat([corrupt(xb, rate, noise, generator) for _ in range(2)])
            loss = supremix_loss(
                head(encoder(views)), y_std[index].repeat(2), generator=generator, **loss_options
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) / len(batches)
        if log is not None and math.isfinite(total):
            log(epoch, {"supremix": total})
    return encoder
