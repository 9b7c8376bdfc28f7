"""Evaluation of frozen features: weighted kNN (InstDisc) and a linear probe."""

from __future__ import annotations

from contrastkit.eval.knn import knn_accuracy, knn_predict
from contrastkit.eval.linear_probe import linear_probe

__all__ = ["knn_accuracy", "knn_predict", "linear_probe"]
