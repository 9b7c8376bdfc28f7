"""Objectives as ``nn.Module`` wrappers over :mod:`contrastkit.functional`, grouped by family."""

from contrastkit.objectives.instance import InfoNCELoss, NTXentLoss

__all__ = ["InfoNCELoss", "NTXentLoss"]
