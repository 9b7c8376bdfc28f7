"""Positive and negative score statistics of a batch: the visualisation record of Zhu et al.
(2021, "Improving Contrastive Learning by Visualizing Feature Transformation", §3; instance-dense.md
§9 b): per anchor, its positive score and the mean and variance of its negative scores (cosine).

The negatives are summed without the N×M score matrix: with ``S = Σ_j c_j`` and the Gram
``G = CᵀC`` (``D × D``), ``Σ_j s_ij = z_i·S`` and ``Σ_j s_ij² = z_iᵀ G z_i``; the positives and the
anchor itself are then subtracted. That is O((N + M)·D²) time and O(D²) memory. No library
computes these moments, so they are written here."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.errors import ContrastkitError
from contrastkit.functional.pairs import Pairs

__all__ = ["SCORE_KEYS", "score_statistics", "summarize_scores"]

#: The per-batch summary logged during training (column names in ``metrics.csv``).
SCORE_KEYS = ("pos_score_mean", "pos_score_var", "neg_score_mean", "neg_score_var")


@torch.no_grad()
def score_statistics(
    anchors: Tensor, pairs: Pairs, candidates: Tensor | None = None, *, normalize: bool = True
) -> dict[str, Tensor]:
    """Per-anchor score moments of ``anchors [N, D]`` against ``candidates [M(+K), D]`` (default:
    the anchors themselves), with positives and self given by ``pairs``; candidates beyond
    ``pairs.n_candidates`` are extra negatives (a queue).

    Returns float64 tensors ``[N]`` on the anchors' device: ``positive`` (the mean score over the
    anchor's positives, NaN without one), ``negative_mean`` and ``negative_var`` (population
    variance) over its negatives (NaN without one), and ``n_positives``/``n_negatives``.
    Scores are cosine similarities when ``normalize`` (the default), else plain dot products.
    """
    candidates = anchors if candidates is None else candidates
    if anchors.ndim != 2 or candidates.ndim != 2 or anchors.shape[1] != candidates.shape[1]:
        raise ContrastkitError(
            f"score_statistics needs anchors [N, D] and candidates [M, D], got "
            f"{tuple(anchors.shape)} and {tuple(candidates.shape)}."
        )
    if len(anchors) != pairs.n_anchors or len(candidates) < pairs.n_candidates:
        raise ContrastkitError(
            f"pairs describe {pairs.n_anchors} anchors × {pairs.n_candidates} candidates but "
            f"{len(anchors)} anchors and {len(candidates)} candidates were given."
        )
    z, c = anchors.detach().double(), candidates.detach().double()
    if normalize:
        z, c = F.normalize(z, dim=1), F.normalize(c, dim=1)
    n, m = len(z), len(c)
    total = z @ c.sum(dim=0)
    total_sq = ((z @ (c.T @ c)) * z).sum(dim=1)
    pos_sum, pos_sq, n_pos = _positive_moments(z, c[: pairs.n_candidates], pairs)
    n_neg = m - n_pos
    neg_sum, neg_sq = total - pos_sum, total_sq - pos_sq
    if pairs.self_offset is not None:
        own = (z * c[pairs.self_offset : pairs.self_offset + n]).sum(dim=1)
        neg_sum, neg_sq, n_neg = neg_sum - own, neg_sq - own**2, n_neg - 1
    nan = torch.tensor(float("nan"), dtype=z.dtype, device=z.device)
    neg_mean = torch.where(n_neg > 0, neg_sum / n_neg.clamp(min=1), nan)
    neg_var = torch.where(n_neg > 0, (neg_sq / n_neg.clamp(min=1) - neg_mean**2).clamp(min=0), nan)
    return {
        "positive": torch.where(n_pos > 0, pos_sum / n_pos.clamp(min=1), nan),
        "negative_mean": neg_mean,
        "negative_var": neg_var,
        "n_positives": n_pos.double(),
        "n_negatives": n_neg.double(),
    }


def _positive_moments(z: Tensor, c: Tensor, pairs: Pairs) -> tuple[Tensor, Tensor, Tensor]:
    """Per anchor: the sum and the sum of squares of its positive scores, and their count (self
    excluded)."""
    n = len(z)
    self_contrast = pairs.self_offset == 0 and len(c) == n
    if pairs.batch_local and pairs.n_views and self_contrast and n % pairs.n_views == 0:
        # Pairs.views: view-major rows; the positives of (view v, sample b) are (w ≠ v, b)
        v = pairs.n_views
        zz, cc = z.view(v, n // v, -1), c.view(v, n // v, -1)
        s = torch.einsum("vbd,wbd->vwb", zz, cc)
        own = torch.diagonal(s, dim1=0, dim2=1).T  # [v, b]: each row against itself
        pos_sum = (s.sum(dim=1) - own).reshape(n)
        pos_sq = (s.pow(2).sum(dim=1) - own**2).reshape(n)
        return pos_sum, pos_sq, torch.full((n,), v - 1, device=z.device, dtype=torch.long)
    # any ids (labels, cross pairs): the score blocks of each id, one id at a time; the cost is
    # that of the positives alone (N·P·D), never the N×M matrix
    ids, inverse = torch.unique(
        torch.cat([pairs.anchor_ids, pairs.candidate_ids]), return_inverse=True
    )
    a_group, c_group = inverse[:n].to(z.device), inverse[n:].to(z.device)
    order_a, order_c = torch.argsort(a_group), torch.argsort(c_group)
    counts_a = torch.bincount(a_group, minlength=len(ids)).tolist()
    counts_c = torch.bincount(c_group, minlength=len(ids)).tolist()
    pos_sum, pos_sq = torch.zeros(n, dtype=z.dtype, device=z.device), torch.zeros_like(z[:, 0])
    n_pos = torch.zeros(n, dtype=torch.long, device=z.device)
    start_a = start_c = 0
    for count_a, count_c in zip(counts_a, counts_c, strict=True):
        rows = order_a[start_a : start_a + count_a]
        cols = order_c[start_c : start_c + count_c]
        start_a, start_c = start_a + count_a, start_c + count_c
        if not (count_a and count_c):
            continue
        s = z[rows] @ c[cols].T
        if pairs.self_offset is not None:  # the anchor itself is not its own positive
            s = s.masked_fill(rows[:, None] + pairs.self_offset == cols[None, :], 0.0)
            own = (rows[:, None] + pairs.self_offset == cols[None, :]).sum(dim=1)
        else:
            own = torch.zeros_like(rows)
        pos_sum[rows], pos_sq[rows], n_pos[rows] = s.sum(dim=1), s.pow(2).sum(dim=1), count_c - own
    return pos_sum, pos_sq, n_pos


def summarize_scores(stats: dict[str, Tensor]) -> dict[str, Tensor]:
    """The batch summary of Zhu et al. (2021) as 0-d tensors (no host sync, so it can be logged
    every step): the batch mean and (population) variance of the positive score, and the batch
    means of the negative means and of the negative variances (:data:`SCORE_KEYS`). Anchors
    without positives or negatives (NaN) are left out; a term with none at all is NaN."""
    pos = stats["positive"]
    pos_mean = pos.nanmean()
    return {
        "pos_score_mean": pos_mean,
        "pos_score_var": (pos - pos_mean).pow(2).nanmean(),
        "neg_score_mean": stats["negative_mean"].nanmean(),
        "neg_score_var": stats["negative_var"].nanmean(),
    }
