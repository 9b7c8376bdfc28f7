"""Calibration of a linear probe on frozen embeddings: expected calibration error and the data of
a reliability diagram (Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural
Networks", §2, eq. 3: equal-width confidence bins, top-label confidence)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torchmetrics.functional.classification import multiclass_calibration_error

from contrastkit.diagnostics._inputs import features_np, labels_np, positive_int, positive_number
from contrastkit.errors import ContrastkitError

__all__ = ["expected_calibration_error", "probe_calibration", "reliability_diagram"]


def _probabilities(probabilities: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2 or len(p) == 0:
        raise ContrastkitError(
            f"probabilities must be [N, C] with N ≥ 1 and C ≥ 2 classes, got shape {p.shape}."
        )
    if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(p.sum(axis=1), 1, atol=1e-4):
        raise ContrastkitError(
            "probabilities must be finite, non-negative, with rows summing to 1 (apply softmax)."
        )
    y = labels_np(labels, "labels", len(p))
    if y.max() >= p.shape[1]:
        raise ContrastkitError(
            f"labels contain class {y.max()} but there are {p.shape[1]} classes."
        )
    return p, y


def expected_calibration_error(probabilities: Any, labels: Any, n_bins: int = 15) -> float:
    """``Σ_b (|B_b|/N) |acc(B_b) − conf(B_b)|`` over ``n_bins`` equal-width bins of the top-label
    confidence (Guo et al. 2017, eq. 3), computed by torchmetrics'
    ``multiclass_calibration_error`` (``norm="l1"``)."""
    p, y = _probabilities(probabilities, labels)
    return float(
        multiclass_calibration_error(
            torch.from_numpy(p),
            torch.from_numpy(y),
            num_classes=p.shape[1],
            n_bins=positive_int(n_bins, "n_bins"),
            norm="l1",
        )
    )


def reliability_diagram(probabilities: Any, labels: Any, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per confidence bin ``[k/n, (k+1)/n)`` (the last one closed): ``confidence`` (mean top-label
    probability), ``accuracy`` (fraction of correct top labels; both NaN for an empty bin),
    ``count``, and the bin ``edges``. Hand-written: torchmetrics computes the same bins but only
    returns their weighted sum."""
    p, y = _probabilities(probabilities, labels)
    n_bins = positive_int(n_bins, "n_bins")
    confidence, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, n_bins) / count
        accuracy = np.bincount(index, correct, n_bins) / count
    return {"edges": edges, "confidence": mean_confidence, "accuracy": accuracy, "count": count}


def probe_calibration(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    *,
    C: float = 1.0,
    n_bins: int = 15,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the linear-probe model (``StandardScaler`` + multinomial ``LogisticRegression``, as in
    :func:`contrastkit.eval.linear_probe`) on the train embeddings and measure the calibration of
    its test probabilities: ``ece``, ``accuracy`` and the ``reliability`` bins."""
    x_train = features_np(train_features, "train_features", min_rows=2)
    x_test = features_np(test_features, "test_features")
    y_train = labels_np(train_labels, "train_labels", len(x_train))
    y_test = labels_np(test_labels, "test_labels", len(x_test))
    if x_train.shape[1] != x_test.shape[1]:
        raise ContrastkitError(
            f"train_features have dim {x_train.shape[1]} but test_features have dim "
            f"{x_test.shape[1]}; they must come from the same encoder."
        )
    if len(np.unique(y_train)) < 2:
        raise ContrastkitError("train_labels contain fewer than two classes; a probe needs two.")
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=positive_number(C, "C"), max_iter=1000, random_state=seed),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train.astype(np.float32), y_train)
    # columns follow model.classes_; spread them over every class index so labels index them
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    probabilities = np.zeros((len(x_test), max(n_classes, 2)))
    probabilities[:, model.classes_] = model.predict_proba(x_test.astype(np.float32))
    return {
        "ece": expected_calibration_error(probabilities, y_test, n_bins),
        "accuracy": float((probabilities.argmax(axis=1) == y_test).mean()),
        "reliability": reliability_diagram(probabilities, y_test, n_bins),
    }
