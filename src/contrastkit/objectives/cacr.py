"""CACR as an objective: contrastive attraction and contrastive repulsion (Zheng et al.,
TMLR 2023, arXiv:2105.03746), in both official forms (``JegZheng/CACR-SSL``)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional.cacr import (
    cacr_momentum_loss,
    contrastive_attraction,
    contrastive_repulsion,
)
from contrastkit.functional.distributed import gather, gather_with_grad, world
from contrastkit.functional.pairs import Pairs
from contrastkit.objectives.context import StepContext

Variant = Literal["small-scale", "momentum"]


class CACRLoss(nn.Module):
    """CACR (Zheng et al. 2023): ``L = L_CA + L_CR``, the expected costs under the conditional
    distributions of positives and negatives given the query.

    ``variant="small-scale"`` (official ``small_scale_experiments``): ``embeddings`` are ``V``
    views of the batch, ``[V·B, D]`` view-major, L2-normalised here. Attraction: each view's
    positives are the sample's other ``V − 1`` views, averaged over views. Repulsion: for every
    view pair ``v < u`` (not symmetric), anchors from view ``v`` and negatives from view ``u``
    excluding the anchor's own sample, averaged over the pairs. Weights keep their gradient
    unless ``detach_weights``. Under ``torch.distributed`` the negatives are view ``u`` of the
    whole global batch, gathered with gradient (the official code has no distributed path; this
    is our choice, so that W processes compute the one-process loss on the global batch); for
    ``cost="rbf"`` the batch mean inside the log is also taken over the global batch.

    ``variant="momentum"`` (official ImageNet code, MoCo-v3 style): ``embeddings`` are the online
    queries of all ``V`` views, ``context.targets`` the momentum keys of the first ``K`` views
    (``K`` = ``len(targets) / B``: 2 global views in the official "light" mode, all in
    ``--use-full-mode``). For key view ``i`` the queries are all views but ``i``; the keys are
    gathered from every process without gradient and the positive sits at its global index. The
    loss is the mean over key views of :func:`cacr_momentum_loss` (``cost="rbf"`` default, or
    ``"euclidean"``; temperature ``T`` divides). The Euclidean form sums over the local batch, as
    the official code does, so its scale grows with the per-process batch.

    Args:
        alpha, beta: attraction / repulsion cost scales (small-scale).
        tau_pos, tau_neg: t⁺ and t⁻, inverse temperatures multiplying distances (small-scale;
            official CIFAR-10 ``tau_neg`` 0.9, CIFAR-100/STL-10 2.0).
        without_w1, without_w2: the official ablations: plain means instead of the attraction /
            repulsion weights (small-scale).
        debiased, tau_plus: the official debiased repulsion (small-scale, Euclidean).
        cost: small-scale repulsion cost ``"euclidean"`` (default) or ``"rbf"`` (official
            commented-out variant, kernel ``rbf_t``); momentum cost ``"rbf"`` (default) or
            ``"euclidean"`` (``1 − q·k``).
        temperature: T of the momentum variant.
        detach_weights: default ``False`` for small-scale and ``True`` for momentum, as in the
            official code paths.
        distributed: gather across processes; ``None``: when a process group of > 1 rank exists.
    """

    def __init__(
        self,
        variant: Variant = "small-scale",
        *,
        alpha: float = 1.0,
        beta: float = 1.0,
        tau_pos: float = 1.0,
        tau_neg: float = 0.9,
        without_w1: bool = False,
        without_w2: bool = False,
        debiased: bool = False,
        tau_plus: float = 0.1,
        cost: str | None = None,
        rbf_t: float = 2.0,
        temperature: float = 1.0,
        detach_weights: bool | None = None,
        distributed: bool | None = None,
    ) -> None:
        super().__init__()
        if variant not in ("small-scale", "momentum"):
            raise ContrastkitError(
                f"CACR variant must be 'small-scale' or 'momentum', got {variant!r}."
            )
        costs = ("euclidean", "rbf")
        cost = ("euclidean" if variant == "small-scale" else "rbf") if cost is None else cost
        if cost not in costs:
            raise ContrastkitError(f"CACR cost must be 'euclidean' or 'rbf', got {cost!r}.")
        if not (isinstance(temperature, int | float) and temperature > 0):
            raise ContrastkitError(f"CACR temperature must be positive, got {temperature!r}.")
        if debiased and not 0 <= tau_plus < 1:
            raise ContrastkitError(f"tau_plus must lie in [0, 1), got {tau_plus!r}.")
        self.variant, self.cost = variant, cost
        self.alpha, self.beta, self.tau_pos, self.tau_neg = alpha, beta, tau_pos, tau_neg
        self.without_w1, self.without_w2 = without_w1, without_w2
        self.debiased, self.tau_plus, self.rbf_t = debiased, tau_plus, rbf_t
        self.temperature = temperature
        self.detach_weights = variant == "momentum" if detach_weights is None else detach_weights
        self.distributed = distributed
        self.logged: dict[str, Tensor] = {}

    def forward(
        self, embeddings: Tensor, pairs: Pairs, context: StepContext | None = None
    ) -> Tensor:
        n_views = pairs.n_views
        if (
            n_views is None
            or n_views < 2
            or pairs.n_anchors != len(embeddings)
            or embeddings.ndim != 2
        ):
            raise ContrastkitError(
                "CACR needs view-major embeddings [V·B, D] of V ≥ 2 views; use Pairs.views(B, V)."
            )
        views = embeddings.reshape(n_views, -1, embeddings.shape[1])  # [V, B, D]
        distributed = world()[1] > 1 if self.distributed is None else self.distributed
        if self.variant == "momentum":
            return self._momentum(views, context, distributed)
        return self._small_scale(views, distributed)

    def _small_scale(self, views: Tensor, distributed: bool) -> Tensor:
        n_views, batch, _ = views.shape
        views = F.normalize(views.to(torch.promote_types(views.dtype, torch.float32)), dim=-1)
        # attraction: query view v against the sample's other views; the mean over (v, b) equals
        # the official mean over views of per-view batch means
        others = torch.tensor(
            [[u for u in range(n_views) if u != v] for v in range(n_views)], device=views.device
        )
        attraction = contrastive_attraction(
            views.reshape(n_views * batch, -1),
            views[others].permute(0, 2, 1, 3).reshape(n_views * batch, n_views - 1, -1),
            alpha=self.alpha,
            tau_pos=self.tau_pos,
            weighted=not self.without_w1,
            detach_weights=self.detach_weights,
            normalize=False,
        )
        offset, candidates = 0, views
        if distributed:  # negatives from the whole global batch, gathered with gradient
            offset = world()[0] * batch
            candidates = gather_with_grad(views.transpose(0, 1)).transpose(0, 1)
        options = dict(
            self_offset=offset,
            beta=self.beta,
            tau_neg=self.tau_neg,
            weighted=not self.without_w2,
            detach_weights=self.detach_weights,
            cost=self.cost,
            rbf_t=self.rbf_t,
            debiased=self.debiased,
            tau_plus=self.tau_plus,
            normalize=False,
        )
        view_pairs = [(v, u) for v in range(n_views) for u in range(v + 1, n_views)]
        if self.cost == "euclidean":
            repulsion = torch.stack(
                [contrastive_repulsion(views[v], candidates[u], **options) for v, u in view_pairs]
            ).mean()
        else:  # β·log(batch mean of per-anchor kernel sums), the batch mean over all processes
            log_means = torch.stack(
                [
                    contrastive_repulsion(views[v], candidates[u], reduction="none", **options)
                    for v, u in view_pairs
                ],
                dim=1,
            )  # [B, pairs]
            if distributed:
                log_means = gather_with_grad(log_means)
            log_batch_mean = torch.logsumexp(log_means, dim=0) - math.log(len(log_means))
            repulsion = self.beta * log_batch_mean.mean()
        self.logged = {"attraction": attraction.detach(), "repulsion": repulsion.detach()}
        return attraction + repulsion

    def _momentum(self, views: Tensor, context: StepContext | None, distributed: bool) -> Tensor:
        n_views, batch, dim = views.shape
        targets = None if context is None else context.targets
        if targets is None or targets.ndim != 2 or targets.shape[1] != dim:
            raise ContrastkitError(
                f"CACR's momentum variant needs context.targets, the momentum keys [K·B, {dim}]; "
                "run it with a momentum encoder."
            )
        n_keys = len(targets) // batch
        if n_keys * batch != len(targets) or not 1 <= n_keys <= n_views:
            raise ContrastkitError(
                f"context.targets has {len(targets)} rows; it must hold K ≤ {n_views} key views "
                f"of the {batch}-sample batch, view-major."
            )
        keys = targets.detach().reshape(n_keys, batch, dim)
        offset, all_keys = 0, keys
        if distributed:  # keys of every process, no gradient; positives at the global index
            offset = world()[0] * batch
            all_keys = gather(keys.transpose(0, 1).contiguous()).transpose(0, 1)
        losses = [
            cacr_momentum_loss(
                torch.cat([views[:i], views[i + 1 :]]),
                keys[i],
                all_keys=all_keys[i],
                key_offset=offset,
                temperature=self.temperature,
                cost=self.cost,
                detach_weights=self.detach_weights,
            )
            for i in range(n_keys)
        ]
        return torch.stack(losses).mean()

    def extra_repr(self) -> str:
        if self.variant == "momentum":
            return f"variant='momentum', cost={self.cost!r}, temperature={self.temperature}"
        return (
            f"variant='small-scale', alpha={self.alpha}, beta={self.beta}, "
            f"tau_pos={self.tau_pos}, tau_neg={self.tau_neg}, cost={self.cost!r}"
        )
