"""Dimensional collapse: the singular-value spectrum of an embedding set and its entropy-based
effective rank (Roy & Vetterli 2007), for backbone features, projector outputs or any layer
between them (Jing et al. 2022, "Understanding Dimensional Collapse in Contrastive
Self-supervised Learning"; Xue et al. 2024, "Investigating the Benefits of Projection Head")."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import scipy.stats

from contrastkit.diagnostics._inputs import features_np
from contrastkit.errors import ContrastkitError

__all__ = ["covariance_spectrum", "effective_rank", "singular_values", "spectrum_summary"]


def singular_values(features: Any, *, center: bool = True) -> np.ndarray:
    """Singular values of the ``[N, D]`` embedding matrix (mean-centred by default), descending;
    ``min(N, D)`` values."""
    x = features_np(features, "features", min_rows=2 if center else 1)
    if center:
        x = x - x.mean(axis=0)
    return scipy.linalg.svdvals(x)


def covariance_spectrum(features: Any) -> np.ndarray:
    """Singular values of the embedding covariance ``C = (1/N) Σ (z − z̄)(z − z̄)ᵀ``, descending
    (Jing et al. 2022, §3, Fig. 2, who plot their logarithm); ``D`` values, zero-padded when
    ``N ≤ D``. Equal to the squared :func:`singular_values` divided by ``N``."""
    x = features_np(features, "features", min_rows=2)
    s = singular_values(x) ** 2 / len(x)
    return np.pad(s, (0, x.shape[1] - len(s)))


def effective_rank(spectrum: Any) -> float:
    """Effective rank ``exp(H(p))``, ``p_k = σ_k / Σ σ`` (Roy & Vetterli 2007, eq. 2–3): ``k``
    equal values give ``k``; one non-zero value gives 1; invariant to scale."""
    s = np.asarray(spectrum, dtype=np.float64).reshape(-1)
    if s.size == 0 or not np.isfinite(s).all() or (s < 0).any():
        raise ContrastkitError(
            "effective_rank needs a non-empty spectrum of finite, non-negative singular values."
        )
    if s.sum() == 0:
        return 0.0  # all features identical: no dimension is used
    return float(np.exp(scipy.stats.entropy(s)))  # entropy() normalises s to a distribution


def spectrum_summary(features: Any) -> dict[str, float]:
    """Numbers for one embedding set: ``effective_rank`` of the centred embedding matrix (Roy &
    Vetterli), ``effective_rank_fraction`` = effective rank / ``min(N − 1, D)`` (the largest
    rank a centred matrix can have), ``top_variance_fraction`` = largest covariance eigenvalue /
    total variance, and ``dim`` = D."""
    x = features_np(features, "features", min_rows=2)
    s = singular_values(x)
    rank = effective_rank(s)
    variance = s**2
    return {
        "dim": int(x.shape[1]),
        "effective_rank": rank,
        "effective_rank_fraction": rank / min(len(x) - 1, x.shape[1]),
        "top_variance_fraction": float(variance[0] / variance.sum()) if variance.sum() else 1.0,
    }
