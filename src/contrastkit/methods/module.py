"""The generic method: views → backbone → head → objective, with pair structure from ids.

A method is a composition, not a subclass: SimCLR, SupCon, DCL, … differ only in the objective's
options and in which ids make positives. Plain PyTorch (no Lightning), so it can be driven by any
loop; :mod:`contrastkit.train` wraps it for Lightning.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs
from contrastkit.methods.grad_cache import grad_cache_backward
from contrastkit.views import MultiView

Positives = Literal["views", "labels"]


class ContrastiveMethod(nn.Module):
    """Train-time composition of a contrastive method.

    Args:
        backbone: maps inputs to ``[B, feature_dim]`` features (what evaluation uses).
        head: maps features to the embeddings the objective sees (SimCLR's projection head).
        objective: a module called as ``objective(embeddings, pairs)``.
        views: makes ``V`` augmented views per sample on the input's device, view-major.
        positives: ``"views"`` (instance discrimination) or ``"labels"`` (supervised, SupCon).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        objective: nn.Module,
        views: MultiView,
        positives: Positives = "views",
    ) -> None:
        super().__init__()
        if positives not in ("views", "labels"):
            raise ContrastkitError(f"positives must be 'views' or 'labels', got {positives!r}.")
        self.backbone, self.head, self.objective, self.views = backbone, head, objective, views
        self.positives = positives

    def pairs(self, n_samples: int, labels: Tensor | None, device: torch.device) -> Pairs:
        n_views = self.views.n_views
        if self.positives == "views":
            return Pairs.views(n_samples, n_views, device=device)
        if labels is None:
            raise ContrastkitError("This method contrasts by label; pass labelled data (y).")
        return Pairs.labels(labels.to(device), n_views)

    def training_loss(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """The objective on one batch of raw inputs ``x [B, ...]``."""
        views = self.views(x)
        embeddings = self.head(self.backbone(views))
        return self.objective(embeddings, self.pairs(len(x), labels, embeddings.device))

    def backward_in_chunks(self, x: Tensor, labels: Tensor | None, chunk_size: int) -> Tensor:
        """Back-propagate :meth:`training_loss` with the activation memory of ``chunk_size`` views
        (GradCache, Gao et al. 2021); returns the detached loss. Batch statistics (BatchNorm)
        are then per chunk."""
        views = self.views(x)  # made once: both passes see the same views
        pairs = self.pairs(len(x), labels, views.device)
        return grad_cache_backward(
            lambda v: self.head(self.backbone(v)),
            views,
            lambda z: self.objective(z, pairs),
            chunk_size,
        )

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
