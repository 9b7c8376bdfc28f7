"""Objectives as ``nn.Module`` wrappers over :mod:`contrastkit.functional`, grouped by family.

Every single-tower objective is called as ``objective(embeddings, pairs, context)``; see
:mod:`contrastkit.objectives.context`. The two-tower objectives of
:mod:`contrastkit.objectives.multimodal` take the towers' embeddings instead (``objective(a, b)``).
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
from contrastkit.objectives.multimodal import (
    CLIPLoss,
    CoCoSoDaLoss,
    ConVIRTLoss,
    SentenceContrastLoss,
)
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
    "CLIPLoss",
    "CoCoSoDaLoss",
    "ConVIRTLoss",
    "CrossEntropyLoss",
    "DCLLoss",
    "GroCoLoss",
    "HallucinatedNTXent",
    "HydraLoss",
    "InfoNCELoss",
    "MoCoLoss",
    "NTXentLoss",
    "SentenceContrastLoss",
    "StepContext",
    "SupConInstanceLoss",
    "SupConLoss",
    "SwAVLoss",
]
