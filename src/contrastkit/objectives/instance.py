"""Instance-discrimination objectives as modules over the InfoNCE engine."""

from __future__ import annotations

from torch import Tensor, nn

from contrastkit.functional import Pairs, info_nce


class InfoNCELoss(nn.Module):
    """A member of the InfoNCE family; its options are those of
    :func:`contrastkit.functional.info_nce` (``exclude_positives=True`` is DCL)."""

    def __init__(
        self, temperature: float = 0.1, *, exclude_positives: bool = False, normalize: bool = True
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.exclude_positives = exclude_positives
        self.normalize = normalize

    def forward(self, embeddings: Tensor, pairs: Pairs, **options) -> Tensor:
        """Loss of ``embeddings [N, D]`` (view-major) under ``pairs``; ``options`` are passed on
        (``extra_negatives``, ``positive_weight``, ``negative_weight``, ``candidates``)."""
        return info_nce(
            embeddings,
            pairs,
            temperature=self.temperature,
            exclude_positives=self.exclude_positives,
            normalize=self.normalize,
            **options,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, exclude_positives={self.exclude_positives}"


class NTXentLoss(InfoNCELoss):
    """NT-Xent of SimCLR (Chen et al. 2020, eq. 1): the engine with positives in the denominator."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__(temperature, exclude_positives=False)
