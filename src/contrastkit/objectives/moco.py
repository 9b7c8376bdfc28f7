"""MoCo v2 and the methods built on its queue, as options of one objective.

* MoCo v2 (He et al. 2020, eq. 1; Chen et al. 2020 "Improved baselines"): query ``q`` of one
  view against its momentum key ``k`` of another and a queue of past keys,
  ``L = CE([q·k, q·Queueᵀ]/τ, 0)``; the keys of every rank are enqueued after the loss.
* MoCHi (Kalantidis et al. 2020): ``mochi=(N, s, s′)`` appends, per query, ``s`` type-1 and
  ``s′`` type-2 synthetic negatives mixed from its ``N`` hardest queue entries; never enqueued.
* Feature Transformation (Zhu et al. 2021, §4): ``transform=True`` extrapolates the positive pair
  (``q̂ = λq + (1−λ)k``, ``k̂ = λk + (1−λ)q``, λ ~ 1 + Beta(α⁺, α⁺)) and interpolates the queue
  (``Q̂ = μQ + (1−μ)Q[π]``, μ ~ Beta(α⁻, α⁻)); scalars per iteration or element-wise.
* Hallucinator (Wu et al. 2023, MoCo variant): ``hallucinate=True`` adds a generated positive
  ``ĥ = G([q; (1+λ)q − λk])`` contrasted against the same key; both copies of ``k`` are enqueued.

The keys come from the method's momentum encoder (``context.targets``). Every variant is the
InfoNCE engine with the keys as candidates (only its own key counts, through a zero negative
weight on the others), the queue as extra negatives and MoCHi's points as per-anchor negatives.
Across ranks each rank uses its own queries and keys with the shared queue (MoCo's semantics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, info_nce
from contrastkit.functional.mixing import feature_transform, mochi_negatives, score_record
from contrastkit.nn.generator import Hallucinator
from contrastkit.nn.queue import Queue
from contrastkit.objectives.context import StepContext

GRANULARITIES = ("scalar", "element")


class MoCoLoss(nn.Module):
    """MoCo v2's queue loss with the MoCHi, Feature-Transformation and Hallucinator options.

    Args:
        dim: embedding dimension (the queue's width).
        temperature: τ (MoCo v2: 0.2).
        queue_size: ``K`` keys kept (MoCo: 65536; a multiple of the global batch keeps whole
            batches).
        symmetric: also contrast the second view's queries with the first view's keys and average
            (the symmetrised loss of MoCo v3); ``False`` is MoCo v2's single direction.
        mochi: ``(N, s, s′)`` hardest-queue count, type-1 and type-2 synthetic negatives.
        mochi_start_step: optimiser step from which MoCHi mixes (a warm-up; 0 = from the start).
        transform: Feature Transformation's positive extrapolation and negative interpolation.
        pos_alpha, neg_alpha: its Beta parameters (official command: 2.0 and 1.6).
        granularity: ``"scalar"`` (one λ and μ per iteration, the official default) or
            ``"element"`` (per feature, as the paper describes).
        hallucinate: add the Hallucinator's generated positives.
        max_lambda: the Hallucinator's λ ~ U(0, max_lambda).
    """

    def __init__(
        self,
        dim: int,
        temperature: float = 0.2,
        *,
        queue_size: int = 65536,
        symmetric: bool = True,
        mochi: tuple[int, int, int] | list[int] | None = None,
        mochi_start_step: int = 0,
        transform: bool = False,
        pos_alpha: float = 2.0,
        neg_alpha: float = 1.6,
        granularity: str = "scalar",
        hallucinate: bool = False,
        max_lambda: float = 0.1,
    ) -> None:
        super().__init__()
        if mochi is not None:
            if len(mochi) != 3 or any(int(v) != v or v < 0 for v in mochi) or mochi[0] < 1:
                raise ContrastkitError(
                    f"mochi must be (N, s, s') with N ≥ 1 hardest negatives and s, s' ≥ 0, got {mochi!r}."
                )
            if mochi[0] > queue_size:
                raise ContrastkitError(
                    f"mochi's N={mochi[0]} exceeds queue_size={queue_size}; lower N or grow the queue."
                )
        if granularity not in GRANULARITIES:
            raise ContrastkitError(
                f"granularity must be one of {GRANULARITIES}, got {granularity!r}."
            )
        if min(pos_alpha, neg_alpha) <= 0:
            raise ContrastkitError("pos_alpha and neg_alpha must be positive Beta parameters.")
        self.temperature = temperature
        self.symmetric = symmetric
        self.mochi = None if mochi is None else tuple(int(v) for v in mochi)
        self.mochi_start_step = mochi_start_step
        self.transform = transform
        self.pos_alpha, self.neg_alpha, self.granularity = pos_alpha, neg_alpha, granularity
        self.queue = Queue(queue_size, dim, init="random", shared=True)
        self.hallucinator = Hallucinator(dim, max_lambda) if hallucinate else None
        self.logged: dict[str, Tensor] = {}

    def forward(
        self, embeddings: Tensor, pairs: Pairs, context: StepContext | None = None
    ) -> Tensor:
        if context is None or context.targets is None:
            raise ContrastkitError(
                "MoCo needs momentum-encoder keys; set model.momentum (e.g. 0.99) in the recipe."
            )
        n = context.n_global
        if (
            n < 2
            or pairs.n_views is None
            or len(context.targets) * pairs.n_views != n * len(embeddings)
        ):
            raise ContrastkitError(
                "MoCo needs at least two global views and keys for each of them."
            )
        queries = embeddings[: len(context.targets)].chunk(n)
        keys = context.targets.chunk(n)
        directions = [(0, 1), (1, 0)] if self.symmetric else [(0, 1)]
        use_mochi = self.mochi is not None and context.step >= self.mochi_start_step
        losses, enqueued, records = [], [], []
        negatives = self.queue()
        for a, b in directions:
            loss, used_keys, record = self._contrast(queries[a], keys[b], negatives, use_mochi)
            losses.append(loss)
            enqueued.append(used_keys)
            records.append(record)
        self.queue.push(torch.cat(enqueued))
        self.logged = _summary(torch.cat(records))
        return torch.stack(losses).mean()

    def _contrast(
        self, q: Tensor, k: Tensor, negatives: Tensor, use_mochi: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One direction: ``(loss, keys to enqueue, score record [B, 5])``."""
        k = F.normalize(k.to(q.dtype), dim=1, eps=1e-12)
        if self.hallucinator is not None:  # extrapolates the un-normalised q, as the code does
            anchors = torch.cat([q, self.hallucinator(q, k)])
            k = torch.cat([k, k])
        else:
            anchors = q
        anchors = F.normalize(anchors, dim=1, eps=1e-12)
        enqueue = k  # FT enqueues the original keys, never the transformed ones
        if self.transform:
            anchors, k, negatives = self._feature_transform(anchors, k, negatives)
        synthetic = None
        if use_mochi:
            n_hardest, n_pairs, n_self = self.mochi
            synthetic = mochi_negatives(
                anchors.detach(), negatives, n_hardest=n_hardest, n_pairs=n_pairs, n_self=n_self
            )
        m = len(k)
        only_own_key = torch.cat([anchors.new_zeros(m), anchors.new_ones(len(negatives))])
        loss = info_nce(
            anchors,
            Pairs.cross(m, device=anchors.device),
            k,
            temperature=self.temperature,
            negative_weight=only_own_key,
            extra_negatives=negatives,
            anchor_negatives=synthetic,
            normalize=False,  # unit features, or FT's deliberately un-renormalised mixtures
            distributed=False,
        )
        return loss, enqueue, score_record(anchors, k, negatives, self.temperature)

    def _feature_transform(
        self, q: Tensor, k: Tensor, negatives: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Zhu et al. 2021, §4.1–4.2 on unit ``q`` (with grad), ``k`` (without) and the queue."""
        shape_pos = q.shape if self.granularity == "element" else ()
        shape_neg = negatives.shape if self.granularity == "element" else ()
        beta_pos = torch.distributions.Beta(self.pos_alpha, self.pos_alpha)
        beta_neg = torch.distributions.Beta(self.neg_alpha, self.neg_alpha)
        amount = beta_pos.sample(shape_pos).to(q.device)  # λ − 1 ∈ [0, 1]
        mu = beta_neg.sample(shape_neg).to(q.device)
        order = torch.randperm(len(negatives), device=negatives.device)
        return feature_transform(q, k, negatives, amount, mu, order)


_RECORD = ("neg_score_mean", "neg_score_var", "pos_score", "neg_exp_mean", "pos_exp")


def _summary(record: Tensor) -> dict[str, Tensor]:
    """Batch means of the score record's columns and the batch variance of the positive score
    (the curves of Zhu et al. 2021, Fig. 2)."""
    means = dict(zip(_RECORD, record.mean(0), strict=True))
    return {**means, "pos_score_var": record[:, 2].var(unbiased=False)}
