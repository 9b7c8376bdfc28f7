"""Differentiable sorting networks (Petersen et al., ICML 2021 and ICLR 2022; ``diffsort``) and
the group-ordering loss of GroCo (Shvetsova et al., ICCV 2023; official
``learning_by_sorting/losses/groco.py``; instance-dense.md §7(b)).

An odd-even transposition network with Cauchy comparators ``α = 0.5 + arctan(β·(b − a))/π``
relaxes sorting to a doubly stochastic ``P [B, n, n]`` with ``P[b, i, j]`` the probability that
input ``i`` lands at ascending rank ``j`` (``sort(x) ≈ x @ P``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffsort import DiffSortNet
from torch import Tensor

from contrastkit.errors import ContrastkitError

_SORTERS: dict[tuple[int, float, str], DiffSortNet] = {}


def sorting_network(n: int, steepness: float, device: torch.device | str = "cpu") -> DiffSortNet:
    """The odd-even, Cauchy ``DiffSortNet`` of size ``n`` and steepness ``β`` on ``device``,
    built once and cached (its constant comparator matrices live on that device)."""
    if n < 2:
        raise ContrastkitError(f"A sorting network needs at least 2 inputs, got {n}.")
    if not steepness > 0:
        raise ContrastkitError(f"The sorting steepness must be > 0, got {steepness}.")
    device = torch.device(device)
    key = (int(n), float(steepness), str(device))
    if key not in _SORTERS:
        _SORTERS[key] = DiffSortNet(
            "odd_even", n, device=device, steepness=steepness, distribution="cauchy"
        )
    return _SORTERS[key]


def soft_sort(x: Tensor, steepness: float = 1.0) -> tuple[Tensor, Tensor]:
    """Relaxed ascending sort of ``x [B, n]`` along dim 1: ``(sorted [B, n], P [B, n, n])`` with
    ``P[b, i, j]`` the probability that input ``i`` lands at rank ``j``; float32 or wider."""
    if x.ndim != 2:
        raise ContrastkitError(f"soft_sort expects a [B, n] matrix, got {tuple(x.shape)}.")
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    with torch.autocast(x.device.type, enabled=False):  # the network's matmuls stay in float32
        return sorting_network(x.shape[1], steepness, x.device)(x)


def sorting_bce_terms(
    negatives: Tensor, positives: Tensor, steepness: float = 1.0
) -> tuple[Tensor, Tensor]:
    """The two BCE terms of GroCo (Shvetsova et al. 2023, §3; instance-dense.md §7(b) steps 3–6):
    with ``P`` the soft permutation of ``s = [sort(negatives), sort(positives)]`` (``k`` + ``m``
    similarities per row), ``(BCE(Σ_{j≥k} P[:, i, j], 1 − t), BCE(Σ_{j<k} P[:, i, j], t))`` with ``t_i = [i < k]``,
    each a mean over all ``B·(k+m)`` entries, the rank masses clipped to ``[0, 1]``."""
    if negatives.ndim != 2 or positives.ndim != 2 or len(negatives) != len(positives):
        raise ContrastkitError(
            f"GroCo expects negatives [B, k] and positives [B, m] of one batch, got "
            f"{tuple(negatives.shape)} and {tuple(positives.shape)}."
        )
    k, m = negatives.shape[1], positives.shape[1]
    if k < 1 or m < 1:
        raise ContrastkitError(
            f"GroCo needs at least one negative and one positive per anchor, got {k} and {m}."
        )
    # pre-ordering: the target permutation becomes the identity, so only group membership counts
    s = torch.cat([negatives.sort(dim=1).values, positives.sort(dim=1).values], dim=1)
    _, perm = soft_sort(s, steepness)
    negative_mass = perm[:, :, :k].sum(dim=2).clamp(0, 1)  # ρ: mass in the bottom k ranks
    positive_mass = perm[:, :, k:].sum(dim=2).clamp(0, 1)
    target = torch.zeros_like(negative_mass)
    target[:, :k] = 1
    with torch.autocast(perm.device.type, enabled=False):  # BCE refuses CUDA autocast
        return (
            F.binary_cross_entropy(positive_mass, 1 - target),
            F.binary_cross_entropy(negative_mass, target),
        )


def groco_loss(negatives: Tensor, positives: Tensor, steepness: float = 1.0) -> Tensor:
    """GroCo's sorting loss for ``negatives [B, k]`` and ``positives [B, m]`` similarities: the
    mean of :func:`sorting_bce_terms`. For ``k = m = 1`` it is
    ``−log(0.5 + arctan(β·(s_pos − s_neg))/π)``."""
    positive_term, negative_term = sorting_bce_terms(negatives, positives, steepness)
    return (positive_term + negative_term) / 2
