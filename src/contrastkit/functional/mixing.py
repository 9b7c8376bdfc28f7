"""Feature-space mixing: harder positives by extrapolation, more or harder negatives by
interpolation. Shared by MoCHi, Feature Transformation and the Hallucinator (one formula each,
used by all three).

* :func:`extrapolate` — ``a + λ(a − b)``: FT's positive extrapolation (Zhu et al. 2021, §4.1,
  with its λ ∈ [1, 2] written as 1 + λ here) and the Hallucinator's asymmetric extrapolation
  (Wu et al. 2023, eq. 2).
* :func:`interpolate` — ``w·a + (1 − w)·b``: FT's negative interpolation, MoCHi's type-1 and
  type-2 mixtures (Kalantidis et al. 2020, eqs. 4–5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.errors import ContrastkitError


def extrapolate(a: Tensor, b: Tensor, amount: Tensor | float) -> Tensor:
    """``a + amount·(a − b) = (1 + amount)·a − amount·b``: move ``a`` away from ``b``."""
    return a + amount * (a - b)


def interpolate(a: Tensor, b: Tensor, weight: Tensor | float) -> Tensor:
    """``weight·a + (1 − weight)·b``: a point on the segment from ``b`` (weight 0) to ``a`` (1)."""
    return weight * a + (1 - weight) * b


def feature_transform(
    q: Tensor,
    k: Tensor,
    negatives: Tensor,
    amount: Tensor | float,
    mu: Tensor | float,
    order: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Feature Transformation (Zhu et al. 2021, §4.1–4.2): ``q̂ = λq + (1−λ)k``,
    ``k̂ = λk + (1−λ)q`` with ``λ = 1 + amount ∈ [1, 2]`` (positive extrapolation), and
    ``Q̂ = μ·Q + (1−μ)·Q[order]`` (negative interpolation with a permutation of the queue).
    Scalars or element-wise tensors; gradients reach ``q`` through both ``q̂`` and ``k̂``."""
    return (
        extrapolate(q, k, amount),
        extrapolate(k, q, amount),
        interpolate(negatives, negatives[order], mu),
    )


@torch.no_grad()
def hardest_negatives(queries: Tensor, negatives: Tensor, count: int) -> Tensor:
    """Indices ``[B, count]`` of each query's ``count`` most similar rows of ``negatives [K, D]``
    (by dot product of the given features; MoCHi ranks the current queue before enqueuing)."""
    if not 1 <= count <= len(negatives):
        raise ContrastkitError(
            f"MoCHi's hardest-negative count must lie in [1, {len(negatives)}] (the queue size), got {count}."
        )
    return (queries.float() @ negatives.float().T).topk(count, dim=1).indices


@torch.no_grad()
def mochi_negatives(
    queries: Tensor,
    negatives: Tensor,
    *,
    n_hardest: int,
    n_pairs: int,
    n_self: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """MoCHi's synthetic hard negatives (Kalantidis et al. 2020, §4), ``[B, n_pairs + n_self, D]``,
    unit-norm and without gradient.

    ``queries [B, D]`` and ``negatives [K, D]`` are unit-norm. For each query, from its
    ``n_hardest`` most similar negatives: ``n_pairs`` type-1 points ``α·n_i + (1−α)·n_j``,
    α ~ U(0, 1), and ``n_self`` type-2 points ``β·q + (1−β)·n_j``, β ~ U(0, 0.5) (the query
    always weighs less than the negative). Picks are uniform with replacement.
    """
    b, d = queries.shape
    dtype = torch.promote_types(negatives.dtype, torch.float32)  # mixtures in float32 or wider
    hard = negatives[hardest_negatives(queries, negatives, n_hardest)].to(dtype)  # [B, N, D]
    device = queries.device

    def pick(count: int) -> Tensor:
        index = torch.randint(n_hardest, (b, count), device=device, generator=generator)
        return hard.gather(1, index[..., None].expand(b, count, d))

    def uniform(count: int, high: float) -> Tensor:
        return high * torch.rand(b, count, 1, device=device, generator=generator, dtype=dtype)

    type1 = interpolate(pick(n_pairs), pick(n_pairs), uniform(n_pairs, 1.0))
    type2 = interpolate(queries.to(dtype)[:, None, :], pick(n_self), uniform(n_self, 0.5))
    return F.normalize(torch.cat([type1, type2], dim=1), dim=2, eps=1e-12)


def score_record(queries: Tensor, keys: Tensor, negatives: Tensor, temperature: float) -> Tensor:
    """The per-query score record of Zhu et al. 2021 (§3, their visualisation tool), ``[B, 5]``:
    ``[mean_n q·n, var_n q·n, q·k, mean_n exp(q·n/τ), exp(q·k/τ)]`` (population variance), on
    the features as given (after any transformation)."""
    with torch.no_grad():
        negative = queries.float() @ negatives.float().T
        positive = (queries.float() * keys.float()).sum(1)
        return torch.stack(
            [
                negative.mean(1),
                negative.var(1, unbiased=False),
                positive,
                torch.exp(negative / temperature).mean(1),
                torch.exp(positive / temperature),
            ],
            dim=1,
        )
