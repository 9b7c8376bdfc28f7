"""Hydra's arbitrary positive pairs (Wu et al. 2024, "Rethinking Positive Pairs in Contrastive
Learning", arXiv 2410.18200 v1, renamed SimLAP in v2; official code ``erow/hydra``).

For anchor ``i`` of class ``y_i``, paired with class ``y'_i`` through a gate ``g_i ∈ (0, 1)^D``
(``moco/filter.py::Filter``; instance-dense.md §6 b):

    q̄_i = norm(g_i ⊙ q_i),   k̄_{i,n} = norm(g_i ⊙ k_n),   l_{i,n} = s · q̄_i · k̄_{i,n}
    Pos_{i,n} = [y_n = y'_i],  Excl_{i,n} = [y_n = y_i] ∨ [y_n = y'_i],  Neg = ¬Excl
    L = (1 / Σ Pos) Σ_{(i,n) ∈ Pos} [ log(e^{l_{i,n}} + Σ_{m ∈ Neg_i} e^{l_{i,m}}) − l_{i,n} ]

(``multipos_ce_loss``): pull toward samples of class ``y'``, push away every other class, and
leave classes ``y`` and ``y'`` out of the denominator. The normalisation is by the total number of
positive pairs, not a per-anchor mean.

**Why this is not the InfoNCE engine** (:func:`~contrastkit.functional.info_nce`): (1) each anchor
renormalises every candidate under its own gate, so the logits are not one anchor matrix times one
candidate matrix; (2) each positive pair has its own denominator (itself plus the negatives; the
other positives and the anchor's own class are left out), which a per-anchor log-sum-exp over a
shared denominator set cannot express. With an open gate (``g ≡ 1``), ``y' = y`` and one positive
per anchor the two coincide (tested); the instance term of :class:`~contrastkit.objectives.
HydraLoss` is the engine itself.

The gated cosine never builds the ``[N, M, D]`` tensor of gated keys: with ``‖g_i ⊙ k_n‖² =
Σ_d g²_{id} k²_{nd}``, ``q̄_i · k̄_{i,n} = Σ_d g²_{id} q_{id} k_{nd} / (‖g_i ⊙ q_i‖ ‖g_i ⊙ k_n‖)``
is two ``[N, D] × [D, M]`` products (O(N·M) memory, like the engine's dense path).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from contrastkit.errors import ContrastkitError
from contrastkit.functional.distributed import gather, gather_with_grad, world

__all__ = [
    "RELATEDNESS",
    "SAMPLERS",
    "bernoulli_entropy",
    "class_pair_masks",
    "distributed_mean",
    "gate_statistics",
    "gated_cosine",
    "hydra_loss",
    "multi_positive_loss",
    "relatedness",
    "sample_partners",
]

Sampler = Literal["arbitrary", "identical", "distinct"]
#: how the paired class ``y'`` of each anchor is drawn
SAMPLERS: tuple[str, ...] = ("arbitrary", "identical", "distinct")
#: statistics of the class-relationship read-out
RELATEDNESS: tuple[str, ...] = ("active", "l1", "cosine")


def gated_cosine(
    anchors: Tensor, candidates: Tensor, gates: Tensor | None = None, eps: float = 1e-12
) -> Tensor:
    """``[N, M]`` cosines of ``g_i ⊙ q_i`` and ``g_i ⊙ k_n`` (each anchor's gate on every candidate,
    then renormalised; ``F.normalize``'s ``max(‖x‖, eps)``); ``gates=None`` is the open gate."""
    _check_2d(anchors, "anchors")
    _check_2d(candidates, "candidates")
    if anchors.shape[1] != candidates.shape[1]:
        raise ContrastkitError(
            f"anchors and candidates must share one dimension, got {anchors.shape[1]} and "
            f"{candidates.shape[1]}."
        )
    dtype = torch.promote_types(torch.promote_types(anchors.dtype, candidates.dtype), torch.float32)
    anchors, candidates = anchors.to(dtype), candidates.to(dtype)
    if gates is None:
        return F.normalize(anchors, dim=1, eps=eps) @ F.normalize(candidates, dim=1, eps=eps).T
    if gates.shape != anchors.shape:
        raise ContrastkitError(
            f"gates must have one row per anchor, shape {tuple(anchors.shape)}, got "
            f"{tuple(gates.shape)}."
        )
    gates = gates.to(dtype)
    squared = gates.square()
    dots = (anchors * squared) @ candidates.T
    anchor_norm = (anchors * gates).norm(dim=1).clamp_min(eps)
    candidate_norm = (squared @ candidates.square().T).clamp_min(eps * eps).sqrt()
    return dots / (anchor_norm[:, None] * candidate_norm)


def class_pair_masks(
    labels: Tensor, partners: Tensor, candidate_labels: Tensor
) -> tuple[Tensor, Tensor]:
    """``(positive, excluded)`` ``[N, M]`` masks from class ids: positives are the candidates of
    the paired class ``y'_i``; candidates of class ``y_i`` or ``y'_i`` are excluded from the
    negatives (so ``positive ⊆ excluded``)."""
    positive = partners[:, None] == candidate_labels[None, :]
    return positive, positive | (labels[:, None] == candidate_labels[None, :])


def multi_positive_loss(
    logits: Tensor, positive: Tensor, excluded: Tensor, *, distributed: bool = False
) -> Tensor:
    """Hydra's ``multipos_ce_loss``: ``Σ_{Pos} [logaddexp(l_in, lse_{m ∈ Neg_i} l_im) − l_in]``
    over the total number of positive pairs (0 when there are none). Each positive competes with
    the negatives only (log-sum-exp in float32, no row-mean shift needed). ``distributed``: the
    count is all-reduced, so averaging the ranks' losses (DDP) gives the whole batch's loss."""
    if not (logits.shape == positive.shape == excluded.shape):
        raise ContrastkitError(
            f"logits and masks must have one shape, got {tuple(logits.shape)}, "
            f"{tuple(positive.shape)} and {tuple(excluded.shape)}."
        )
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    negatives = torch.logsumexp(logits.masked_fill(excluded, float("-inf")), dim=1, keepdim=True)
    per_pair = torch.logaddexp(logits, negatives) - logits
    total = per_pair.masked_fill(~positive, 0.0).sum()
    return distributed_mean(total, positive.sum(), distributed)


def distributed_mean(total: Tensor, count: Tensor, distributed: bool) -> Tensor:
    """``total / count`` (``count`` at least 1); under ``distributed`` the count is summed over
    ranks and the result scaled by the world size, so the mean of the ranks' values is
    ``Σ totals / Σ counts`` (what one process computes on the whole batch)."""
    count = count.to(total.dtype)
    if distributed:
        size = world()[1]
        count = count.detach().clone()
        dist.all_reduce(count)
        total = total * size
    return total / count.clamp(min=1)


def hydra_loss(
    anchors: Tensor,
    candidates: Tensor,
    gates: Tensor | None,
    labels: Tensor,
    partners: Tensor,
    candidate_labels: Tensor | None = None,
    *,
    scale: float | Tensor = 10.0,
    distributed: bool | None = None,
) -> Tensor:
    """Hydra's disparate loss ``L_dis`` (``MoCo.disparate_loss``) of anchors ``q [N, D]`` (one
    view) against candidates ``k [M, D]`` (another view, or momentum keys).

    Args:
        gates: ``[N, D]`` per-anchor gates ``g(y_i, y'_i)``; ``None`` is the open gate (g ≡ 1).
        labels: ``[N]`` anchor classes ``y``; ``partners``: ``[N]`` paired classes ``y'``.
        candidate_labels: ``[M]`` candidate classes (default: ``labels``, for views of the same
            samples).
        scale: logit scale ``s`` (``1/τ`` in SimLAP, a learnable ``exp(ς)`` in Hydra-MoCo).
        distributed: local anchors × candidates of every rank (gathered with gradient, labels
            without), normalised by the global number of positive pairs (the official code
            normalises per rank); ``None``: whenever a process group of more than one rank exists.
    """
    if distributed is None:
        distributed = world()[1] > 1
    candidate_labels = labels if candidate_labels is None else candidate_labels
    for name, ids, n in (
        ("labels", labels, len(anchors)),
        ("partners", partners, len(anchors)),
        ("candidate_labels", candidate_labels, len(candidates)),
    ):
        if ids.ndim != 1 or len(ids) != n or ids.dtype.is_floating_point:
            raise ContrastkitError(
                f"{name} must be {n} integer class ids, got {ids.dtype} of shape {tuple(ids.shape)}."
            )
    if distributed:
        candidates, candidate_labels = gather_with_grad(candidates), gather(candidate_labels)
    logits = scale * gated_cosine(anchors, candidates, gates)
    positive, excluded = class_pair_masks(labels, partners, candidate_labels)
    return multi_positive_loss(logits, positive, excluded, distributed=distributed)


def sample_partners(
    labels: Tensor,
    sampler: Sampler = "arbitrary",
    num_classes: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The paired class ``y'`` of each anchor: ``"arbitrary"`` = the labels of a random
    permutation of the batch (some pairs are same-class), ``"identical"`` = ``y`` (Hydra's
    ``L_cls``), ``"distinct"`` = a uniformly random class other than ``y`` among ``num_classes``
    (its class may be absent from the batch: such anchors have no positive)."""
    if sampler == "identical":
        return labels
    if sampler == "arbitrary":
        order = torch.randperm(len(labels), generator=generator, device=labels.device)
        return labels[order]
    if sampler == "distinct":
        if num_classes is None or num_classes < 2:
            raise ContrastkitError(
                f"The 'distinct' sampler needs num_classes ≥ 2, got {num_classes!r}."
            )
        shift = torch.randint(1, num_classes, labels.shape, generator=generator)
        return (labels + shift.to(labels.device)) % num_classes
    raise ContrastkitError(f"Unknown pair sampler {sampler!r}; use one of {', '.join(SAMPLERS)}.")


def bernoulli_entropy(gates: Tensor) -> Tensor:
    """Element-wise entropy (nats) of Bernoulli variables with probabilities ``gates``."""
    p = gates.clamp(0.0, 1.0)
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))


def gate_statistics(gates: Tensor, threshold: float = 0.5) -> dict[str, Tensor]:
    """Logged gate statistics (``BasicGate.statistics``): ``activation`` = mean of ``Σ_d g_d``,
    ``entropy`` = mean Bernoulli entropy, ``open`` = fraction of gates above ``threshold``."""
    gates = gates.detach().float()
    return {
        "activation": gates.sum(-1).mean(),
        "entropy": bernoulli_entropy(gates).mean(),
        "open": (gates > threshold).float().mean(),
    }


def relatedness(gates: Tensor, statistic: str = "active", threshold: float = 0.5) -> Tensor:
    """Class × class relatedness read off the gates (which statistic the paper uses is
    UNCONFIRMED; instance-dense.md §6 b):

    * ``"active"``: fraction of open dimensions of ``g(a, b)``, ``mean_d 1[g_d > threshold]``;
    * ``"l1"``: ``‖g(a, b)‖₁ / D``;
    * ``"cosine"``: cosine between the single-class gates ``g(a)`` and ``g(b)``.

    ``gates`` are ``[C, C, D]`` pair gates for ``"active"``/``"l1"`` and ``[C, D]`` single-class
    gates for ``"cosine"``; returns ``[C, C]``.
    """
    if statistic not in RELATEDNESS:
        raise ContrastkitError(
            f"Unknown relatedness statistic {statistic!r}; use one of {', '.join(RELATEDNESS)}."
        )
    if statistic == "cosine":
        if gates.ndim != 2:
            raise ContrastkitError("The 'cosine' read-out needs single-class gates [C, D].")
        unit = F.normalize(gates.float(), dim=1, eps=1e-12)
        return unit @ unit.T
    if gates.ndim != 3 or gates.shape[0] != gates.shape[1]:
        raise ContrastkitError(
            f"The {statistic!r} read-out needs pair gates [C, C, D], got {tuple(gates.shape)}."
        )
    if statistic == "active":
        return (gates > threshold).float().mean(-1)
    return gates.float().mean(-1)


def _check_2d(x: Tensor, name: str) -> None:
    if x.ndim != 2 or not x.dtype.is_floating_point:
        raise ContrastkitError(
            f"{name} must be a 2-D float tensor [rows, dim], got {x.dtype} of shape {tuple(x.shape)}."
        )
