"""Instance-discrimination objectives as modules over the InfoNCE engine."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, alignment, info_nce, uniformity, vmf_positive_weights
from contrastkit.nn.generator import Hallucinator
from contrastkit.objectives.context import StepContext


def two_views(embeddings: Tensor, pairs: Pairs, what: str) -> tuple[Tensor, Tensor]:
    """The two views ``[B, D]`` of a view-major batch, checked against ``pairs``."""
    if pairs.n_views != 2 or pairs.n_anchors != len(embeddings):  # structural: no host sync
        raise ContrastkitError(f"{what} need two views of one batch; use Pairs.views(B, 2).")
    first, second = embeddings.chunk(2)
    return first, second


class InfoNCELoss(nn.Module):
    """A member of the InfoNCE family; its options are those of
    :func:`contrastkit.functional.info_nce` (``exclude_positives=True`` is DCL,
    ``hard_negatives`` Wang & Liu's hard contrastive loss)."""

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        exclude_positives: bool = False,
        hard_negatives: int | float | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.exclude_positives = exclude_positives
        self.hard_negatives = hard_negatives
        self.normalize = normalize

    def forward(
        self, embeddings: Tensor, pairs: Pairs, context: StepContext | None = None, **options
    ) -> Tensor:
        """Loss of ``embeddings [N, D]`` (view-major) under ``pairs``; ``options`` are passed on
        (``extra_negatives``, ``positive_weight``, ``negative_weight``, ``candidates``)."""
        return info_nce(
            embeddings,
            pairs,
            temperature=self.temperature,
            exclude_positives=self.exclude_positives,
            hard_negatives=self.hard_negatives,
            normalize=self.normalize,
            **options,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, exclude_positives={self.exclude_positives}"


class NTXentLoss(InfoNCELoss):
    """NT-Xent of SimCLR (Chen et al. 2020, eq. 1): the engine with positives in the denominator."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__(temperature, exclude_positives=False)


class DCLLoss(InfoNCELoss):
    """Decoupled contrastive loss (Yeh et al. 2022, eq. 6): positives leave the denominator,
    which removes NT-Xent's negative–positive coupling (DCL = NT-Xent + log q).

    ``weighted=True`` is DCLW: the positive term of anchor ``i`` is scaled by the von Mises–Fisher
    weight :func:`~contrastkit.functional.vmf_positive_weights` of its pair; it needs a two-view,
    view-major batch (``Pairs.views(B, 2)``).
    """

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        weighted: bool = False,
        sigma: float = 0.5,
        detach_weight: bool = False,
    ) -> None:
        super().__init__(temperature, exclude_positives=True)
        self.weighted, self.sigma, self.detach_weight = weighted, sigma, detach_weight

    def forward(
        self, embeddings: Tensor, pairs: Pairs, context: StepContext | None = None, **options
    ) -> Tensor:
        if self.weighted:
            z1, z2 = two_views(embeddings, pairs, "DCLW weights")
            weight = vmf_positive_weights(z1, z2, self.sigma, detach=self.detach_weight)
            options["positive_weight"] = weight.repeat(2)
        return super().forward(embeddings, pairs, context, **options)


class HallucinatedNTXent(NTXentLoss):
    """SimCLR with the Hallucinator (Wu et al. 2023, SimCLR variant): with ``q, k`` the two views'
    projections, ``[q ; G(q, k)]`` is paired with ``[k ; k]`` and NT-Xent runs over the four
    blocks (``2B`` samples of two views each). As in the official code, the two copies of ``k``
    are distinct samples, so each is a negative of the other's anchors."""

    def __init__(self, dim: int, temperature: float = 0.1, max_lambda: float = 0.1) -> None:
        super().__init__(temperature)
        self.hallucinator = Hallucinator(dim, max_lambda)

    def forward(
        self, embeddings: Tensor, pairs: Pairs, context: StepContext | None = None, **options
    ) -> Tensor:
        q, k = two_views(embeddings, pairs, "The Hallucinator's SimCLR variant")
        doubled = torch.cat([q, self.hallucinator(q, k), k, k])
        return super().forward(
            doubled, Pairs.views(2 * len(q), 2, device=q.device), context, **options
        )


class AlignUniformLoss(nn.Module):
    """Alignment + uniformity as a training objective (Wang & Isola 2020, §4.3):
    ``w_a · align(x, y; α) + w_u · (uniform(x; t) + uniform(y; t)) / 2`` on L2-normalised views."""

    def __init__(
        self,
        alpha: float = 2.0,
        t: float = 2.0,
        align_weight: float = 1.0,
        uniform_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.alpha, self.t = alpha, t
        self.align_weight, self.uniform_weight = align_weight, uniform_weight

    def forward(
        self, embeddings: Tensor, pairs: Pairs, context: StepContext | None = None
    ) -> Tensor:
        x, y = two_views(F.normalize(embeddings, dim=1, eps=1e-12), pairs, "Alignment/uniformity")
        uniform = (uniformity(x, self.t) + uniformity(y, self.t)) / 2
        return self.align_weight * alignment(x, y, self.alpha) + self.uniform_weight * uniform
