"""Weighted k-nearest-neighbour evaluation of frozen features.

The protocol is the weighted kNN classifier of InstDisc (Wu et al., 2018, "Unsupervised Feature
Learning via Non-Parametric Instance Discrimination", §3.4), as used for monitoring in the
SimCLR / MoCo code bases: features are L2-normalised, each test point takes its top-k train
neighbours by cosine similarity ``s``, each neighbour votes for its class with weight
``exp(s / τ)``, and the class with the largest summed weight wins.

No library implements exactly this weighting, so it is written here in torch. Work is chunked
over test rows, so peak memory is ``O(chunk_size × N_train)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from contrastkit.errors import ContrastkitError
from contrastkit.eval.inputs import check_features, check_labels

__all__ = ["knn_accuracy", "knn_predict"]


def knn_predict(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Predict test labels with the weighted kNN of InstDisc (Wu et al., 2018, §3.4).

    Args:
        train_features: ``[N, D]`` reference features (torch or numpy); need not be normalised.
        train_labels: ``[N]`` non-negative integer class indices.
        test_features: ``[M, D]`` query features.
        k: neighbours per query; clipped to ``N``.
        temperature: ``τ`` in the vote weight ``exp(cos_sim / τ)``.
        num_classes: number of classes; defaults to ``max(train_labels) + 1``.
        chunk_size: test rows processed at once (memory is ``O(chunk_size × N)``).

    Returns:
        ``[M]`` int64 predictions on the device of ``train_features``. Ties between classes go
        to the smallest class index.
    """
    train = check_features(train_features, "train_features")
    test = check_features(test_features, "test_features")
    labels = check_labels(train_labels, "train_labels", len(train))
    if len(train) == 0:
        raise ContrastkitError("train_features is empty; kNN needs at least one train sample.")
    if train.shape[1] != test.shape[1]:
        raise ContrastkitError(
            f"train_features have dim {train.shape[1]} but test_features have dim "
            f"{test.shape[1]}; they must come from the same encoder."
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ContrastkitError(f"k must be a positive integer, got {k!r}.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ContrastkitError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)) or (
        temperature <= 0
    ):
        raise ContrastkitError(f"temperature must be a finite number > 0, got {temperature!r}.")
    max_label = int(labels.max())
    if num_classes is None:
        num_classes = max_label + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ContrastkitError(f"num_classes must be a positive integer, got {num_classes!r}.")
    elif max_label >= num_classes:
        raise ContrastkitError(
            f"train_labels contain class {max_label} but num_classes is {num_classes}; "
            "raise num_classes or fix the labels."
        )

    device = train.device
    dtype = torch.promote_types(train.dtype, test.dtype)
    train = F.normalize(train.to(dtype), dim=1)
    labels = labels.to(device)
    k = min(k, len(train))
    preds = torch.empty(len(test), dtype=torch.long, device=device)
    for start in range(0, len(test), chunk_size):
        query = F.normalize(test[start : start + chunk_size].to(device=device, dtype=dtype), dim=1)
        sim = query @ train.T  # [c, N] cosine similarities
        top_sim, top_idx = sim.topk(k, dim=1)  # [c, k]
        # exp(s/τ) shifted by the row maximum: the same argmax, but no overflow for small τ.
        weights = ((top_sim - top_sim[:, :1]) / temperature).exp()
        votes = torch.zeros(len(query), num_classes, dtype=dtype, device=device)
        votes.scatter_add_(1, labels[top_idx], weights)
        preds[start : start + len(query)] = votes.argmax(dim=1)
    return preds


def knn_accuracy(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    **kwargs: Any,
) -> float:
    """Top-1 accuracy of :func:`knn_predict` on ``test_labels`` (same keyword arguments)."""
    preds = knn_predict(train_features, train_labels, test_features, **kwargs)
    if len(preds) == 0:
        raise ContrastkitError("test_features is empty; accuracy needs at least one test sample.")
    test_y = check_labels(test_labels, "test_labels", len(preds))
    return float((preds.cpu() == test_y.cpu()).double().mean())
