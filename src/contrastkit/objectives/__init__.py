"""Objectives as ``nn.Module`` wrappers over :mod:`contrastkit.functional`, grouped by family."""

from contrastkit.objectives.instance import AlignUniformLoss, DCLLoss, InfoNCELoss, NTXentLoss

__all__ = ["AlignUniformLoss", "DCLLoss", "InfoNCELoss", "NTXentLoss"]
