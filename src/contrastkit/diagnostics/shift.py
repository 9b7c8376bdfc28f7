"""Data-set shift between two embedding sets: the Fréchet distance between Gaussians fitted to
them (Heusel et al. 2017, eq. 6), used as a data-set-shift measure between labelled and unlabelled
pools by Slijepcevic et al. (2022, "Radio Galaxy Zoo: using semi-supervised learning to leverage
large unlabelled data sets for radio galaxy classification under data-set shift", MNRAS 514;
spec labels-multimodal-other.md §13.6). That paper finds the distance has a high sample variance
at O(10³) samples, hence the bootstrap estimate of its variance here."""

from __future__ import annotations

from typing import Any

import numpy as np

from contrastkit.diagnostics._inputs import features_np, positive_int
from contrastkit.errors import ContrastkitError

__all__ = ["frechet_bootstrap", "frechet_distance", "frechet_distance_from_moments"]

#: Rows of each set drawn per bootstrap replicate when a set is larger (cost O(rows · D²)).
MAX_BOOTSTRAP_ROWS = 5000


def frechet_distance_from_moments(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """``‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2})`` (Heusel et al. 2017, eq. 6).

    The trace of the matrix square root is the sum of the square roots of the eigenvalues of
    ``Σ₁Σ₂`` (real and non-negative for covariance matrices), as torchmetrics computes it; this
    avoids ``scipy.linalg.sqrtm``'s complex round-off on near-singular covariances."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, float)), np.atleast_1d(np.asarray(mu2, float))
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, float)),
        np.atleast_2d(np.asarray(sigma2, float)),
    )
    d = len(mu1)
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ContrastkitError(
            "frechet_distance needs two means [D] and two covariances [D, D] of one dimension D."
        )
    eigenvalues = np.linalg.eigvals(sigma1 @ sigma2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues.real, 0, None)).sum()
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)
    return max(value, 0.0)  # round-off can leave −1e-12 for identical sets


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))  # unbiased, as pytorch-fid


def frechet_distance(a: Any, b: Any) -> float:
    """Fréchet distance between Gaussians with the sample means and (unbiased) covariances of
    the embedding sets ``a [N, D]`` and ``b [M, D]``, used as given (not normalised)."""
    a = features_np(a, "first set", min_rows=2)
    b = features_np(b, "second set", min_rows=2)
    if a.shape[1] != b.shape[1]:
        raise ContrastkitError(
            f"The two sets have dimensions {a.shape[1]} and {b.shape[1]}; they must share one space."
        )
    return frechet_distance_from_moments(*_moments(a), *_moments(b))


def frechet_bootstrap(
    a: Any,
    b: Any,
    *,
    n_bootstrap: int = 50,
    seed: int = 0,
    max_rows: int | None = MAX_BOOTSTRAP_ROWS,
) -> dict[str, Any]:
    """The Fréchet distance of ``a`` and ``b`` and its bootstrap distribution: each replicate
    redraws both sets with replacement (Efron 1979) at their size, capped to ``max_rows`` rows, and
    recomputes the distance. Returns ``distance`` (on all rows), ``bootstrap_mean``,
    ``bootstrap_std``, ``bootstrap_var`` (ddof=1) and the ``samples``."""
    a = features_np(a, "first set", min_rows=2)
    b = features_np(b, "second set", min_rows=2)
    n_bootstrap = positive_int(n_bootstrap, "n_bootstrap")
    distance = frechet_distance(a, b)
    rng = np.random.default_rng(seed)
    na, nb = min(len(a), max_rows or len(a)), min(len(b), max_rows or len(b))
    samples = np.array(
        [
            frechet_distance(a[rng.integers(0, len(a), na)], b[rng.integers(0, len(b), nb)])
            for _ in range(n_bootstrap)
        ]
    )
    var = float(samples.var(ddof=1)) if n_bootstrap > 1 else 0.0
    return {
        "distance": distance,
        "bootstrap_mean": float(samples.mean()),
        "bootstrap_std": var**0.5,
        "bootstrap_var": var,
        "samples": samples,
    }
