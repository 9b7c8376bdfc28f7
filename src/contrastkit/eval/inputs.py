"""Input checks shared by the evaluation protocols: features and class labels (torch or numpy)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from contrastkit.errors import ContrastkitError


def as_tensor(x: Any, name: str) -> torch.Tensor:
    """``x`` (torch tensor, numpy array or nested sequence) as a detached torch tensor."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError, RuntimeError):
        raise ContrastkitError(
            f"{name} must be a torch tensor or numpy array, got {type(x).__name__}."
        ) from None


def check_features(x: Any, name: str) -> torch.Tensor:
    """Non-empty, finite, real ``[num_samples, dim]`` features, promoted to float32 at least."""
    x = as_tensor(x, name)
    if x.ndim != 2:
        raise ContrastkitError(
            f"{name} must be 2-D [num_samples, dim], got shape {tuple(x.shape)}."
        )
    if x.numel() == 0:
        raise ContrastkitError(f"{name} is empty (shape {tuple(x.shape)}); pass some features.")
    if x.is_complex() or x.dtype == torch.bool:
        raise ContrastkitError(f"{name} must hold real numbers, got dtype {x.dtype}.")
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()  # integers and half precision are promoted to float32
    if not bool(torch.isfinite(x).all()):
        raise ContrastkitError(f"{name} contains NaN or infinite values; clean the features.")
    return x


def check_labels(y: Any, name: str, n: int) -> torch.Tensor:
    """``[n]`` non-negative integer class indices as int64."""
    y = as_tensor(y, name)
    if y.ndim != 1:
        raise ContrastkitError(f"{name} must be 1-D [num_samples], got shape {tuple(y.shape)}.")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ContrastkitError(f"{name} must be integer class indices, got dtype {y.dtype}.")
    if y.numel() != n:
        raise ContrastkitError(
            f"{name} has {y.numel()} entries but the matching features have {n} rows."
        )
    if y.numel() and int(y.min()) < 0:
        raise ContrastkitError(f"{name} must be non-negative class indices, got {int(y.min())}.")
    return y.long()
