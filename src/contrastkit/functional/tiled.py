"""The tiled paths of the InfoNCE engine: losses in O((N + M)·D) memory, exact to float
tolerance against the dense path (values and gradients). The N×M matrix never exists.

* :func:`tiled_reduced_loss` — the mean or sum over anchors. Blocks of anchor rows meet all
  candidates at once (a block of at most ``BLOCK_ELEMENTS`` logits), and the gradients are
  accumulated in the same pass: three N×M×D products in all, the matmul bound of
  forward + backward, and nothing recomputed. Backward only scales the stored gradients.
* :func:`tiled_per_anchor_loss` — per-anchor losses (``reduction="none"``), whose incoming
  gradient is known only in backward: tiles with an online log-sum-exp (as Inf-CL does), and
  each tile recomputed in backward from the saved embeddings and log-sum-exps.

Hand-written: no maintained library offers a tiled InfoNCE with arbitrary pair structure.
"""

from __future__ import annotations

import torch
from torch import Tensor

from contrastkit.functional.pairs import Pairs

TILE = 1024
#: logits per row block of the fused path (4 MB in float32): rows per block = this / columns
BLOCK_ELEMENTS = 2**20


def tiled_per_anchor_loss(
    anchors: Tensor,
    candidates: Tensor,
    pairs: Pairs,
    temperature: float,
    *,
    exclude_positives: bool = False,
    positive_weight: Tensor | None = None,
    log_negative_weight: Tensor | None = None,
    tile: int = TILE,
) -> tuple[Tensor, Tensor]:
    """``(loss [N], n_positives [N])`` for normalised ``anchors [N, D]`` and ``candidates
    [M + K, D]`` whose last ``K`` rows are extra negatives (beyond ``pairs.n_candidates``).

    ``log_negative_weight`` is ``[M + K]`` (per candidate) or ``None``.
    """
    weight = positive_weight if positive_weight is not None else anchors.new_ones(len(anchors))
    log_w = log_negative_weight
    settings = (pairs, float(temperature), bool(exclude_positives), int(tile))
    loss, n_positives = _TiledInfoNCE.apply(anchors, candidates, weight, log_w, settings)
    return loss, n_positives


def tiled_reduced_loss(
    anchors: Tensor,
    candidates: Tensor,
    pairs: Pairs,
    temperature: float,
    *,
    reduction: str = "mean",
    exclude_positives: bool = False,
    positive_weight: Tensor | None = None,
    log_negative_weight: Tensor | None = None,
    tile: int = TILE,
) -> Tensor:
    """The loss summed (``"sum"``) or averaged (``"mean"``) over the anchors that have a
    positive, for the same inputs as :func:`tiled_per_anchor_loss`; with gradients computed in
    the forward pass when any input requires them."""
    weight = positive_weight if positive_weight is not None else anchors.new_ones(len(anchors))
    inputs = (anchors, candidates, weight, log_negative_weight)
    need_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    rows = max(1, min(int(tile), BLOCK_ELEMENTS // max(len(candidates), 1)))
    settings = (pairs, float(temperature), bool(exclude_positives), rows, reduction, need_grad)
    return _FusedInfoNCE.apply(*inputs, settings)


class _FusedInfoNCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, anchors, candidates, weight, log_w, settings):
        pairs, tau, exclude_positives, block, reduction, need_grad = settings
        n, m = len(anchors), len(candidates)
        scaled = anchors / tau
        total = anchors.new_zeros(())
        n_valid = torch.zeros((), dtype=torch.long, device=anchors.device)
        positive_mean = anchors.new_zeros(n)
        grad_a = torch.zeros_like(anchors) if need_grad else None
        grad_c = torch.zeros_like(candidates) if need_grad else None
        grad_log_w = torch.zeros_like(log_w) if need_grad and log_w is not None else None
        for rows in _tiles(n, block):
            logits = scaled[rows] @ candidates.T  # [block, M + K]: every candidate at once
            positive, self_cols = _block_masks(pairs, rows, m)
            count = positive.sum(1)
            valid = count > 0
            row, col = positive.nonzero(as_tuple=True)  # positives are few: gather, not a pass
            positive_logits = logits[row, col]
            mean = torch.zeros_like(count, dtype=logits.dtype).index_add_(
                0, row, positive_logits
            ) / count.clamp(min=1)
            positive_mean[rows] = torch.where(valid, mean, 0.0)
            if self_cols is not None:  # the anchor itself: one entry per row
                logits[torch.arange(len(logits), device=logits.device), self_cols] = float("-inf")
            if log_w is not None:  # negatives only are weighted
                logits.add_(log_w)
                logits[row, col] = positive_logits
            if exclude_positives:
                logits[row, col] = float("-inf")
            lse = torch.logsumexp(logits, dim=1)
            total += torch.where(valid, lse - weight[rows] * mean, 0.0).sum()
            n_valid += valid.sum()
            if not need_grad:
                continue
            # ∂ℓ_i/∂logits = softmax over the denominator − w_i/|P_i| on each positive
            probs = logits.sub_(lse[:, None]).exp_()
            probs[~valid] = 0.0
            if grad_log_w is not None:
                grad_log_w += probs.sum(0)
                grad_log_w.index_add_(0, col, -probs[row, col])
            probs.index_put_((row, col), -(weight[rows] / count.clamp(min=1))[row], accumulate=True)
            grad_a[rows] = probs @ candidates
            grad_c += probs.T @ scaled[rows]
        scale = n_valid if reduction == "mean" else 1
        if need_grad:
            ctx.save_for_backward(grad_a / (tau * scale), grad_c / scale, positive_mean / scale)
            ctx.grad_log_w = None if grad_log_w is None else grad_log_w / scale
        return total / scale

    @staticmethod
    def backward(ctx, grad_out):
        grad_a, grad_c, positive_mean = ctx.saved_tensors
        grad_weight = -grad_out * positive_mean if ctx.needs_input_grad[2] else None
        grad_log_w = None if ctx.grad_log_w is None else grad_out * ctx.grad_log_w
        return grad_out * grad_a, grad_out * grad_c, grad_weight, grad_log_w, None


def _block_masks(pairs: Pairs, rows: slice, n_columns: int) -> tuple[Tensor, Tensor | None]:
    """A row block's positive mask over all ``n_columns`` (extra negatives never positive) and
    the column of each row's own entry (``None`` without self-contrast), in one pass."""
    anchor_ids = pairs.anchor_ids[rows]
    positive = torch.zeros(len(anchor_ids), n_columns, dtype=torch.bool, device=anchor_ids.device)
    m = pairs.n_candidates
    torch.eq(anchor_ids[:, None], pairs.candidate_ids[None, :], out=positive[:, :m])
    if pairs.self_offset is None:
        return positive, None
    self_cols = torch.arange(*rows.indices(pairs.n_anchors), device=anchor_ids.device)
    self_cols += pairs.self_offset
    positive[torch.arange(len(anchor_ids), device=anchor_ids.device), self_cols] = False
    return positive, self_cols


def _tiles(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class _TiledInfoNCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, anchors, candidates, weight, log_w, settings):
        pairs, tau, exclude_positives, tile = settings
        n, device = len(anchors), anchors.device
        scaled = anchors / tau
        lse = torch.full((n,), float("-inf"), dtype=anchors.dtype, device=device)
        positive_sum = torch.zeros(n, dtype=anchors.dtype, device=device)
        n_positives = torch.zeros(n, dtype=torch.long, device=device)
        for rows in _tiles(n, tile):
            for cols in _tiles(len(candidates), tile):
                logits = scaled[rows] @ candidates[cols].T
                positive, is_self = pairs.masks(rows, cols, len(candidates))
                positive_sum[rows] += torch.where(positive, logits, 0.0).sum(1)
                n_positives[rows] += positive.sum(1)
                _denominator_(logits, positive, is_self, log_w, cols, exclude_positives)
                lse[rows] = torch.logaddexp(lse[rows], torch.logsumexp(logits, dim=1))
        positive_mean = positive_sum / n_positives.clamp(min=1)
        ctx.save_for_backward(anchors, candidates, weight, log_w, lse, positive_mean, n_positives)
        ctx.settings = settings
        ctx.mark_non_differentiable(n_positives)
        return lse - weight * positive_mean, n_positives

    @staticmethod
    def backward(ctx, grad_loss, _grad_count):
        anchors, candidates, weight, log_w, lse, positive_mean, n_positives = ctx.saved_tensors
        pairs, tau, exclude_positives, tile = ctx.settings
        scaled = anchors / tau
        grad_a, grad_c = torch.zeros_like(anchors), torch.zeros_like(candidates)
        grad_log_w = torch.zeros_like(log_w) if ctx.needs_input_grad[3] else None
        scale = grad_loss * weight / n_positives.clamp(min=1)  # on each positive logit
        for rows in _tiles(len(anchors), tile):
            for cols in _tiles(len(candidates), tile):
                logits = scaled[rows] @ candidates[cols].T
                positive, is_self = pairs.masks(rows, cols, len(candidates))
                _denominator_(logits, positive, is_self, log_w, cols, exclude_positives)
                # softmax over the denominator, times the incoming gradient, in place
                grad_logits = logits.sub_(lse[rows, None]).exp_().mul_(grad_loss[rows, None])
                if grad_log_w is not None:
                    grad_log_w[cols] += torch.where(positive, 0.0, grad_logits).sum(0)
                grad_logits.sub_(positive * scale[rows, None])
                grad_a[rows] += grad_logits @ candidates[cols]
                grad_c[cols] += grad_logits.T @ scaled[rows]
        grad_weight = -grad_loss * positive_mean if ctx.needs_input_grad[2] else None
        return grad_a / tau, grad_c, grad_weight, grad_log_w, None


def _denominator_(
    logits: Tensor,
    positive: Tensor,
    is_self: Tensor,
    log_w: Tensor | None,
    cols: slice,
    exclude_positives: bool,
) -> None:
    """Turn a tile's logits into its denominator terms in place: ``-inf`` where excluded, plus
    the log-weights of negatives."""
    if log_w is not None:
        logits.add_(torch.where(positive, 0.0, log_w[cols]))
    logits.masked_fill_(is_self | positive if exclude_positives else is_self, float("-inf"))
