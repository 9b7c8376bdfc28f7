"""The tiled paths of the InfoNCE engine: losses in O((N + M)·D) memory, exact to float
tolerance against the dense path (values and gradients). The N×M matrix never exists.

* :func:`tiled_reduced_loss` — the mean or sum over anchors. For each block of anchor rows the
  logit tiles are computed once (masked while in cache, online log-sum-exp) and kept (at most
  ``BLOCK_ELEMENTS`` logits), then turned into gradients: three N×M×D products in all, the
  matmul bound of forward + backward, nothing recomputed. Backward only scales the stored
  gradients.
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
#: logits kept per row block of the fused path (256 MB in float32): rows = this / columns, at
#: most one tile
BLOCK_ELEMENTS = 2**26


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
    settings = (
        pairs,
        float(temperature),
        bool(exclude_positives),
        int(tile),
        rows,
        reduction,
        need_grad,
    )
    return _FusedInfoNCE.apply(*inputs, settings)


class _FusedInfoNCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, anchors, candidates, weight, log_w, settings):
        pairs, tau, exclude_positives, tile, block, reduction, need_grad = settings
        n, m = len(anchors), len(candidates)
        scaled = anchors / tau
        total = anchors.new_zeros(())
        n_valid = torch.zeros((), dtype=torch.long, device=anchors.device)
        positive_mean = anchors.new_zeros(n)
        grad_a = torch.zeros_like(anchors) if need_grad else None
        grad_c = torch.zeros_like(candidates) if need_grad else None
        grad_log_w = torch.zeros_like(log_w) if need_grad and log_w is not None else None
        for rows in _tiles(n, block):
            # pass 1: the row block's logits, tile by tile (masked and exponentiated while in
            # cache), kept for pass 2, with an online log-sum-exp over the tiles
            kept = []
            lse = anchors.new_full((rows.stop - rows.start,), float("-inf"))
            positive_sum = anchors.new_zeros(len(lse))
            count = torch.zeros(len(lse), dtype=torch.long, device=anchors.device)
            for cols in _tiles(m, tile):
                logits = scaled[rows] @ candidates[cols].T
                positive, own = _tile_masks(pairs, rows, cols, m)
                positive_sum += torch.where(positive, logits, 0.0).sum(1)
                count += positive.sum(1)
                _denominator_(logits, positive, own, log_w, cols, exclude_positives)
                # exponentiate in place against the tile's row maxima: pass 2 only rescales
                peak = logits.amax(dim=1)
                peak = torch.where(peak > float("-inf"), peak, 0.0)
                tile_sum = logits.sub_(peak[:, None]).exp_().sum(dim=1)
                lse = torch.logaddexp(lse, peak + tile_sum.log())
                kept.append((cols, logits, positive, peak))
            valid = count > 0
            mean = torch.where(valid, positive_sum / count.clamp(min=1), 0.0)
            positive_mean[rows] = mean
            total += torch.where(valid, lse - weight[rows] * mean, 0.0).sum()
            n_valid += valid.sum()
            if not need_grad:
                continue
            # pass 2: ∂ℓ_i/∂logits = softmax over the denominator − w_i/|P_i| on each positive
            on_positive = torch.where(valid, weight[rows] / count.clamp(min=1), 0.0)[:, None]
            lse = torch.where(valid, lse, float("inf"))[:, None]  # no gradient from invalid rows
            for cols, exps, positive, peak in kept:
                probs = exps.mul_(torch.exp(peak[:, None] - lse))
                if grad_log_w is not None:
                    grad_log_w[cols] += torch.where(positive, 0.0, probs).sum(0)
                probs.sub_(positive * on_positive)
                grad_a[rows] += probs @ candidates[cols]
                grad_c[cols] += probs.T @ scaled[rows]
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
                positive, own = _tile_masks(pairs, rows, cols, len(candidates))
                positive_sum[rows] += torch.where(positive, logits, 0.0).sum(1)
                n_positives[rows] += positive.sum(1)
                _denominator_(logits, positive, own, log_w, cols, exclude_positives)
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
                positive, own = _tile_masks(pairs, rows, cols, len(candidates))
                _denominator_(logits, positive, own, log_w, cols, exclude_positives)
                # softmax over the denominator, times the incoming gradient, in place
                grad_logits = logits.sub_(lse[rows, None]).exp_().mul_(grad_loss[rows, None])
                if grad_log_w is not None:
                    grad_log_w[cols] += torch.where(positive, 0.0, grad_logits).sum(0)
                grad_logits.sub_(positive * scale[rows, None])
                grad_a[rows] += grad_logits @ candidates[cols]
                grad_c[cols] += grad_logits.T @ scaled[rows]
        grad_weight = -grad_loss * positive_mean if ctx.needs_input_grad[2] else None
        return grad_a / tau, grad_c, grad_weight, grad_log_w, None


def _tile_masks(
    pairs: Pairs, rows: slice, cols: slice, n_columns: int
) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
    """A tile's positive mask (one id comparison; columns beyond the candidates are extra
    negatives) and the ``(row, column)`` indices of the anchors that are their own candidate in
    this tile, found by arithmetic rather than a second full comparison."""
    r0, r1, _ = rows.indices(pairs.n_anchors)
    c0, c1, _ = cols.indices(n_columns)
    m = pairs.n_candidates
    ids = pairs.candidate_ids[c0 : min(c1, m)]
    positive = pairs.anchor_ids[r0:r1, None] == ids[None, :]
    if c1 > max(c0, m):
        extra = positive.new_zeros(r1 - r0, c1 - max(c0, m))
        positive = torch.cat([positive, extra], dim=1)
    if pairs.self_offset is None:
        return positive, None
    offset = pairs.self_offset
    lo, hi = max(r0 + offset, c0), min(r1 + offset, c1)  # own columns inside this tile
    if lo >= hi:
        return positive, None
    row = torch.arange(lo - offset - r0, hi - offset - r0, device=positive.device)
    col = row + (r0 + offset - c0)
    positive[row, col] = False
    return positive, (row, col)


def _denominator_(
    logits: Tensor,
    positive: Tensor,
    own: tuple[Tensor, Tensor] | None,
    log_w: Tensor | None,
    cols: slice,
    exclude_positives: bool,
) -> None:
    """Turn a tile's logits into its denominator terms in place: ``-inf`` where excluded (the
    anchor itself; positives too for DCL), plus the log-weights of negatives."""
    if log_w is not None:
        logits.add_(torch.where(positive, 0.0, log_w[cols]))
    if exclude_positives:
        logits.masked_fill_(positive, float("-inf"))
    if own is not None:
        logits[own] = float("-inf")
