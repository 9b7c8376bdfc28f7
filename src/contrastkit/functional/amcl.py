"""AMCL: adaptive multi-head contrastive learning (Wang, Koniusz, Gedeon, Zheng; ECCV 2024).

Every pair similarity of head ``c`` is divided by its own temperature ``τ = φ_c([z; z′])`` and
the temperatures are regularised by ``Ω`` (official ``adaptive_temperature.py``). Paper Table 2,
SimCLR/MoCo ("NT-Xent") row, per anchor ``i``:

    ℓ‡_i = Σ_c [ −s⁺/τ⁺ + s*/τ* + β·Ω(τ⁺) − β·Ω(τ*) ]

with ``s*`` the hardest negative's similarity, chosen by raw cosine similarity (not ``s/τ``), and
``τ*`` its pair temperature; the InfoNCE (LGP/CAN) row takes the maximum over the negatives and
the positive. The SimSiam and Barlow-Twins rows are not implemented: Table 2 does not say which
vectors feed ``τ^{c∓}`` and ``h`` (SimSiam), nor how a ``2d′``-input ``φ`` gives a temperature
per cross-correlation entry (Barlow Twins).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.errors import ContrastkitError

Form = Literal["ntxent", "infonce"]
FORMS = ("ntxent", "infonce")


class AMCLTerms(NamedTuple):
    """:func:`amcl_loss`'s result: the loss (``[N]`` per anchor with ``reduction="none"``) and, per anchor and head (``[N, C]``), the positive
    temperature, the hardest candidate's temperature and its index (``M`` = the positive)."""

    loss: Tensor
    tau_pos: Tensor
    tau_hard: Tensor
    hardest: Tensor


def temperature_regulariser(tau: Tensor, dim: int) -> Tensor:
    """AMCL's ``Ω(τ) = (d′/2)·log τ + 1/τ`` (official ``adaptive_temperature.py``; the
    large-concentration vMF negative log-normaliser), elementwise; ``d′`` = head output dim."""
    return (dim / 2) * torch.log(tau) + 1 / tau


def amcl_objective(
    pos_sim: Tensor,
    pos_tau: Tensor,
    hard_sim: Tensor,
    hard_tau: Tensor,
    *,
    beta: float = 0.1,
    dim: int,
) -> Tensor:
    """Table 2's NT-Xent/InfoNCE row per (anchor, head), elementwise:
    ``−s⁺/τ⁺ + s*/τ* + β·Ω(τ⁺) − β·Ω(τ*)``."""
    return (
        -pos_sim / pos_tau
        + hard_sim / hard_tau
        + beta * (temperature_regulariser(pos_tau, dim) - temperature_regulariser(hard_tau, dim))
    )


def head_similarities(anchors: Tensor, candidates: Tensor) -> Tensor:
    """Cosine similarity per head: ``anchors [N, C, d]`` × ``candidates [M, C, d]`` → ``[N, C, M]``."""
    a, c = (F.normalize(_at_least_float32(x), dim=-1, eps=1e-12) for x in (anchors, candidates))
    return torch.einsum("icd,jcd->icj", a, c)


def amcl_loss(
    anchors: Tensor,
    positives: Tensor,
    candidates: Tensor,
    negatives: Tensor,
    temperature: Callable[[Tensor, Tensor], Tensor],
    *,
    form: Form = "ntxent",
    beta: float = 0.1,
    reduction: Literal["mean", "none"] = "mean",
) -> AMCLTerms:
    """AMCL's Table-2 loss: ``mean_i Σ_c ℓ‡_ic`` (mean over anchors, sum over heads).

    Args:
        anchors: ``[N, C, d′]`` head outputs of the anchors (raw; cosine is taken here).
        positives: ``[N, C, d′]`` each anchor's positive.
        candidates: ``[M, C, d′]`` the pool the hardest negative is drawn from.
        negatives: ``[N, M]`` boolean, which candidates are anchor ``i``'s negatives (at least one
            per anchor).
        temperature: ``(z [N, C, d′], z′ [N, C, d′]) → τ [N, C]`` on raw head outputs, e.g. a
            :class:`~contrastkit.nn.multihead.TemperatureNet`; it is evaluated only on the positive
            pair and the hardest pair.
        form: ``"ntxent"`` (max over the negatives) or ``"infonce"`` (max over the negatives and
            the positive).
        beta: weight β of the regulariser Ω.
        reduction: ``"mean"`` over anchors, or ``"none"`` for ``[N]`` (each summed over heads).
    """
    if form not in FORMS:
        raise ContrastkitError(f"AMCL form must be 'ntxent' or 'infonce', got {form!r}.")
    if (
        anchors.ndim != 3
        or positives.shape != anchors.shape
        or candidates.ndim != 3
        or candidates.shape[1:] != anchors.shape[1:]
    ):
        raise ContrastkitError(
            f"amcl_loss needs anchors and positives [N, C, d′] and candidates [M, C, d′], got "
            f"{tuple(anchors.shape)}, {tuple(positives.shape)} and {tuple(candidates.shape)}."
        )
    if negatives.shape != (len(anchors), len(candidates)) or negatives.dtype != torch.bool:
        raise ContrastkitError(
            f"negatives must be a boolean mask [{len(anchors)}, {len(candidates)}], got "
            f"{negatives.dtype} of shape {tuple(negatives.shape)}."
        )
    n_candidates, heads = candidates.shape[:2]
    pos_sim = (
        F.normalize(_at_least_float32(anchors), dim=-1, eps=1e-12)
        * F.normalize(_at_least_float32(positives), dim=-1, eps=1e-12)
    ).sum(-1)  # [N, C]
    similarity = head_similarities(anchors, candidates).masked_fill(
        ~negatives[:, None, :], float("-inf")
    )  # [N, C, M]
    if form == "infonce":
        similarity = torch.cat([similarity, pos_sim[..., None]], dim=-1)
    hardest = similarity.detach().argmax(-1)  # [N, C], by raw similarity
    hard_sim = similarity.gather(-1, hardest[..., None])[..., 0]
    hard_vectors = candidates[
        hardest.clamp(max=n_candidates - 1), torch.arange(heads, device=candidates.device)[None, :]
    ]
    if form == "infonce":
        hard_vectors = torch.where((hardest == n_candidates)[..., None], positives, hard_vectors)
    tau_pos = temperature(anchors, positives)
    tau_hard = temperature(anchors, hard_vectors)
    per_head = amcl_objective(
        pos_sim, tau_pos, hard_sim, tau_hard, beta=beta, dim=anchors.shape[-1]
    )
    per_anchor = per_head.sum(1)
    if reduction == "none":
        return AMCLTerms(per_anchor, tau_pos, tau_hard, hardest)
    if reduction != "mean":
        raise ContrastkitError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
    return AMCLTerms(per_anchor.mean(), tau_pos, tau_hard, hardest)


def _at_least_float32(x: Tensor) -> Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))
