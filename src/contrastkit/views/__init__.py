"""Batched, on-device views: image augmentations and multi-view generation (SimCLR, Chen et al.
2020); token-sequence masking/replacement (CoCoSoDa's soft data augmentation, Shi et al. 2023)."""

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
from contrastkit.views.text import TokenViews, mask_tokens, replace_tokens

__all__ = [
    "RECIPES",
    "Augmentation",
    "MultiCrop",
    "MultiView",
    "TokenViews",
    "blur_kernel_size",
    "build_augmentation",
    "check_images",
    "mask_tokens",
    "normalize_images",
    "replace_tokens",
]
