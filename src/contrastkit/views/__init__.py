"""Batched, on-device image augmentations and multi-view generation (SimCLR, Chen et al. 2020)."""

from __future__ import annotations

from contrastkit.views.image import (
    RECIPES,
    Augmentation,
    MultiCrop,
    MultiView,
    blur_kernel_size,
    build_augmentation,
    check_images,
    normalize_images,
)

__all__ = [
    "RECIPES",
    "Augmentation",
    "MultiCrop",
    "MultiView",
    "blur_kernel_size",
    "build_augmentation",
    "check_images",
    "normalize_images",
]
