"""MIL pooling over variable-size bags stored flat (instances ``[n, F]`` + ``bag_index [n]``).

* :class:`MeanPool`, :class:`MaxPool` — the symmetric pooling operators (Ilse et al. 2018, eq. 2).
* :class:`AttentionPool` — attention-based MIL pooling (Ilse, Tomczak & Welling 2018,
  "Attention-based Deep Multiple Instance Learning", eq. 8; ``gated=True`` is eq. 9):
  ``a_k = softmax_k(wᵀ(tanh(V h_k) ⊙ sigm(U h_k)))``, ``z = Σ_k a_k h_k``, the softmax taken
  within each bag.

Every pool returns ``(pooled [n_bags, F], weights [n])`` with the instance weights of each bag
summing to one (max pooling: one-hot on the arg-max per feature is not a single weight, so it
returns the share of features each instance wins).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.mil.bags import bag_sizes

__all__ = ["POOLING", "AttentionPool", "MaxPool", "MeanPool", "build_pooling", "segment_softmax"]


def _check(h: Tensor, bag_index: Tensor, n_bags: int) -> Tensor:
    if h.ndim != 2 or bag_index.ndim != 1 or len(h) != len(bag_index):
        raise ContrastkitError(
            f"Pooling needs instance features [n, F] and bag_index [n], got {tuple(h.shape)} "
            f"and {tuple(bag_index.shape)}."
        )
    return bag_sizes(bag_index, n_bags)


def segment_softmax(scores: Tensor, bag_index: Tensor, n_bags: int) -> Tensor:
    """Softmax of ``scores [n]`` within each bag (max-subtracted per bag)."""
    top = scores.new_full((n_bags,), float("-inf")).scatter_reduce(
        0, bag_index, scores.detach(), "amax"
    )
    e = torch.exp(scores - top[bag_index])
    return e / e.new_zeros(n_bags).index_add(0, bag_index, e)[bag_index]


class MeanPool(nn.Module):
    """``z_b = mean_k h_k``."""

    def forward(self, h: Tensor, bag_index: Tensor, n_bags: int) -> tuple[Tensor, Tensor]:
        sizes = _check(h, bag_index, n_bags).to(h.dtype)
        pooled = h.new_zeros(n_bags, h.shape[1]).index_add(0, bag_index, h) / sizes[:, None]
        return pooled, (1 / sizes)[bag_index]


class MaxPool(nn.Module):
    """``z_b = max_k h_k`` per feature."""

    def forward(self, h: Tensor, bag_index: Tensor, n_bags: int) -> tuple[Tensor, Tensor]:
        _check(h, bag_index, n_bags)
        index = bag_index[:, None].expand_as(h)
        pooled = h.new_full((n_bags, h.shape[1]), float("-inf")).scatter_reduce(0, index, h, "amax")
        wins = (h == pooled[bag_index]).to(h.dtype).mean(1)
        return pooled, wins / wins.new_zeros(n_bags).index_add(0, bag_index, wins)[bag_index]


class AttentionPool(nn.Module):
    """Attention MIL pooling (Ilse et al. 2018, eq. 8; gated: eq. 9)."""

    def __init__(self, in_dim: int, hidden_dim: int = 128, gated: bool = True) -> None:
        super().__init__()
        self.V = nn.Linear(in_dim, hidden_dim)
        self.U = nn.Linear(in_dim, hidden_dim) if gated else None
        self.w = nn.Linear(hidden_dim, 1)

    def scores(self, h: Tensor) -> Tensor:
        """Unnormalised attention ``wᵀ(tanh(V h) ⊙ sigm(U h))`` per instance, ``[n]``."""
        a = torch.tanh(self.V(h))
        if self.U is not None:
            a = a * torch.sigmoid(self.U(h))
        return self.w(a).squeeze(1)

    def forward(self, h: Tensor, bag_index: Tensor, n_bags: int) -> tuple[Tensor, Tensor]:
        _check(h, bag_index, n_bags)
        weights = segment_softmax(self.scores(h), bag_index, n_bags)
        pooled = h.new_zeros(n_bags, h.shape[1]).index_add(0, bag_index, weights[:, None] * h)
        return pooled, weights


POOLING = ("attention", "mean", "max")


def build_pooling(name: str, in_dim: int, hidden_dim: int = 128) -> nn.Module:
    """``"attention"`` (gated), ``"mean"`` or ``"max"``."""
    if name == "attention":
        return AttentionPool(in_dim, hidden_dim, gated=True)
    if name == "mean":
        return MeanPool()
    if name == "max":
        return MaxPool()
    raise ContrastkitError(f"Unknown MIL pooling {name!r}; use one of {', '.join(POOLING)}.")
