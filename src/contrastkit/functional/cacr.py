"""CACR: contrastive attraction and contrastive repulsion (Zheng et al., TMLR 2023, arXiv:2105.03746).

A query ``z`` puts a conditional distribution on its positives that favours **distant** ones and
one on its negatives that favours **close** ones, then takes the expected cost under each:

    π⁺_m = softmax_m( t⁺·d(z, z⁺_m) )       L_CA =  Σ_m π⁺_m · α·c(z, z⁺_m)
    π⁻_k = softmax_k(−t⁻·d(z, z⁻_k) )       L_CR = −Σ_k π⁻_k · β·c(z, z⁻_k)

with ``d = c = ||·||²`` on L2-normalised embeddings (official ``small_scale_experiments/losses``).
``t⁺``/``t⁻`` multiply the distance (inverse temperatures). :func:`cacr_momentum_loss` is the
MoCo-v3-style ImageNet form (official ``imagenet_pretraining/moco/builder.py``), where the
temperature ``T`` divides.

Every softmax / log-sum-exp runs in float32 or wider with torch's functions.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.errors import ContrastkitError

RepulsionCost = Literal["euclidean", "rbf"]
MomentumCost = Literal["rbf", "euclidean"]
Reduction = Literal["mean", "none"]


def contrastive_attraction(
    query: Tensor,
    positives: Tensor,
    *,
    alpha: float = 1.0,
    tau_pos: float = 1.0,
    weighted: bool = True,
    detach_weights: bool = False,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """Contrastive attraction ``L_CA`` (CACR's CA term; official ``our_loss1``).

    Args:
        query: ``[N, D]`` queries.
        positives: ``[N, M, D]``: the ``M`` positives of each query.
        alpha: cost scale α; the cost is ``α·||z − z⁺||²``.
        tau_pos: t⁺, multiplies the distance inside the softmax; 0 gives the plain mean.
        weighted: ``False`` is the official ablation ``without_w1`` (uniform weights).
        detach_weights: treat ``π⁺`` as constants (the official small-scale code does not).
        normalize: L2-normalise the inputs first (``eps = 1e-12``).
        reduction: ``"mean"`` over queries or ``"none"`` for ``[N]``.
    """
    if query.ndim != 2 or positives.ndim != 3 or positives.shape[::2] != query.shape:
        raise ContrastkitError(
            f"contrastive_attraction needs query [N, D] and positives [N, M, D], got "
            f"{tuple(query.shape)} and {tuple(positives.shape)}."
        )
    if positives.shape[1] < 1:
        raise ContrastkitError("contrastive_attraction needs at least one positive per query.")
    query, positives = _prepare(query, normalize), _prepare(positives, normalize)
    distance = (query[:, None, :] - positives).pow(2).sum(-1)  # [N, M]
    if weighted:
        weights = torch.softmax(tau_pos * distance, dim=1)
        if detach_weights:
            weights = weights.detach()
        per_query = alpha * (weights * distance).sum(1)
    else:
        per_query = alpha * distance.mean(1)
    return _reduce(per_query, reduction)


def contrastive_repulsion(
    anchors: Tensor,
    candidates: Tensor,
    *,
    self_offset: int | None = 0,
    beta: float = 1.0,
    tau_neg: float = 1.0,
    weighted: bool = True,
    detach_weights: bool = False,
    cost: RepulsionCost = "euclidean",
    rbf_t: float = 2.0,
    debiased: bool = False,
    tau_plus: float = 0.1,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """Contrastive repulsion ``L_CR`` (CACR's CR term; official ``forward_negative_loss``).

    Anchor ``i``'s negatives are all candidates but ``self_offset + i`` (its own sample in the
    other view, excluded as in the official code; ``None``: no exclusion). Weights are
    ``π⁻ = softmax_j(−t⁻·||a_i − c_j||²)``.

    Args:
        beta: cost scale β.
        tau_neg: t⁻, multiplies the distance; 0 gives the plain mean, ∞ the closest negative.
        weighted: ``False`` is the official ablation ``without_w2`` (uniform weights).
        detach_weights: treat ``π⁻`` as constants (the official small-scale code does not).
        cost: ``"euclidean"``: per anchor ``−β Σ_j π⁻_j ||a_i − c_j||²``, averaged over anchors.
            ``"rbf"``: the official commented-out RBF variant,
            ``β·log mean_i Σ_j π⁻_ij·exp(−t·||a_i − c_j||²)`` (the log is outside the batch
            mean); computed in log space.
        rbf_t: the RBF kernel's ``t`` (2.0 in the official comment).
        debiased: the official ``with_debiased`` option (Euclidean, weighted only):
            ``(−τ⁺·||a_i − c_{self}||² + L_CR,i) / (1 − τ⁺)``; needs ``self_offset``.
        tau_plus: the debiasing class prior τ⁺.
        reduction: ``"mean"``; ``"none"`` gives ``[N]``: per-anchor losses for ``"euclidean"``,
            and for ``"rbf"`` each anchor's ``log Σ_j π⁻_ij·exp(−t·d_ij)`` (the loss is β times
            the log of the mean of their exponentials).
    """
    if anchors.ndim != 2 or candidates.ndim != 2 or anchors.shape[1] != candidates.shape[1]:
        raise ContrastkitError(
            f"contrastive_repulsion needs anchors [N, D] and candidates [M, D], got "
            f"{tuple(anchors.shape)} and {tuple(candidates.shape)}."
        )
    if cost not in ("euclidean", "rbf"):
        raise ContrastkitError(f"CACR repulsion cost must be 'euclidean' or 'rbf', got {cost!r}.")
    if self_offset is not None and not 0 <= self_offset <= len(candidates) - len(anchors):
        raise ContrastkitError(
            f"self_offset={self_offset} puts anchors outside the {len(candidates)} candidates; "
            "pass the index of anchor 0's own sample among the candidates."
        )
    n_negatives = len(candidates) - (0 if self_offset is None else 1)
    if n_negatives < 1:
        raise ContrastkitError("CACR repulsion needs at least two samples in the batch.")
    if debiased and (self_offset is None or cost != "euclidean" or not weighted):
        raise ContrastkitError(
            "debiased repulsion is defined for the weighted Euclidean cost with each anchor's "
            "own sample among the candidates; set self_offset and cost='euclidean', weighted=True."
        )
    anchors, candidates = _prepare(anchors, normalize), _prepare(candidates, normalize)
    distance = _squared_distances(anchors, candidates)  # [N, M]
    excluded = _excluded(len(anchors), len(candidates), self_offset, distance.device)
    logits = (-tau_neg * distance).masked_fill(excluded, float("-inf"))
    if cost == "euclidean":
        negative_distance = distance.masked_fill(excluded, 0.0)
        if weighted:
            weights = torch.softmax(logits, dim=1)
            if detach_weights:
                weights = weights.detach()
            per_anchor = -beta * (weights * negative_distance).sum(1)
        else:
            per_anchor = -beta * negative_distance.sum(1) / n_negatives
        if debiased:
            positive = distance[excluded]  # [N]: ||a_i − c_{self_offset+i}||²
            per_anchor = (-tau_plus * positive + per_anchor) / (1 - tau_plus)
        return _reduce(per_anchor, reduction)
    log_kernel = (-rbf_t * distance).masked_fill(excluded, float("-inf"))
    if weighted:
        log_weights = torch.log_softmax(logits, dim=1)
        if detach_weights:
            log_weights = log_weights.detach()
        log_mean = torch.logsumexp(log_weights + log_kernel, dim=1)
    else:
        log_mean = torch.logsumexp(log_kernel, dim=1) - math.log(n_negatives)
    if reduction == "none":
        return log_mean
    if reduction != "mean":
        raise ContrastkitError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
    return beta * (torch.logsumexp(log_mean, dim=0) - math.log(len(log_mean)))


def cacr_momentum_loss(
    queries: Tensor,
    keys: Tensor,
    *,
    all_keys: Tensor | None = None,
    key_offset: int = 0,
    temperature: float = 1.0,
    cost: MomentumCost = "rbf",
    detach_weights: bool = True,
    normalize: bool = True,
) -> Tensor:
    """CACR's ImageNet (MoCo-v3-style) loss for one key view (official ``cacr_rbfloss`` /
    ``cacr_euclideanloss``).

    Args:
        queries: ``[Q, B, D]``: the ``Q`` online query views of the batch (all views but the key's).
        keys: ``[B, D]``: this process's momentum keys of the key view (no gradient expected).
        all_keys: ``[M, D]`` keys of every process (default: ``keys``); query ``b``'s positive
            is ``all_keys[key_offset + b]``.
        temperature: T, divides (MoCo-v3's ``moco-t``).
        cost: ``"rbf"``: ``Σ_v mean_b p_vb · CE(q_vb·Kᵀ/T, own key) · 2T``, i.e. squared-Euclidean
            attraction plus log-mean-RBF repulsion (``−2q·k = ||q − k||² − 2``). ``"euclidean"``:
            cost ``1 − q·k``, ``Σ_v Σ_b p_vb·(c(q,k⁺) − Σ_j π_j c(q,k_j))`` with
            ``π = softmax_j(−c/T)`` over the other keys; a **sum** over the batch, as in the code.
        detach_weights: treat the positive weights ``p = softmax_v(||q_v − k||²/T)`` and the
            Euclidean ``π`` as constants (official: both are computed without gradient).
        normalize: L2-normalise queries and keys first (the official code does).
    """
    if queries.ndim != 3 or keys.ndim != 2 or queries.shape[1:] != keys.shape:
        raise ContrastkitError(
            f"cacr_momentum_loss needs queries [Q, B, D] and keys [B, D], got "
            f"{tuple(queries.shape)} and {tuple(keys.shape)}."
        )
    if len(queries) < 1:
        raise ContrastkitError("cacr_momentum_loss needs at least one query view per key view.")
    if not (isinstance(temperature, int | float) and temperature > 0):
        raise ContrastkitError(f"temperature must be a positive number, got {temperature!r}.")
    if cost not in ("rbf", "euclidean"):
        raise ContrastkitError(f"CACR momentum cost must be 'rbf' or 'euclidean', got {cost!r}.")
    all_keys = keys if all_keys is None else all_keys
    if all_keys.ndim != 2 or all_keys.shape[1] != keys.shape[1]:
        raise ContrastkitError(
            f"all_keys must be [M, {keys.shape[1]}], got {tuple(all_keys.shape)}."
        )
    if not 0 <= key_offset <= len(all_keys) - len(keys):
        raise ContrastkitError(
            f"key_offset={key_offset} puts the positives outside the {len(all_keys)} keys; pass "
            "the index of this process's first key among all keys."
        )
    queries, keys, all_keys = (_prepare(x, normalize) for x in (queries, keys, all_keys))
    with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_weights):
        weights = torch.softmax((queries - keys).pow(2).sum(-1) / temperature, dim=0)  # [Q, B]
    similarity = torch.einsum("qbd,md->qbm", queries, all_keys)  # [Q, B, M]
    positive = _excluded(len(keys), len(all_keys), key_offset, similarity.device)  # [B, M]
    target = (key_offset + torch.arange(len(keys), device=similarity.device)).expand(
        len(queries), -1
    )
    if cost == "rbf":
        logits = similarity / temperature
        cross_entropy = (
            torch.logsumexp(logits, dim=-1) - logits.gather(-1, target[..., None])[..., 0]
        )
        return (weights * cross_entropy).mean(1).sum() * (2 * temperature)
    if len(all_keys) < 2:
        raise ContrastkitError("The Euclidean CACR cost needs at least two keys in the batch.")
    attraction = 1 - similarity.gather(-1, target[..., None])[..., 0]  # [Q, B]
    negative_cost = (similarity - 1).masked_fill(positive, 0.0)  # −(1 − q·k_j)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_weights):
        repulsion_weights = torch.softmax(
            (negative_cost / temperature).masked_fill(positive, float("-inf")), dim=-1
        )
    repulsion = (repulsion_weights * negative_cost).sum(-1)
    return ((attraction + repulsion) * weights).sum()


def _prepare(x: Tensor, normalize: bool) -> Tensor:
    """At least float32 (softmax / log-sum-exp precision), optionally L2-normalised."""
    if not x.dtype.is_floating_point:
        raise ContrastkitError(f"CACR embeddings must be floating point, got {x.dtype}.")
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    return F.normalize(x, dim=-1, eps=1e-12) if normalize else x


def _squared_distances(x: Tensor, y: Tensor) -> Tensor:
    """``||x_i − y_j||²`` as ``|x|² + |y|² − 2x·y`` (no ``[N, M, D]`` intermediate), clamped at 0."""
    squared = x.pow(2).sum(1)[:, None] + y.pow(2).sum(1)[None, :] - 2 * x @ y.T
    return squared.clamp(min=0)


def _excluded(n: int, m: int, offset: int | None, device: torch.device) -> Tensor:
    """Boolean ``[n, m]``: True at column ``offset + i`` of row ``i`` (nothing when ``None``)."""
    if offset is None:
        return torch.zeros(n, m, dtype=torch.bool, device=device)
    rows = torch.arange(n, device=device)
    return (rows[:, None] + offset) == torch.arange(m, device=device)[None, :]


def _reduce(per_item: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "mean":
        return per_item.mean()
    if reduction == "none":
        return per_item
    raise ContrastkitError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
