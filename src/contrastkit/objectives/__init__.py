"""Objectives as ``nn.Module`` wrappers over :mod:`contrastkit.functional`, grouped by family."""

from contrastkit.objectives.instance import DCLLoss, InfoNCELoss, NTXentLoss

__all__ = ["DCLLoss", "InfoNCELoss", "NTXentLoss"]
