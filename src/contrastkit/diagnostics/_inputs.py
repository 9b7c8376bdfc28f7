"""Input checks shared by the diagnostics: features, labels and numbers, as numpy or torch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from contrastkit.errors import ContrastkitError
from contrastkit.eval.inputs import check_features, check_labels

__all__ = [
    "features_np",
    "features_torch",
    "labels_np",
    "positive_int",
    "positive_number",
    "subsample",
]


def features_torch(x: Any, name: str = "features", min_rows: int = 1) -> torch.Tensor:
    """Finite, real ``[N, D]`` features as a float64 CPU tensor with at least ``min_rows`` rows."""
    x = check_features(x, name).detach().to("cpu", torch.float64)
    if len(x) < min_rows:
        raise ContrastkitError(
            f"{name} has {len(x)} rows; this measurement needs at least {min_rows}."
        )
    return x


def features_np(x: Any, name: str = "features", min_rows: int = 1) -> np.ndarray:
    """:func:`features_torch` as a float64 numpy array."""
    return features_torch(x, name, min_rows).numpy()


def labels_np(y: Any, name: str, n: int) -> np.ndarray:
    """``[n]`` non-negative integer class indices as an int64 numpy array."""
    return check_labels(y, name, n).cpu().numpy()


def positive_number(value: Any, name: str) -> float:
    """A finite number > 0 (e.g. a temperature)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ContrastkitError(f"{name} must be a finite number > 0, got {value!r}.")
    if not (math.isfinite(float(value)) and float(value) > 0):
        raise ContrastkitError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ContrastkitError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def subsample(n: int, max_rows: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_rows`` of ``n`` rows, drawn without replacement under
    ``seed`` (all rows, in order, when ``max_rows`` is ``None`` or not smaller than ``n``)."""
    if max_rows is None or max_rows >= n:
        return np.arange(n)
    return np.sort(
        np.random.default_rng(seed).choice(n, positive_int(max_rows, "max_rows"), replace=False)
    )
