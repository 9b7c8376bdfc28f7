"""MIL evaluation: bag-level AUC and instance-level accuracy/AUC (Qu et al. 2023, §4, report
both: a good bag score can hide a poor instance classifier)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from contrastkit.errors import ContrastkitError
from contrastkit.eval.inputs import as_tensor

__all__ = ["bag_auc", "instance_metrics", "mil_metrics"]


def _scores_and_labels(scores: Any, labels: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    s = as_tensor(scores, f"{what} scores").double().flatten().cpu().numpy()
    y = as_tensor(labels, f"{what} labels").flatten().cpu().numpy()
    if len(s) != len(y):
        raise ContrastkitError(
            f"There are {len(s)} {what} scores but {len(y)} {what} labels; pass one score each."
        )
    if not np.isfinite(s).all():
        raise ContrastkitError(f"The {what} scores contain NaN or infinite values.")
    if not np.isin(y, (0, 1)).all():
        raise ContrastkitError(f"The {what} labels must be 0/1.")
    if len(np.unique(y)) < 2:
        raise ContrastkitError(f"AUC needs both positive and negative {what}s; got one class.")
    return s, y.astype(int)


def bag_auc(scores: Any, bag_labels: Any) -> float:
    """ROC AUC of positive-bag scores (sklearn's ``roc_auc_score``)."""
    s, y = _scores_and_labels(scores, bag_labels, "bag")
    return float(roc_auc_score(y, s))


def instance_metrics(scores: Any, instance_labels: Any, threshold: float = 0.5) -> dict[str, float]:
    """Instance accuracy and balanced accuracy of ``scores ≥ threshold`` (positive-class
    probabilities), and instance AUC."""
    s, y = _scores_and_labels(scores, instance_labels, "instance")
    predicted = (s >= threshold).astype(int)
    return {
        "instance_accuracy": float((predicted == y).mean()),
        "instance_balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
        "instance_auc": float(roc_auc_score(y, s)),
    }


def mil_metrics(
    bag_scores: Any, bag_labels: Any, instance_scores: Any, instance_labels: Any
) -> dict[str, float]:
    """``{"bag_auc", "instance_accuracy", "instance_balanced_accuracy", "instance_auc"}``."""
    return {"bag_auc": bag_auc(bag_scores, bag_labels)} | instance_metrics(
        instance_scores, instance_labels
    )
