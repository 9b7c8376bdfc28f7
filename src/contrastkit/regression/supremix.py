"""SupReMix: supervised contrastive regression with mixtures as hard pairs (Wu, Xu et al. 2023,
"Mixup Your Own Pairs", arXiv 2309.16633; no code released — the weights below follow the
abstract and are marked as choices).

On unit embeddings ``z [N, D]`` with real targets ``y [N]`` and a tie tolerance ``ε``, anchor
``i`` has real positives ``P_i = {j ≠ i : |y_i − y_j| ≤ ε}`` and negatives ``N_i`` (the rest), and
two kinds of synthetic candidates built from live embeddings (gradients reach both endpoints):

* **hard positives** (anchor-exclusive mixtures): for negatives ``y_j < y_i < y_k``,
  ``m⁺ = λ z_j + (1 − λ) z_k`` with ``λ = (y_k − y_i)/(y_k − y_j)``, so the mixed label
  ``λ y_j + (1 − λ) y_k`` equals ``y_i``;
* **hard negatives** (anchor-inclusive mixtures): for ``j ∈ N_i``, ``m⁻ = λ z_i + (1 − λ) z_j``
  with ``λ = clip(1 − δ/|y_i − y_j|, 0, λ_max)`` by default (mixed label one resolution step
  ``δ`` from ``y_i``; any ``λ(d)`` can be passed).

Mixtures are re-normalised to the sphere (``renormalize=True``). The loss is SupCon's ``L_out``
over the enlarged sets (``denominator="supcon"``):
``ℓ_i = −(1/|P̃_i|) Σ_{p∈P̃_i} [s_ip − lse_{q∈P̃_i∪Ñ_i} s_iq]``, ``s = z·c/τ``, averaged over
anchors with at least one positive; ``"per_positive"`` puts each positive alone against the
negatives (``lse`` over ``{p} ∪ Ñ_i``).

Hard negatives alone are the engine's ``anchor_negatives``; per-anchor *positives* are not an
option of :func:`~contrastkit.functional.info_nce`, so the loss is written out here (dense, one
``logsumexp``). With no mixtures it equals the engine with :class:`TargetPairs` (tested).
Mixing is O(|N_i|²) per anchor, so by default each anchor samples ``max_pos_mix`` bracketing
pairs and ``max_neg_mix`` negatives uniformly (with replacement); ``None`` enumerates all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional.mixing import interpolate
from contrastkit.objectives.context import StepContext
from contrastkit.regression.pairs import TargetPairs, check_targets

__all__ = ["Mixtures", "SupReMixLoss", "supremix_loss", "supremix_mixtures"]

LambdaFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Mixtures:
    """Per-anchor mixtures, padded: ``positives [N, P, D]`` with ``positive_valid [N, P]``,
    their endpoints ``positive_pairs [N, P, 2]`` (j, k) and ``positive_lambda [N, P]``;
    ``negatives [N, Q, D]``, ``negative_valid``, ``negative_index [N, Q]`` (j) and
    ``negative_lambda [N, Q]`` (weight of the anchor)."""

    positives: Tensor
    positive_valid: Tensor
    positive_pairs: Tensor
    positive_lambda: Tensor
    negatives: Tensor
    negative_valid: Tensor
    negative_index: Tensor
    negative_lambda: Tensor


def _pack(anchor: Tensor, columns: list[Tensor], n: int) -> tuple[list[Tensor], Tensor]:
    """Scatter entries ``(anchor[e], columns[...][e])`` into ``[n, P, ...]`` rows, P = the
    largest count; returns the packed columns and the validity mask."""
    order = torch.sort(anchor, stable=True).indices
    anchor = anchor[order]
    counts = torch.bincount(anchor, minlength=n)
    width = int(counts.max()) if len(anchor) else 0
    rank = torch.arange(len(anchor), device=anchor.device) - (counts.cumsum(0) - counts)[anchor]
    valid = torch.zeros(n, width, dtype=torch.bool, device=anchor.device)
    valid[anchor, rank] = True
    packed = []
    for column in columns:
        out = column.new_zeros((n, width, *column.shape[1:]))
        out[anchor, rank] = column[order]
        packed.append(out)
    return packed, valid


def _draw(count: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """``[N, k]`` uniform integers in ``[0, count_i)`` (0 where ``count_i = 0``)."""
    u = torch.rand(len(count), k, generator=generator, device=count.device)
    return (u * count[:, None]).long().clamp(max=(count - 1).clamp(min=0)[:, None])


def default_negative_lambda(delta: float, lambda_max: float) -> LambdaFn:
    """``λ(d) = clip(1 − δ/d, 0, λ_max)``: the anchor-inclusive mixture's label stays at least
    one resolution step ``δ`` from the anchor's (spec default; UNCONFIRMED in the paper)."""
    return lambda d: (1 - delta / d).clamp(0.0, lambda_max)


def supremix_mixtures(
    z: Tensor,
    targets: Tensor,
    *,
    tolerance: float = 0.0,
    max_pos_mix: int | None = 16,
    max_neg_mix: int | None = 16,
    negative_lambda: LambdaFn | None = None,
    delta: float = 1.0,
    lambda_max: float = 0.9,
    renormalize: bool = True,
    generator: torch.Generator | None = None,
) -> Mixtures:
    """Hard positives and hard negatives of every anchor of unit ``z [N, D]`` (see module doc)."""
    y = check_targets(targets, "targets", len(z)).to(z.device)
    n = len(z)
    lam_fn = negative_lambda or default_negative_lambda(delta, lambda_max)
    order = torch.argsort(y)
    sorted_y = y[order]
    below = torch.searchsorted(sorted_y, y - tolerance, right=False)  # y_j < y_i − ε
    above_start = torch.searchsorted(sorted_y, y + tolerance, right=True)  # y_k > y_i + ε
    n_above = n - above_start
    anchors = torch.arange(n, device=z.device)
    # hard positives: (j below, k above)
    if max_pos_mix is None:
        bracket = (y[None, :, None] < y[:, None, None] - tolerance) & (
            y[None, None, :] > y[:, None, None] + tolerance
        )
        a, j, k = bracket.nonzero(as_tuple=True)
    else:
        ok = (below > 0) & (n_above > 0)
        j = order[_draw(below, max_pos_mix, generator)]
        k = order[(above_start[:, None] + _draw(n_above, max_pos_mix, generator)).clamp(max=n - 1)]
        keep = ok[:, None].expand_as(j)
        a, j, k = anchors[:, None].expand_as(j)[keep], j[keep], k[keep]
    lam_pos = (y[k] - y[a]) / (y[k] - y[j])
    mixed_pos = interpolate(z[j], z[k], lam_pos[:, None])
    # hard negatives: anchor with one of its negatives
    if max_neg_mix is None:
        a2, j2 = ((y[:, None] - y[None, :]).abs() > tolerance).nonzero(as_tuple=True)
    else:
        n_neg = below + n_above
        r = _draw(n_neg, max_neg_mix, generator)  # rank among the negatives, low side first
        rank = torch.where(r < below[:, None], r, above_start[:, None] + r - below[:, None])
        j2 = order[rank.clamp(max=n - 1)]
        keep = (n_neg > 0)[:, None].expand_as(j2)
        a2, j2 = anchors[:, None].expand_as(j2)[keep], j2[keep]
    lam_neg = lam_fn((y[a2] - y[j2]).abs()).to(z.dtype)
    mixed_neg = interpolate(z[a2], z[j2], lam_neg[:, None])
    if renormalize:
        mixed_pos = F.normalize(mixed_pos, dim=1, eps=1e-12)
        mixed_neg = F.normalize(mixed_neg, dim=1, eps=1e-12)
    (pos, pos_pairs, pos_lam), pos_valid = _pack(
        a, [mixed_pos, torch.stack([j, k], 1), lam_pos.to(z.dtype)], n
    )
    (neg, neg_index, neg_lam), neg_valid = _pack(a2, [mixed_neg, j2, lam_neg], n)
    return Mixtures(pos, pos_valid, pos_pairs, pos_lam, neg, neg_valid, neg_index, neg_lam)


def supremix_loss(
    embeddings: Tensor,
    targets: Tensor,
    *,
    temperature: float = 0.1,
    tolerance: float = 0.0,
    max_pos_mix: int | None = 16,
    max_neg_mix: int | None = 16,
    negative_lambda: LambdaFn | None = None,
    delta: float = 1.0,
    lambda_max: float = 0.9,
    renormalize: bool = True,
    denominator: Literal["supcon", "per_positive"] = "supcon",
    generator: torch.Generator | None = None,
    reduction: Literal["mean", "none"] = "mean",
    mixtures: Mixtures | None = None,
) -> Tensor:
    """SupReMix over ``embeddings [N, D]`` (L2-normalised here) with one target per row.

    ``max_pos_mix=0`` / ``max_neg_mix=0`` disable a kind of mixture (both 0: SupCon ``L_out`` with
    positives ``|y_i − y_j| ≤ ε``). ``reduction="none"`` returns ``[N]`` (NaN for anchors without
    any positive). ``mixtures`` (from :func:`supremix_mixtures` on the same normalised rows)
    replaces the draw.
    """
    if embeddings.ndim != 2 or not embeddings.is_floating_point():
        raise ContrastkitError(
            f"embeddings must be a float tensor [N, D], got shape {tuple(embeddings.shape)}."
        )
    if not (isinstance(temperature, int | float) and temperature > 0):
        raise ContrastkitError(f"temperature must be > 0, got {temperature!r}.")
    if denominator not in ("supcon", "per_positive"):
        raise ContrastkitError(
            f"denominator must be 'supcon' or 'per_positive', got {denominator!r}."
        )
    z = F.normalize(embeddings.to(torch.promote_types(embeddings.dtype, torch.float32)), dim=1)
    y = check_targets(targets, "targets", len(z)).to(z.device)
    if mixtures is None:
        mixtures = supremix_mixtures(
            z,
            y,
            tolerance=tolerance,
            max_pos_mix=max_pos_mix,
            max_neg_mix=max_neg_mix,
            negative_lambda=negative_lambda,
            delta=delta,
            lambda_max=lambda_max,
            renormalize=renormalize,
            generator=generator,
        )
    pairs = TargetPairs.from_targets(y, tolerance)
    positive, is_self = pairs.masks()
    real = z @ z.T / temperature
    hard_pos = torch.einsum("nd,npd->np", z, mixtures.positives) / temperature
    hard_neg = torch.einsum("nd,nqd->nq", z, mixtures.negatives) / temperature
    inf = float("-inf")
    positive_logits = torch.cat(
        [real.masked_fill(~positive, inf), hard_pos.masked_fill(~mixtures.positive_valid, inf)], 1
    )
    negative_logits = torch.cat(
        [
            real.masked_fill(positive | is_self, inf),
            hard_neg.masked_fill(~mixtures.negative_valid, inf),
        ],
        1,
    )
    is_positive = torch.isfinite(positive_logits)
    n_positive = is_positive.sum(1)
    if denominator == "supcon":
        log_den = torch.logsumexp(torch.cat([positive_logits, negative_logits], 1), dim=1)
        log_prob = positive_logits - log_den[:, None]
    else:
        log_neg = torch.logsumexp(negative_logits, dim=1, keepdim=True)
        log_prob = positive_logits - torch.logaddexp(positive_logits, log_neg)
    per_anchor = -log_prob.masked_fill(~is_positive, 0.0).sum(1) / n_positive.clamp(min=1)
    has_positive = n_positive > 0
    if reduction == "none":
        return per_anchor.masked_fill(~has_positive, float("nan"))
    if reduction != "mean":
        raise ContrastkitError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
    return per_anchor.masked_fill(~has_positive, 0.0).sum() / has_positive.sum().clamp(min=1)


class SupReMixLoss(nn.Module):
    """:func:`supremix_loss` as an objective ``(embeddings, pairs, context)`` where ``pairs`` is a
    :class:`TargetPairs` (its targets and window ``ε`` are used; e.g.
    ``TargetPairs.from_targets(y, 0.0, n_views=2)``)."""

    def __init__(self, temperature: float = 0.1, **options) -> None:
        super().__init__()
        self.temperature = temperature
        self.options = options

    def forward(
        self, embeddings: Tensor, pairs: TargetPairs, context: StepContext | None = None
    ) -> Tensor:
        if not isinstance(pairs, TargetPairs):
            raise ContrastkitError(
                "SupReMix needs continuous targets; pass TargetPairs.from_targets(y, ε, n_views)."
            )
        return supremix_loss(
            embeddings,
            pairs.anchor_targets,
            temperature=self.temperature,
            tolerance=pairs.window,
            **self.options,
        )
