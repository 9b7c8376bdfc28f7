"""GroCo: contrastive learning by sorting with group ordering constraints (Shvetsova et al.,
ICCV 2023; official ``learning_by_sorting/losses/groco.py``; instance-dense.md §7).

For each anchor view, the cosine similarities to the same sample's other views (positives) and to
the top-k most similar other samples of the anchor's own view (negatives, gathered from every
rank) are sorted by a differentiable sorting network; a BCE asks that every negative land in the
bottom k ranks (:func:`~contrastkit.functional.sorting.groco_loss`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional.distributed import gather, gather_with_grad, world
from contrastkit.functional.pairs import Pairs
from contrastkit.functional.sorting import groco_loss
from contrastkit.objectives.context import StepContext


def groco_similarities(
    anchors: Tensor,
    positives: Sequence[Tensor],
    candidates: Tensor,
    *,
    top_k: int = 10,
    self_offset: int | None = 0,
    stop_grad: bool = True,
) -> tuple[Tensor, Tensor]:
    """``(negatives [B, k], positives [B, m])`` cosine similarities of GroCo (§7(b) steps 1–2).

    Args:
        anchors: ``[B, D]`` anchor embeddings.
        positives: ``m`` tensors ``[B, D]``, row ``b`` being a positive of anchor ``b``.
        candidates: ``[N, D]`` negative candidates (the anchors' view, gathered over ranks);
            candidate ``self_offset + b`` is anchor ``b`` itself and is skipped.
        top_k: how many of the most similar candidates are kept as negatives.
        self_offset: where the anchors sit among the candidates (``None``: they do not).
        stop_grad: positives and candidates are constants; only the anchors get gradient.
    """
    if not positives:
        raise ContrastkitError("GroCo needs at least one positive view per anchor view.")
    n_excluded = 0 if self_offset is None else 1
    if top_k < 1 or len(candidates) - n_excluded < top_k:
        raise ContrastkitError(
            f"GroCo keeps top_k={top_k} negatives but has {len(candidates) - n_excluded} "
            "candidates per anchor; lower top_k or use a larger (global) batch."
        )
    dtype = torch.promote_types(anchors.dtype, torch.float32)  # the loss runs in full precision
    a = F.normalize(anchors.to(dtype), dim=1, eps=1e-12)
    p = F.normalize(torch.stack(list(positives)).to(dtype), dim=2, eps=1e-12)  # [m, B, D]
    c = F.normalize(candidates.to(dtype), dim=1, eps=1e-12)
    if stop_grad:
        p, c = p.detach(), c.detach()
    with torch.autocast(a.device.type, enabled=False):  # float32 also under autocast
        positive = (a.unsqueeze(0) * p).sum(dim=2).t()  # [B, m]
        similarity = a @ c.t()  # [B, N]
    if self_offset is not None:
        rows = torch.arange(len(a), device=a.device)
        cols = torch.arange(len(c), device=a.device)
        similarity = similarity.masked_fill(
            cols[None, :] == rows[:, None] + self_offset, -torch.inf
        )
    negative = similarity.topk(top_k, dim=1).values
    return negative, positive


class GroCoLoss(nn.Module):
    """GroCo over ``V`` view-major views (Shvetsova et al. 2023; instance-dense.md §7(b)).

    Every view is an anchor. A global-crop anchor's positives are the other global crops of its
    sample; a small multi-crop anchor's positives are all global crops (and it uses a sorter of
    size ``top_k + n_global``). Negatives are the ``top_k`` most similar other samples of the
    anchor's own view over the whole (gathered) batch, with gradient only when
    ``stop_grad=False``. The loss is the mean over anchor views.

    Args:
        top_k: negatives per anchor.
        steepness: ``β`` of the Cauchy comparators.
        stop_grad: positives and negatives are constants (the official default).

    ``forward(embeddings [V·B, D], pairs, context)``: ``pairs`` (``Pairs.views(B, V)``) gives
    ``V``; ``context.n_global`` says how many leading views are global crops (every view without
    a context).
    """

    def __init__(self, top_k: int = 10, steepness: float = 1.0, stop_grad: bool = True) -> None:
        super().__init__()
        if top_k < 1:
            raise ContrastkitError(f"GroCo needs top_k ≥ 1 negatives, got {top_k}.")
        if not steepness > 0:
            raise ContrastkitError(f"GroCo needs steepness > 0, got {steepness}.")
        self.top_k, self.steepness, self.stop_grad = top_k, steepness, stop_grad
        self.logged: dict[str, Tensor] = {}

    def forward(
        self, embeddings: Tensor, pairs: Pairs, context: StepContext | None = None
    ) -> Tensor:
        n_views = pairs.n_views
        if n_views is None or n_views < 2 or pairs.n_anchors != len(embeddings):
            raise ContrastkitError(
                "GroCo needs at least two view-major views of one batch; use Pairs.views(B, V)."
            )
        if embeddings.ndim != 2:
            raise ContrastkitError(
                f"GroCo expects embeddings [V·B, D], got {tuple(embeddings.shape)}."
            )
        n_global = n_views if context is None else context.n_global
        if not 2 <= n_global <= n_views:
            raise ContrastkitError(
                f"GroCo needs 2 ≤ n_global ≤ {n_views} global crops to form positives, got "
                f"{n_global}; pass a StepContext with the right n_global."
            )
        rank, _ = world()
        views = embeddings.reshape(n_views, len(embeddings) // n_views, -1)
        batch = views.shape[1]
        loss = embeddings.new_zeros((), dtype=torch.promote_types(embeddings.dtype, torch.float32))
        for v in range(n_views):
            anchors = views[v]
            candidates = gather(anchors.detach()) if self.stop_grad else gather_with_grad(anchors)
            negative, positive = groco_similarities(
                anchors,
                [views[u] for u in range(n_global) if u != v],
                candidates,
                top_k=self.top_k,
                self_offset=rank * batch,
                stop_grad=self.stop_grad,
            )
            loss = loss + groco_loss(negative, positive, self.steepness)
            if v == 0:  # separation of the first view's groups, for logging
                gap = positive.min(dim=1).values - negative.max(dim=1).values
                self.logged = {
                    "pos_min": positive.min(dim=1).values.mean().detach(),
                    "neg_max": negative.max(dim=1).values.mean().detach(),
                    "pos_neg_gap": gap.mean().detach(),
                }
        return loss / n_views

    def extra_repr(self) -> str:
        return f"top_k={self.top_k}, steepness={self.steepness}, stop_grad={self.stop_grad}"
