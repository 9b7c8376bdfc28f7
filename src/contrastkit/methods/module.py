"""The generic method: views → backbone → head (→ predictor) → objective, with pair structure
from ids, and an optional momentum encoder whose embeddings reach the objective as targets.

A method is a composition, not a subclass: SimCLR, SupCon, DCL, MoCo, SwAV … differ only in the
objective, its options and the optional parts (momentum encoder, predictor, multi-crop views).
Plain PyTorch (no Lightning), so it can be driven by any loop; :mod:`contrastkit.train` wraps it
for Lightning.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs
from contrastkit.methods.grad_cache import grad_cache_backward
from contrastkit.nn.momentum import MomentumEncoder
from contrastkit.objectives.context import StepContext
from contrastkit.views import MultiCrop, MultiView

Positives = Literal["views", "labels"]


class ContrastiveMethod(nn.Module):
    """Train-time composition of a contrastive method.

    Args:
        backbone: maps inputs to ``[B, feature_dim]`` features (what evaluation uses).
        head: maps features to the embeddings the objective sees (SimCLR's projection head).
        objective: a module called as ``objective(embeddings, pairs, context)`` (see
            :mod:`contrastkit.objectives.context`).
        views: makes ``V`` augmented views per sample on the input's device, view-major
            (:class:`MultiView`), or global views plus small crops (:class:`MultiCrop`).
        positives: ``"views"`` (instance discrimination) or ``"labels"`` (supervised, SupCon).
        predictor: applied after the head on the online branch only (MoCo v3, BYOL).
        momentum: ``(base, schedule, bn_groups)`` of a momentum copy of backbone + head
            (:class:`~contrastkit.nn.momentum.MomentumEncoder`) whose embeddings of the global
            views are the objective's ``context.targets``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        objective: nn.Module,
        views: MultiView | MultiCrop,
        positives: Positives = "views",
        *,
        predictor: nn.Module | None = None,
        momentum: tuple[float, str, int] | None = None,
    ) -> None:
        super().__init__()
        if positives not in ("views", "labels"):
            raise ContrastkitError(f"positives must be 'views' or 'labels', got {positives!r}.")
        self.backbone, self.head, self.objective, self.views = backbone, head, objective, views
        self.predictor = predictor
        self.positives = positives
        self.momentum = (
            None if momentum is None else MomentumEncoder(nn.Sequential(backbone, head), *momentum)
        )
        self.last_step: tuple[Tensor, Pairs] | None = None  # (detached embeddings, pairs)

    def pairs(self, n_samples: int, labels: Tensor | None, device: torch.device) -> Pairs:
        n_views = self.views.n_views
        if self.positives == "views":
            return Pairs.views(n_samples, n_views, device=device)
        if labels is None:
            raise ContrastkitError("This method contrasts by label; pass labelled data (y).")
        return Pairs.labels(labels.to(device), n_views)

    def project(self, views: Tensor) -> Tensor:
        """Online embeddings of a batch of views (backbone → head → predictor)."""
        z = self.head(self.backbone(views))
        return z if self.predictor is None else self.predictor(z)

    def training_loss(
        self,
        x: Tensor,
        labels: Tensor | None = None,
        *,
        step: int = 0,
        epoch: int = 0,
        progress: float = 0.0,
    ) -> Tensor:
        """The objective on one batch of raw inputs ``x [B, ...]``; ``step``/``epoch``/``progress``
        drive schedules (momentum, SwAV's freezing and queue)."""
        groups = self._view_groups(x)
        embeddings = torch.cat([self.project(g) for g in groups])
        return self._objective(embeddings, groups[0], x, labels, step, epoch, progress)

    def backward_in_chunks(
        self,
        x: Tensor,
        labels: Tensor | None,
        chunk_size: int,
        *,
        step: int = 0,
        epoch: int = 0,
        progress: float = 0.0,
    ) -> Tensor:
        """Back-propagate :meth:`training_loss` with the activation memory of ``chunk_size`` views
        (GradCache, Gao et al. 2021); returns the detached loss. Batch statistics (BatchNorm)
        are then per chunk."""
        groups = self._view_groups(x)  # made once: both passes see the same views
        if len(groups) > 1:
            raise ContrastkitError(
                "train.grad_cache_chunk does not support multi-crop views; unset views.small_crops."
            )
        return grad_cache_backward(
            self.project,
            groups[0],
            lambda z: self._objective(z, groups[0], x, labels, step, epoch, progress),
            chunk_size,
        )

    def _view_groups(self, x: Tensor) -> list[Tensor]:
        views = self.views(x)
        return views if isinstance(views, list) else [views]

    def _objective(
        self,
        embeddings: Tensor,
        global_views: Tensor,
        x: Tensor,
        labels: Tensor | None,
        step: int,
        epoch: int,
        progress: float,
    ) -> Tensor:
        targets = None
        if self.momentum is not None:  # MoCo: update the key encoder, then compute the keys
            self.momentum.update(nn.Sequential(self.backbone, self.head), progress)
            targets = self.momentum(global_views)
        context = StepContext(
            targets=targets,
            labels=labels,
            n_global=self.views.n_global,
            step=step,
            epoch=epoch,
            progress=progress,
        )
        pairs = self.pairs(len(x), labels, embeddings.device)
        loss = self.objective(embeddings, pairs, context)
        self.last_step = (embeddings.detach(), pairs)
        return loss

    @torch.no_grad()
    def embed(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Frozen backbone features (pre-projection) of un-augmented inputs, in eval mode."""
        was_training = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            chunks = [
                self.backbone(chunk.to(device)).float().cpu() for chunk in x.split(batch_size)
            ]
        finally:
            self.train(was_training)
        return torch.cat(chunks) if chunks else torch.empty(0)
