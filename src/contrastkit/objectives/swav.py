"""SwAV: swapped prediction of online cluster assignments (Caron et al., NeurIPS 2020;
official ``facebookresearch/swav`` ``main_swav.py``; instance-dense.md §8).

For crops ``v`` with scores ``S_v = z_v·Cᵀ`` against L2-normalised prototypes ``C`` and codes
``q_a`` = Sinkhorn(``S_a``) of each assignment crop ``a`` (§3.1), the loss is (eq. 1–2, averaged
over crops as in the official code)::

    ℓ(a, v) = −mean_b Σ_k q_a[b,k] · log softmax(S_v[b]/τ)_k
    L = (1/|A|) Σ_{a∈A} (1/(V−1)) Σ_{v≠a} ℓ(a, v)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional.distributed import world
from contrastkit.functional.pairs import Pairs
from contrastkit.functional.sinkhorn import sinkhorn
from contrastkit.nn.queue import Queue
from contrastkit.objectives.context import StepContext


def log_softmax(scores: Tensor, temperature: float) -> Tensor:
    """``log softmax(scores/τ)`` along dim 1, in float32 or wider, via ``torch.logsumexp``."""
    logits = scores.to(torch.promote_types(scores.dtype, torch.float32)) / temperature
    return logits - torch.logsumexp(logits, dim=1, keepdim=True)


def swapped_prediction(codes: Tensor, scores: Tensor, temperature: float = 0.1) -> Tensor:
    """``ℓ = −mean_b Σ_k q[b,k] · log softmax(s[b]/τ)_k`` (Caron et al. 2020, eq. 2): the cross
    entropy between codes ``q [B, K]`` of one crop and the prediction of another crop's scores
    ``s [B, K]``; with one-hot codes it is ``F.cross_entropy(s/τ, labels)``."""
    if codes.shape != scores.shape or codes.ndim != 2:
        raise ContrastkitError(
            f"Codes {tuple(codes.shape)} and scores {tuple(scores.shape)} must both be [B, K]."
        )
    return -(codes * log_softmax(scores, temperature)).sum(dim=1).mean()


class SwAVLoss(nn.Module):
    """The SwAV objective with its prototypes (a bias-free ``Linear(D → K)``) and optional
    per-rank feature queues (instance-dense.md §8(b)).

    Args:
        embedding_dim: ``D`` of the projected embeddings.
        n_prototypes: ``K``.
        temperature: ``τ`` of the prediction softmax.
        epsilon: Sinkhorn regularisation ``ε``.
        sinkhorn_iterations: Sinkhorn iterations.
        crops_for_assign: indices of the (global) crops whose codes are predicted.
        queue_size: total queue length over all ranks (0: no queue); each rank keeps
            ``queue_size // world_size`` past embeddings per assignment crop.
        queue_start_epoch: the queue is filled from this epoch on and used once full.
        freeze_prototypes_steps: prototypes get no gradient while ``context.step`` is below this.

    ``forward(embeddings [V·B, D], pairs, context)`` takes view-major crops, the
    ``context.n_global`` global crops first. Without a context every view counts as global and
    there is no schedule (no queue, no freezing). In training mode the prototype rows are
    renormalised in place before use, as in the official code; in eval mode they are normalised
    functionally and the queue is not filled.
    """

    def __init__(
        self,
        embedding_dim: int,
        n_prototypes: int = 3000,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        crops_for_assign: Sequence[int] = (0, 1),
        queue_size: int = 0,
        queue_start_epoch: int = 15,
        freeze_prototypes_steps: int = 313,
    ) -> None:
        super().__init__()
        if embedding_dim < 1 or n_prototypes < 1:
            raise ContrastkitError(
                f"SwAV needs embedding_dim ≥ 1 and n_prototypes ≥ 1, got {embedding_dim} and "
                f"{n_prototypes}."
            )
        if not temperature > 0 or not epsilon > 0:
            raise ContrastkitError(
                f"SwAV needs temperature > 0 and epsilon > 0, got {temperature} and {epsilon}."
            )
        if sinkhorn_iterations < 1:
            raise ContrastkitError(
                f"SwAV needs sinkhorn_iterations ≥ 1, got {sinkhorn_iterations}."
            )
        crops = tuple(int(c) for c in crops_for_assign)
        if not crops or min(crops) < 0 or len(set(crops)) != len(crops):
            raise ContrastkitError(
                f"crops_for_assign must be distinct non-negative crop indices, got {crops}."
            )
        if queue_size < 0:
            raise ContrastkitError(f"queue_size must be ≥ 0 (0: no queue), got {queue_size}.")
        self.embedding_dim, self.n_prototypes = embedding_dim, n_prototypes
        self.temperature, self.epsilon = temperature, epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.crops_for_assign = crops
        self.queue_size, self.queue_start_epoch = queue_size, queue_start_epoch
        self.freeze_prototypes_steps = freeze_prototypes_steps
        self.prototypes = nn.Linear(embedding_dim, n_prototypes, bias=False)
        #: one queue per assignment crop, created when first needed (its per-rank size depends
        #: on the world size, known only once the process group exists)
        self.queues = nn.ModuleList()
        self.logged: dict[str, Tensor] = {}

    @property
    def may_skip_parameters(self) -> bool:
        """Whether some steps leave parameters out of the graph (the frozen prototypes), which
        DDP must be told about (``find_unused_parameters``)."""
        return self.freeze_prototypes_steps > 0

    def _new_queues(self, per_rank: int, like: Tensor) -> nn.ModuleList:
        return nn.ModuleList(
            Queue(per_rank, self.embedding_dim, init="zeros", shared=False).to(like)
            for _ in self.crops_for_assign
        )

    def _queues(self, like: Tensor) -> nn.ModuleList:
        if len(self.queues) == 0:
            size = world()[1]
            if self.queue_size // size < 1:
                raise ContrastkitError(
                    f"queue_size={self.queue_size} leaves no row per rank for {size} ranks; "
                    f"use queue_size ≥ {size} or 0."
                )
            self.queues = self._new_queues(self.queue_size // size, like)
        return self.queues

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # a checkpoint taken after the queues were created holds their rows: create them first
        rows = state_dict.get(f"{prefix}queues.0.rows")
        if len(self.queues) == 0 and rows is not None:
            self.queues = self._new_queues(len(rows), rows)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check(self, embeddings: Tensor, pairs: Pairs, n_global: int) -> int:
        """Number of views ``V`` after validating the inputs."""
        n_views = pairs.n_views
        if n_views is None or n_views < 2 or pairs.n_anchors != len(embeddings):
            raise ContrastkitError(
                "SwAV needs at least two view-major crops of one batch; use Pairs.views(B, V)."
            )
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ContrastkitError(
                f"SwAV was built for embeddings [N, {self.embedding_dim}], got "
                f"{tuple(embeddings.shape)}; set embedding_dim to the projector's output size."
            )
        if not 1 <= n_global <= n_views or max(self.crops_for_assign) >= n_global:
            raise ContrastkitError(
                f"crops_for_assign={self.crops_for_assign} must index the {n_global} global "
                f"crops of {n_views} views; lower the indices or pass more global crops."
            )
        return n_views

    def forward(
        self, embeddings: Tensor, pairs: Pairs, context: StepContext | None = None
    ) -> Tensor:
        n_global = (pairs.n_views or 0) if context is None else context.n_global
        n_views = self._check(embeddings, pairs, n_global)

        weight = self.prototypes.weight
        if self.training:  # C ← norm(C) before the forward, in place as the official code
            with torch.no_grad():
                weight.copy_(F.normalize(weight, dim=1, eps=1e-12))
        else:
            weight = F.normalize(weight, dim=1, eps=1e-12)
        if context is not None and context.step < self.freeze_prototypes_steps:
            weight = weight.detach()  # ≡ zeroing the prototype gradient (official)

        with torch.autocast(embeddings.device.type, enabled=False):  # float32 under autocast
            return self._loss(embeddings, weight, n_views, context)

    def _loss(
        self, embeddings: Tensor, weight: Tensor, n_views: int, context: StepContext | None
    ) -> Tensor:
        """The swapped-prediction loss of view-major ``embeddings`` against prototypes ``weight``."""
        batch = len(embeddings) // n_views
        z = F.normalize(embeddings.to(torch.promote_types(embeddings.dtype, torch.float32)), dim=1)
        weight = weight.to(z.dtype)
        scores = z @ weight.t()  # [V·B, K]
        log_p = log_softmax(scores, self.temperature).view(n_views, batch, -1)
        log_p_all = log_p.sum(dim=0)  # Σ_v log p_v; the crop's own term is removed below

        use_queue = (
            self.queue_size > 0 and context is not None and context.epoch >= self.queue_start_epoch
        )
        queues = self._queues(z) if use_queue else None
        loss = scores.new_zeros(())
        code_max = scores.new_zeros(())
        for i, crop in enumerate(self.crops_for_assign):
            rows = slice(crop * batch, (crop + 1) * batch)
            with torch.no_grad():
                assign = scores[rows].detach()
                if queues is not None:
                    queue = queues[i]
                    if queue.full:  # queue rows first: the codes of the batch are the last rows
                        assign = torch.cat([queue().to(z.dtype) @ weight.detach().t(), assign])
                    if self.training:
                        queue.push(z[rows])
                codes = sinkhorn(assign, self.epsilon, self.sinkhorn_iterations)[-batch:]
                code_max = code_max + codes.max(dim=1).values.mean()
            # Σ_{v≠a} ℓ(a, v): crop v predicts the codes q_a of assignment crop a
            loss = loss - (codes * (log_p_all - log_p[crop])).sum(dim=1).mean() / (n_views - 1)
        n_assign = len(self.crops_for_assign)
        self.logged = {"code_max": code_max.detach() / n_assign}
        return loss / n_assign

    def extra_repr(self) -> str:
        return (
            f"embedding_dim={self.embedding_dim}, n_prototypes={self.n_prototypes}, "
            f"temperature={self.temperature}, epsilon={self.epsilon}, "
            f"crops_for_assign={self.crops_for_assign}, queue_size={self.queue_size}"
        )
