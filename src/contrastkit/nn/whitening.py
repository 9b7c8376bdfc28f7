"""Shuffled Group Whitening (Zhuo et al. 2023, "WhitenedCSE: Whitening-based Contrastive Learning
of Sentence Embeddings", §3.2; spec labels-multimodal-other.md §4b).

Channels are randomly permuted, split into ``G`` groups, each group is ZCA-whitened over the
batch, and the permutation is undone. Each call draws a new permutation, so the same rows
whitened twice give two different "distortions" — WhitenedCSE's extra positives.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError


class ShuffledGroupWhitening(nn.Module):
    """Batch ZCA whitening of random channel groups.

    For rows ``X [B, D]``: ``π`` a random permutation of the ``D`` channels; ``X[:, π]`` split
    into ``G`` groups of ``D/G`` channels; per group ``X̄ = X − mean_b X``,
    ``Σ = X̄ᵀX̄ / B = U diag(λ) Uᵀ``, ``Y = X̄ U diag(λ + eps)^{-1/2} Uᵀ``; groups concatenated
    and ``π`` undone (spec §4b, steps 1–5).

    The covariance, its eigendecomposition and the whitening run in float64 (small
    ``[D/G, D/G]`` matrices, cheap; float32 ``eigh`` loses the small eigenvalues that whitening
    divides by); the output has the input's dtype.

    Args:
        num_groups: ``G``; must divide ``D``.
        eps: added to the eigenvalues (the release has none: ``eps=0`` reproduces it and needs
            full-rank groups).
        grad_through_whitening: back-propagate through the covariance and its eigendecomposition;
            ``False`` (the release: the covariance is rebuilt as a constant) treats the whitening
            matrix as a constant, so only the centring and ``X̄ W`` carry gradient.
    """

    def __init__(
        self, num_groups: int, eps: float = 1e-5, grad_through_whitening: bool = False
    ) -> None:
        super().__init__()
        if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
            raise ContrastkitError(f"num_groups must be a positive integer, got {num_groups!r}.")
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 <= eps < 1:
            raise ContrastkitError(f"eps must be a number in [0, 1) (e.g. 1e-5), got {eps!r}.")
        self.num_groups, self.eps = num_groups, float(eps)
        self.grad_through_whitening = grad_through_whitening

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None, *, num_views: int = 1
    ) -> Tensor:
        """Whiten ``x [B, D]``; ``generator`` draws the channel permutation(s).

        ``x`` may hold ``num_views`` view-major blocks of one batch (WhitenedCSE's dropout
        passes): in training each block is whitened alone with its own permutation; in eval mode
        the whole of ``x`` is whitened with one permutation, as the released class does.
        """
        if not isinstance(x, Tensor) or x.ndim != 2 or not x.dtype.is_floating_point:
            raise ContrastkitError(
                "ShuffledGroupWhitening needs a 2-D float tensor [B, D] of embeddings."
            )
        if isinstance(num_views, bool) or not isinstance(num_views, int) or num_views < 1:
            raise ContrastkitError(f"num_views must be a positive integer, got {num_views!r}.")
        if len(x) % num_views:
            raise ContrastkitError(
                f"{len(x)} rows do not split into {num_views} views of one batch; pass rows "
                "view-major, num_views blocks of B rows each."
            )
        blocks = x.chunk(num_views) if self.training else [x]
        return torch.cat([self._whiten(block, generator) for block in blocks])

    def _whiten(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        rows, dim = x.shape
        groups = self.num_groups
        if dim % groups:
            raise ContrastkitError(
                f"Embedding dimension {dim} is not divisible by num_groups={groups}; choose a "
                f"number of groups that divides {dim}."
            )
        size = dim // groups
        if rows <= size:
            raise ContrastkitError(
                f"Whitening groups of {size} channels need more than {size} rows per view, got "
                f"{rows}; use a larger batch or more groups (smaller groups)."
            )
        order = _permutation(dim, generator, x.device)
        # [G, B, D/G] in float64
        work = x.to(torch.float64)[:, order].reshape(rows, groups, size).transpose(0, 1)
        centred = work - work.mean(dim=1, keepdim=True)
        basis = centred if self.grad_through_whitening else centred.detach()
        covariance = basis.transpose(1, 2) @ basis / rows
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        scale = (eigenvalues.clamp(min=0) + self.eps).rsqrt()
        whitening = (eigenvectors * scale[:, None, :]) @ eigenvectors.transpose(1, 2)
        whitened = (centred @ whitening).transpose(0, 1).reshape(rows, dim)
        return whitened[:, torch.argsort(order)].to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"num_groups={self.num_groups}, eps={self.eps:g}, "
            f"grad_through_whitening={self.grad_through_whitening}"
        )


def _permutation(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """A random permutation of ``n`` channels from ``generator`` (on its device), on ``device``."""
    if generator is None:
        return torch.randperm(n, device=device)
    return torch.randperm(n, generator=generator, device=generator.device).to(device)
