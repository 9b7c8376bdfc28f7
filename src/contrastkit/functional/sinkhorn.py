"""Sinkhorn–Knopp codes of SwAV (Caron et al., NeurIPS 2020, §3.1 "Online clustering"; official
``distributed_sinkhorn`` of ``main_swav.py``), run in the log domain (instance-dense.md §8(b)).

The official algorithm on ``Q = exp(S/ε)ᵀ ∈ R^{K×B′}``::

    Q /= sum(Q)                                     (all-reduced)
    repeat n:  Q /= rowsum(Q) (all-reduced); Q /= K
               Q /= colsum(Q);               Q /= B′_g
    Q *= B′_g;  codes = Qᵀ

Here ``log Q`` is normalised instead, every sum being a ``torch.logsumexp`` (which subtracts the
maximum). Under ``torch.distributed`` the per-prototype sums span every rank's rows, so a rank's
codes equal those of the concatenated batch on one process.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from contrastkit.errors import ContrastkitError
from contrastkit.functional.distributed import gather, world


def _global_logsumexp(x: Tensor, dim: int) -> Tensor:
    """``log Σ exp(x)`` along ``dim`` over the rows of every rank (dim 0 is the rank-split dim)."""
    local = torch.logsumexp(x, dim=dim)
    size = world()[1]
    if size == 1:
        return local
    parts = gather(local.reshape(1, -1))  # [W, ...]: each rank's partial log-sum
    return torch.logsumexp(parts, dim=0).reshape(local.shape)


@torch.no_grad()
def sinkhorn(scores: Tensor, epsilon: float = 0.05, iterations: int = 3) -> Tensor:
    """Equipartitioned soft assignments ``[B, K]`` of ``scores [B, K]`` (rows: samples of this
    rank, columns: prototypes); each row sums to 1 and, over all ranks, each prototype receives
    ``B_g / K`` of the mass when converged. Float32 (or wider), no gradient.

    Args:
        scores: sample–prototype scores ``z·Cᵀ``.
        epsilon: entropic regularisation ``ε``; smaller gives harder codes.
        iterations: Sinkhorn iterations (≥ 1).
    """
    if scores.ndim != 2 or scores.shape[0] < 1 or scores.shape[1] < 1:
        raise ContrastkitError(
            f"sinkhorn expects scores of shape [B, K] with B, K ≥ 1, got {tuple(scores.shape)}."
        )
    if not epsilon > 0:
        raise ContrastkitError(f"sinkhorn needs epsilon > 0, got {epsilon}.")
    if iterations < 1:
        raise ContrastkitError(
            f"sinkhorn needs at least 1 iteration to give codes summing to 1, got {iterations}."
        )
    n_rows, n_prototypes = scores.shape
    n_rows_global = n_rows * world()[1]  # B′_g: every rank assigns the same number of rows
    log_k, log_b = math.log(n_prototypes), math.log(n_rows_global)

    log_q = scores.to(torch.promote_types(scores.dtype, torch.float32)) / epsilon  # log Qᵀ
    log_q = log_q - _global_logsumexp(log_q.reshape(-1), dim=0)  # Q /= sum(Q)
    for _ in range(iterations):
        log_q = log_q - _global_logsumexp(log_q, dim=0) - log_k  # rows of Q: per prototype
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - log_b  # columns: per sample
    return torch.exp(log_q + log_b)  # Q *= B′_g
