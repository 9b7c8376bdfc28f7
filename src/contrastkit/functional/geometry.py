"""Geometry of an embedding space on the unit sphere: alignment, uniformity (Wang & Isola 2020)
and tolerance (Wang & Liu 2021). Pure functions; usable as metrics and as training losses."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from contrastkit.errors import ContrastkitError


def alignment(x: Tensor, y: Tensor, alpha: float = 2.0) -> Tensor:
    """``E ||x_b − y_b||^α`` over paired rows (Wang & Isola 2020, eq. 4); inputs used as given."""
    if x.shape != y.shape or x.ndim != 2:
        raise ContrastkitError(
            f"alignment needs paired rows of one shape [B, D], got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    return (x - y).norm(dim=1).pow(alpha).mean()


def uniformity(x: Tensor, t: float = 2.0) -> Tensor:
    """``log E exp(−t ||x_i − x_j||²)`` over the B(B−1)/2 distinct pairs (Wang & Isola 2020, eq. 5),
    as a log-sum-exp; 0 when all points coincide, lower is more uniform."""
    if x.ndim != 2 or len(x) < 2:
        raise ContrastkitError(
            f"uniformity needs at least 2 rows [B, D], got shape {tuple(x.shape)}."
        )
    squared = torch.pdist(x).pow(2)
    return torch.logsumexp(-t * squared, dim=0) - math.log(len(squared))


def tolerance(
    features: Tensor, labels: Tensor, mode: Literal["conditional", "literal"] = "conditional"
) -> Tensor:
    """Mean similarity ``f(x)ᵀf(y)`` of same-class pairs ``x ≠ y`` (Wang & Liu 2021, §4.2).

    ``"conditional"`` averages over same-class pairs only; ``"literal"`` is the paper's expectation
    over all pairs with the indicator inside (scales with the class prior).
    """
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ContrastkitError("tolerance needs features [N, D] and labels [N].")
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    similarity = features @ features.T
    if mode == "conditional":
        if not same.any():
            raise ContrastkitError("tolerance needs at least one class with two samples.")
        return similarity[same].mean()
    if mode == "literal":
        off_diagonal = len(features) * (len(features) - 1)
        return similarity.masked_fill(~same, 0.0).sum() / off_diagonal
    raise ContrastkitError(f"tolerance mode must be 'conditional' or 'literal', got {mode!r}.")
