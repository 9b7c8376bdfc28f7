"""Encoders (backbones) and projection heads (SimCLR's f(·) and g(·), Chen et al. 2020)."""

from __future__ import annotations

from contrastkit.nn.backbones import (
    SmallCNN,
    TorchvisionBackbone,
    available_backbones,
    build_backbone,
    resnet18_cifar,
)
from contrastkit.nn.heads import ProjectionHead
from contrastkit.nn.logit_scale import LogitScale
from contrastkit.nn.whitening import ShuffledGroupWhitening

__all__ = [
    "LogitScale",
    "ProjectionHead",
    "ShuffledGroupWhitening",
    "SmallCNN",
    "TorchvisionBackbone",
    "available_backbones",
    "build_backbone",
    "resnet18_cifar",
]
