"""The tiled path of the InfoNCE engine: per-anchor losses in O((N + M)·D) memory.

Logits are computed tile by tile with an online log-sum-exp (as Inf-CL does); backward recomputes
each tile from the saved embeddings and per-anchor log-sum-exps, so the N×M matrix never exists.
Exact: the same per-anchor loss and gradients as the dense path, to float tolerance.
Hand-written: no maintained library offers a tiled InfoNCE with arbitrary pair structure.
"""

from __future__ import annotations

import torch
from torch import Tensor

from contrastkit.functional.pairs import Pairs

TILE = 1024


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
