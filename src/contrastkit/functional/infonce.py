"""The InfoNCE engine: anchors × candidates, which are positive, which are excluded, what weights.

One function covers the family (DESIGN.md, principle 3). For anchor ``i`` with positives ``P_i``
(from :class:`~contrastkit.functional.pairs.Pairs`) and denominator set ``D_i``:

    ℓ_i = − (w_i / |P_i|) Σ_{p∈P_i} s_ip/τ  +  log Σ_{j∈D_i} c_ij · exp(s_ij/τ)

- NT-Xent / SimCLR (Chen et al. 2020, eq. 1): ``Pairs.views``, ``D_i`` = every candidate but ``i``.
- Multi-view and SupCon's L_out (Khosla et al. 2020, eq. 2): several positives, averaged.
- DCL (Yeh et al. 2022, eq. 6): ``exclude_positives=True`` drops ``P_i`` from ``D_i``.
- DCLW: ``positive_weight`` = ``w_i``.
- MoCo's queue (He et al. 2020): ``extra_negatives`` join ``D_i`` and are never positive.
- MoCHi's synthetic points (Kalantidis et al. 2020): ``anchor_negatives`` join ``D_i`` of their
  own anchor only.
- Weighted negatives: ``negative_weight`` = ``c_ij`` (1 for positives in the denominator).
- Hard contrastive loss (Wang & Liu 2021): ``hard_negatives`` keeps the top negatives of ``D_i``.

Two exact paths compute it (dense reference, tiled in linear memory), and under
``torch.distributed`` the candidates are gathered from every rank with gradient.

Every log-sum-exp is ``torch.logsumexp`` in float32 with ``-inf`` masking (no exp/sum/log chains).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.errors import ContrastkitError
from contrastkit.functional.distributed import gather_with_grad, global_pairs, world
from contrastkit.functional.pairs import Pairs
from contrastkit.functional.tiled import TILE, tiled_per_anchor_loss, tiled_reduced_loss

Reduction = Literal["mean", "sum", "none"]
Backend = Literal["auto", "dense", "tiled"]
#: above this many logits (N × (M + K)) ``backend="auto"`` takes the tiled path
AUTO_TILED_LOGITS = 4096 * 4096


def info_nce(
    anchors: Tensor,
    pairs: Pairs,
    candidates: Tensor | None = None,
    *,
    temperature: float = 0.1,
    exclude_positives: bool = False,
    positive_weight: Tensor | None = None,
    negative_weight: Tensor | None = None,
    extra_negatives: Tensor | None = None,
    anchor_negatives: Tensor | None = None,
    hard_negatives: int | float | None = None,
    normalize: bool = True,
    reduction: Reduction = "mean",
    backend: Backend = "auto",
    tile_size: int = TILE,
    distributed: bool | None = None,
) -> Tensor:
    """InfoNCE over ``anchors [N, D]`` and ``candidates [M, D]`` (default: the anchors themselves).

    Args:
        pairs: who is positive for whom, and which candidate is each anchor itself.
        temperature: τ > 0; logits are cosine similarities / τ (dot products if not ``normalize``).
        exclude_positives: drop positives from the denominator (DCL).
        positive_weight: ``[N]`` weight ``w_i`` on anchor ``i``'s positive term (DCLW).
        negative_weight: ``[M + K]`` per candidate or ``[N, M + K]`` per pair, ``c_ij ≥ 0``, applied
            to non-positive candidates in the denominator (``K`` = number of extra negatives).
        extra_negatives: ``[K, D]`` candidates that are negatives of every anchor (a queue).
        anchor_negatives: ``[N, S, D]`` negatives of one anchor each (MoCHi's synthetic hard
            negatives); never positive, never weighted or filtered by ``hard_negatives``; dense
            path only.
        hard_negatives: keep only each anchor's hardest negatives in the denominator (Wang & Liu
            2021, hard contrastive loss): the top ``k`` (int) or the top fraction (float in
            (0, 1]) by similarity, selected without gradient; ties at the cut are all kept.
        normalize: L2-normalise all embeddings first (``eps = 1e-12``).
        reduction: ``"mean"`` over anchors that have at least one positive, ``"sum"``, or
            ``"none"`` for ``[N]`` per-anchor losses (NaN where an anchor has no positive).
        backend: ``"dense"`` (reference: the full logit matrix), ``"tiled"`` (linear memory,
            logits recomputed tile by tile in backward; see :mod:`contrastkit.functional.tiled`),
            or ``"auto"``: tiled above ``AUTO_TILED_LOGITS`` logits when the options allow it.
        tile_size: rows/columns per tile of the tiled path.
        distributed: contrast this rank's anchors with the candidates of every rank (gathered
            with gradient; see :mod:`contrastkit.functional.distributed`). ``None``: whenever a
            process group with more than one rank is initialised. Weights are then per global
            candidate; extra negatives are not gathered (a queue is already global).
    """
    if distributed is None:
        distributed = world()[1] > 1
    if distributed:  # local anchors × candidates of every rank, gathered with gradient
        local = anchors if candidates is None else candidates
        pairs, candidates = global_pairs(pairs, len(local)), gather_with_grad(local)
    anchors, candidates = _prepare(
        anchors, pairs, candidates, extra_negatives, temperature, normalize
    )
    if negative_weight is not None:
        _check_weight(negative_weight, len(anchors), len(candidates))
    if anchor_negatives is not None:
        anchor_negatives = _check_anchor_negatives(anchor_negatives, anchors, normalize)
    dense_only = anchor_negatives is not None or hard_negatives is not None
    if reduction not in ("mean", "sum", "none"):
        raise ContrastkitError(f"Unknown reduction {reduction!r}; use 'mean', 'sum' or 'none'.")
    if _tiled(backend, anchors, candidates, dense_only, negative_weight):
        tiled_options = dict(
            exclude_positives=exclude_positives,
            positive_weight=positive_weight,
            log_negative_weight=(
                None if negative_weight is None else torch.log(negative_weight.to(anchors.dtype))
            ),
            tile=tile_size,
        )
        if reduction != "none":  # gradients accumulated in the forward pass, nothing recomputed
            return tiled_reduced_loss(
                anchors, candidates, pairs, temperature, reduction=reduction, **tiled_options
            )
        loss, n_positives = tiled_per_anchor_loss(
            anchors, candidates, pairs, temperature, **tiled_options
        )
    else:
        loss, n_positives = _dense_per_anchor_loss(
            anchors,
            candidates,
            pairs,
            temperature,
            exclude_positives,
            positive_weight,
            negative_weight,
            hard_negatives,
            anchor_negatives,
        )
    has_positive = n_positives > 0
    if reduction == "none":
        return loss.masked_fill(~has_positive, float("nan"))
    total = loss.masked_fill(~has_positive, 0.0).sum()
    if reduction == "sum":
        return total
    return total / has_positive.sum()


def _dense_per_anchor_loss(
    anchors: Tensor,
    candidates: Tensor,
    pairs: Pairs,
    temperature: float,
    exclude_positives: bool,
    positive_weight: Tensor | None,
    negative_weight: Tensor | None,
    hard_negatives: int | float | None,
    anchor_negatives: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The reference path: the full ``[N, M + K]`` logit matrix, masked."""
    logits, positive, in_denominator = _logits_and_masks(anchors, candidates, pairs, temperature)
    if exclude_positives:
        in_denominator &= ~positive
    if hard_negatives is not None:
        negatives = in_denominator & ~positive
        in_denominator = (in_denominator & positive) | _hardest(
            logits.detach(), negatives, hard_negatives
        )
    denominator = logits.masked_fill(~in_denominator, float("-inf"))
    if negative_weight is not None:
        log_weight = torch.log(negative_weight.to(logits.dtype)).expand(logits.shape)
        denominator = denominator + log_weight.masked_fill(positive, 0.0)
    if anchor_negatives is not None:  # [N, S]: each anchor against its own extra negatives
        own = torch.einsum("nd,nsd->ns", anchors, anchor_negatives) / temperature
        denominator = torch.cat([denominator, own], dim=1)
    n_positives = positive.sum(1)
    positive_logit = logits.masked_fill(~positive, 0.0).sum(1) / n_positives.clamp(min=1)
    if positive_weight is not None:
        positive_logit = positive_logit * positive_weight.to(logits.dtype)
    return torch.logsumexp(denominator, dim=1) - positive_logit, n_positives


def negative_hardness(
    anchors: Tensor,
    pairs: Pairs,
    candidates: Tensor | None = None,
    *,
    temperature: float = 0.1,
    normalize: bool = True,
) -> Tensor:
    """InfoNCE's hardness-aware relative penalty (Wang & Liu 2021, eq. 4): for each anchor, the
    Boltzmann distribution ``exp(s_ij/τ) / Σ_k exp(s_ik/τ)`` over its negatives ``j``; ``[N, M]``,
    zero on positives and on the anchor itself, each row summing to 1."""
    anchors, candidates = _prepare(anchors, pairs, candidates, None, temperature, normalize)
    logits, positive, in_denominator = _logits_and_masks(anchors, candidates, pairs, temperature)
    return torch.softmax(
        logits.masked_fill(positive | ~in_denominator, float("-inf")), dim=1
    ).nan_to_num(0.0)


def _prepare(
    anchors: Tensor,
    pairs: Pairs,
    candidates: Tensor | None,
    extra_negatives: Tensor | None,
    temperature: float,
    normalize: bool,
) -> tuple[Tensor, Tensor]:
    """Checked, normalised, at-least-float32 anchors and candidates (extra negatives last)."""
    candidates = anchors if candidates is None else candidates
    _check_inputs(anchors, candidates, pairs, extra_negatives, temperature)
    if extra_negatives is not None:
        candidates = torch.cat([candidates, extra_negatives.to(candidates.dtype)])
    if normalize:
        anchors = F.normalize(anchors, dim=1, eps=1e-12)
        candidates = F.normalize(candidates, dim=1, eps=1e-12)
    dtype = torch.promote_types(torch.promote_types(anchors.dtype, candidates.dtype), torch.float32)
    return anchors.to(dtype), candidates.to(dtype)


def _logits_and_masks(
    anchors: Tensor, candidates: Tensor, pairs: Pairs, temperature: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Logits ``[N, M + K]``, the positive mask and the denominator mask (all but self); the
    ``K`` candidates beyond ``pairs`` are extra negatives."""
    logits = anchors @ candidates.T / temperature
    positive, is_self = pairs.masks(n_columns=len(candidates))
    return logits, positive, ~is_self


def _tiled(
    backend: Backend,
    anchors: Tensor,
    candidates: Tensor,
    dense_only: bool,
    negative_weight: Tensor | None,
) -> bool:
    """Whether to take the tiled path: forced, or ``"auto"`` above :data:`AUTO_TILED_LOGITS`."""
    if backend not in ("auto", "dense", "tiled"):
        raise ContrastkitError(f"backend must be 'auto', 'dense' or 'tiled', got {backend!r}.")
    dense_only = dense_only or (negative_weight is not None and negative_weight.ndim != 1)
    if backend == "tiled" and dense_only:
        raise ContrastkitError(
            "The tiled backend supports per-candidate negative weights only, and neither "
            "hard_negatives nor anchor_negatives; use backend='dense'."
        )
    return backend == "tiled" or (
        backend == "auto" and not dense_only and len(anchors) * len(candidates) > AUTO_TILED_LOGITS
    )


def _check_anchor_negatives(negatives: Tensor, anchors: Tensor, normalize: bool) -> Tensor:
    if (
        negatives.ndim != 3
        or negatives.shape[::2] != anchors.shape
        or not negatives.is_floating_point()
    ):
        raise ContrastkitError(
            f"anchor_negatives must be a float tensor [N, S, D] matching anchors {tuple(anchors.shape)}, "
            f"got {negatives.dtype} of shape {tuple(negatives.shape)}."
        )
    negatives = negatives.to(anchors.dtype)
    return F.normalize(negatives, dim=2, eps=1e-12) if normalize else negatives


def _hardest(scores: Tensor, mask: Tensor, keep: int | float) -> Tensor:
    """Within ``mask``, each row's top ``keep`` entries (a count, or a fraction of the row's count)."""
    count = mask.sum(1)
    if (
        isinstance(keep, bool)
        or not isinstance(keep, int | float)
        or keep <= 0
        or (isinstance(keep, float) and keep > 1)
    ):
        raise ContrastkitError(
            f"hard_negatives must be a count ≥ 1 or a fraction in (0, 1], got {keep!r}."
        )
    k = count.clamp(max=keep) if isinstance(keep, int) else torch.ceil(count * keep).long()
    masked = scores.masked_fill(~mask, float("-inf"))
    ordered = masked.sort(dim=1, descending=True).values
    threshold = ordered.gather(1, (k - 1).clamp(min=0)[:, None])
    return mask & (masked >= threshold)


def nt_xent(*views: Tensor, temperature: float = 0.1, **options) -> Tensor:
    """NT-Xent of SimCLR (Chen et al. 2020, eq. 1) over ``V ≥ 2`` views ``[B, D]`` of one batch.

    With more than two views each row has ``V − 1`` positives (SupCon's L_out over instance ids).
    ``options`` go to :func:`info_nce` (e.g. ``exclude_positives=True`` for DCL).
    """
    if len(views) < 2 or len({v.shape for v in views}) != 1:
        raise ContrastkitError("nt_xent needs at least two view tensors of the same shape [B, D].")
    z = torch.cat(views)
    pairs = Pairs.views(len(views[0]), len(views), device=z.device)
    return info_nce(z, pairs, temperature=temperature, **options)


def _check_inputs(
    anchors: Tensor,
    candidates: Tensor,
    pairs: Pairs,
    extra_negatives: Tensor | None,
    temperature: float,
) -> None:
    if not (isinstance(temperature, int | float) and 0 < temperature < float("inf")):
        raise ContrastkitError(
            f"temperature must be a positive finite number, got {temperature!r}."
        )
    for name, x in (
        ("anchors", anchors),
        ("candidates", candidates),
        ("extra_negatives", extra_negatives),
    ):
        if x is not None and (x.ndim != 2 or not x.dtype.is_floating_point):
            raise ContrastkitError(
                f"{name} must be a 2-D float tensor [rows, dim], got {x.dtype} of shape {tuple(x.shape)}."
            )
    dims = {x.shape[1] for x in (anchors, candidates, extra_negatives) if x is not None}
    if len(dims) != 1:
        raise ContrastkitError(
            f"anchors, candidates and extra negatives must share one dimension, got {dims}."
        )
    if (len(anchors), len(candidates)) != (pairs.n_anchors, pairs.n_candidates):
        raise ContrastkitError(
            f"pairs describe {pairs.n_anchors} anchors × {pairs.n_candidates} candidates but got "
            f"{len(anchors)} × {len(candidates)}; build Pairs for these embeddings."
        )


def _at_least_float32(x: Tensor) -> Tensor:
    """Half-precision embeddings are promoted so every log-sum-exp runs in float32 or wider."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _check_weight(weight: Tensor, n_anchors: int, n_candidates: int) -> None:
    if tuple(weight.shape) not in ((n_candidates,), (n_anchors, n_candidates)):
        raise ContrastkitError(
            f"negative_weight must have shape [{n_candidates}] or [{n_anchors}, {n_candidates}] "
            f"(candidates + extra negatives), got {tuple(weight.shape)}."
        )
