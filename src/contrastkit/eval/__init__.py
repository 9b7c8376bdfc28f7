"""Evaluation of frozen features: weighted kNN (InstDisc), a linear probe, paired retrieval,
zero-shot classification, and word / document similarity benchmarks."""

from __future__ import annotations

from contrastkit.eval.knn import knn_accuracy, knn_predict
from contrastkit.eval.linear_probe import linear_probe
from contrastkit.eval.retrieval import (
    bidirectional_retrieval,
    class_prompt_embeddings,
    retrieval_metrics,
    retrieval_ranks,
    zero_shot_accuracy,
    zero_shot_predict,
)
from contrastkit.eval.similarity import (
    lee_similarity,
    load_lee,
    load_word_pairs,
    sentence_benchmarks,
    word_similarity,
)

__all__ = [
    "bidirectional_retrieval",
    "class_prompt_embeddings",
    "knn_accuracy",
    "knn_predict",
    "lee_similarity",
    "linear_probe",
    "load_lee",
    "load_word_pairs",
    "retrieval_metrics",
    "retrieval_ranks",
    "sentence_benchmarks",
    "word_similarity",
    "zero_shot_accuracy",
    "zero_shot_predict",
]
