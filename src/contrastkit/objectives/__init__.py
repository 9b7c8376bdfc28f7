"""Objectives as ``nn.Module`` wrappers over :mod:`contrastkit.functional`, grouped by family.

Every objective is called as ``objective(embeddings, pairs, context)``; see
:mod:`contrastkit.objectives.context`.
"""

from contrastkit.objectives.amcl import AMCLLoss
from contrastkit.objectives.cacr import CACRLoss
from contrastkit.objectives.context import StepContext
from contrastkit.objectives.groco import GroCoLoss
from contrastkit.objectives.instance import (
    AlignUniformLoss,
    DCLLoss,
    HallucinatedNTXent,
    InfoNCELoss,
    NTXentLoss,
)
from contrastkit.objectives.moco import MoCoLoss
from contrastkit.objectives.supervised import (
    CrossEntropyLoss,
    HydraLoss,
    SupConInstanceLoss,
    SupConLoss,
)
from contrastkit.objectives.swav import SwAVLoss

__all__ = [
    "AMCLLoss",
    "AlignUniformLoss",
    "CACRLoss",
    "CrossEntropyLoss",
    "DCLLoss",
    "GroCoLoss",
    "HallucinatedNTXent",
    "HydraLoss",
    "InfoNCELoss",
    "MoCoLoss",
    "NTXentLoss",
    "StepContext",
    "SupConInstanceLoss",
    "SupConLoss",
    "SwAVLoss",
]
