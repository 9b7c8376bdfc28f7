"""Geometry of an embedding space on the unit sphere: alignment, uniformity (Wang & Isola 2020),
cross-set uniformity (Fahim et al. 2024) and tolerance (Wang & Liu 2021). Pure functions; usable
as metrics and as training losses."""

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


def cross_uniformity(x: Tensor, y: Tensor, t: float = 2.0, exclude_matched: bool = False) -> Tensor:
    """``log mean_{i,j} exp(−t ||x_i − y_j||²)`` over pairs across two sets (Fahim et al. 2024,
    "It's Not a Modality Gap", cross-modal uniformity; spec labels-multimodal-other.md §5b), as a
    log-sum-exp; ``exclude_matched`` leaves out the matched pairs ``i = j`` (paired rows, the
    paper's ``i ≠ j``). Differentiable; inputs used as given (normalise them first).

    With ``x = y`` and ``exclude_matched`` it equals :func:`uniformity` (each unordered pair is
    counted twice, which leaves the mean unchanged).
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 1:
        raise ContrastkitError(
            f"cross_uniformity needs two sets [N, D] and [M, D] of one dimension, got "
            f"{tuple(x.shape)} and {tuple(y.shape)}."
        )
    if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t < math.inf:
        raise ContrastkitError(f"cross_uniformity's t must be a finite number > 0, got {t!r}.")
    if exclude_matched and (len(x) != len(y) or len(x) < 2):
        raise ContrastkitError(
            f"exclude_matched needs paired sets with the same number (≥ 2) of rows, got "
            f"{len(x)} and {len(y)}; pass exclude_matched=False for unpaired sets."
        )
    # squared distances by the expansion torch.cdist itself uses for large inputs, but without
    # its square root, so the gradient stays finite where two points coincide
    squared = (x.pow(2).sum(1)[:, None] + y.pow(2).sum(1)[None, :] - 2 * x @ y.T).clamp(min=0)
    logits = -t * squared
    count = logits.numel()
    if exclude_matched:
        matched = torch.eye(len(x), dtype=torch.bool, device=x.device)
        logits, count = logits.masked_fill(matched, float("-inf")), count - len(x)
    return torch.logsumexp(logits.reshape(-1), dim=0) - math.log(count)


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
