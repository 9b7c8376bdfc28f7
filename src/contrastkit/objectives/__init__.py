"""Objectives as ``nn.Module`` wrappers over :mod:`contrastkit.functional`, grouped by family.

Every objective is called as ``objective(embeddings, pairs, context)``; see
:mod:`contrastkit.objectives.context`.
"""

from contrastkit.objectives.context import StepContext
from contrastkit.objectives.instance import (
    AlignUniformLoss,
    DCLLoss,
    HallucinatedNTXent,
    InfoNCELoss,
    NTXentLoss,
)
from contrastkit.objectives.moco import MoCoLoss

__all__ = [
    "AlignUniformLoss",
    "DCLLoss",
    "HallucinatedNTXent",
    "InfoNCELoss",
    "MoCoLoss",
    "NTXentLoss",
    "StepContext",
]
