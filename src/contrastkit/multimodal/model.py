"""Two-tower methods as one composition: towers → projections → a paired objective.

- CLIP (Radford et al. 2021) and ConVIRT (Zhang et al. 2022): ``objective(a, b)`` over matched
  rows, towers shared or separate, each with its own projection.
- CoCoSoDa (Shi et al. 2023): one shared encoder ``f_q`` for code and queries, two momentum copies
  (one per modality) that encode soft-augmented inputs, four queues inside the objective.
- SimCSE (Gao et al. 2021) / WhitenedCSE (Zhuo et al. 2023): one tower, ``m`` dropout passes of
  the same sentences are the views (:class:`SentenceContrast`).

Towers take whatever their side's batch is (:class:`~contrastkit.nn.text.Tokens` for text, a
float tensor for image features); the towers, not this module, know their inputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.nn.momentum import MomentumEncoder


def projection(in_dim: int, out_dim: int, kind: str) -> nn.Module:
    """A tower's projection into the joint space: ``"linear"`` (CLIP), ``"mlp"`` (one hidden
    ReLU layer, ConVIRT's g_v/g_u) or ``"none"`` (the pooled output itself; CoCoSoDa)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim, bias=False)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out_dim))
    if kind == "none":
        return nn.Identity()
    raise ContrastkitError(f"towers.projection must be 'linear', 'mlp' or 'none', got {kind!r}.")


class DualEncoder(nn.Module):
    """Two towers and a paired objective.

    Args:
        tower_a, tower_b: encoders with an ``out_dim`` attribute; pass the same module twice to
            share weights (CoCoSoDa's single encoder for code and text).
        objective: called as ``objective(a, b)`` on projected embeddings of matched rows, or, with
            ``momentum``, as ``objective(a_q, b_q, a_k, b_k)`` (CoCoSoDa).
        dim: joint-space dimension (ignored by ``projection="none"``).
        projection: see :func:`projection`; each side gets its own.
        momentum: EMA momentum of one key copy per side (tower + projection) whose embeddings of
            the augmented inputs are the keys; ``None``: no keys.
        augment_a, augment_b: callables making the key encoders' soft-augmented inputs.
    """

    def __init__(
        self,
        tower_a: nn.Module,
        tower_b: nn.Module,
        objective: nn.Module,
        *,
        dim: int = 128,
        projection_kind: str = "linear",
        momentum: float | None = None,
        augment_a: Any = None,
        augment_b: Any = None,
    ) -> None:
        super().__init__()
        self.tower_a, self.tower_b, self.objective = tower_a, tower_b, objective
        self.head_a = projection(tower_a.out_dim, dim, projection_kind)
        self.head_b = projection(tower_b.out_dim, dim, projection_kind)
        self.key_a = self.key_b = None
        if momentum is not None:
            self.key_a = MomentumEncoder(self._online("a"), momentum)
            self.key_b = MomentumEncoder(self._online("b"), momentum)
        self.augment_a, self.augment_b = augment_a, augment_b

    def _online(self, side: str) -> nn.Sequential:
        return nn.Sequential(getattr(self, f"tower_{side}"), getattr(self, f"head_{side}"))

    def embed(self, side: str, batch: Any) -> Tensor:
        """Projected (un-normalised) embeddings of one side's batch."""
        if side not in ("a", "b"):
            raise ContrastkitError(f"side must be 'a' or 'b', got {side!r}.")
        return self._online(side)(batch)

    def training_loss(self, batch_a: Any, batch_b: Any, *, progress: float = 0.0) -> Tensor:
        a, b = self.embed("a", batch_a), self.embed("b", batch_b)
        if self.key_a is None:
            return self.objective(a, b)
        for side, key in (("a", self.key_a), ("b", self.key_b)):
            key.update(self._online(side), progress)
        a_k = self.key_a(self._augmented(self.augment_a, batch_a))
        b_k = self.key_b(self._augmented(self.augment_b, batch_b))
        return self.objective(a, b, a_k, b_k)

    @staticmethod
    def _augmented(augment: Any, batch: Any) -> Any:
        return batch if augment is None else augment(batch)


class SentenceContrast(nn.Module):
    """SimCSE / WhitenedCSE: ``num_pos`` passes of the same sentences through one tower in train
    mode (independent dropout masks) are the views; the objective takes them as ``[m, B, D]``.
    Sentence embeddings are the tower's pooled output (the objective's MLP is train-only)."""

    def __init__(self, tower: nn.Module, objective: nn.Module, num_pos: int = 2) -> None:
        super().__init__()
        if num_pos < 2:
            raise ContrastkitError(f"num_pos must be at least 2 dropout views, got {num_pos}.")
        self.tower, self.objective, self.num_pos = tower, objective, num_pos

    def embed(self, side: str, batch: Any) -> Tensor:
        return self.tower(batch)

    def training_loss(self, batch_a: Any, batch_b: Any = None, *, progress: float = 0.0) -> Tensor:
        return self.objective(torch.stack([self.tower(batch_a) for _ in range(self.num_pos)]))
