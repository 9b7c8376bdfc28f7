"""The modality gap, or contrastive gap, between two embedding sets (Fahim, Murphy & Fyshe 2024,
"It's Not a Modality Gap: Characterizing and Addressing the Contrastive Gap"; spec
labels-multimodal-other.md §5): how far apart the two sets' centroids lie on the sphere, whether
a linear classifier can tell them apart, and how uniformly each set covers the sphere."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from contrastkit.diagnostics._inputs import features_torch, positive_number, subsample
from contrastkit.errors import ContrastkitError
from contrastkit.functional.geometry import alignment, uniformity
from contrastkit.functional.geometry import cross_uniformity as functional_cross_uniformity

__all__ = ["centroid_distance", "cross_uniformity", "linear_separability", "modality_gap"]

#: Rows of each set used for the O(N²) uniformities and for the separability probe.
MAX_ROWS = 2048


def _pair(a: Any, b: Any, min_rows: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    a = F.normalize(features_torch(a, "first set", min_rows=min_rows), dim=1)
    b = F.normalize(features_torch(b, "second set", min_rows=min_rows), dim=1)
    if a.shape[1] != b.shape[1]:
        raise ContrastkitError(
            f"The two sets have dimensions {a.shape[1]} and {b.shape[1]}; they must share one space."
        )
    return a, b


def centroid_distance(a: Any, b: Any) -> dict[str, float]:
    """Euclidean distance and cosine similarity between the centroids of the L2-normalised sets
    (Fahim et al. 2024, §4; ``get_centroid_euclidean_distance`` in their code)."""
    a, b = _pair(a, b)
    ca, cb = a.mean(dim=0), b.mean(dim=0)
    return {
        "centroid_distance": float((ca - cb).norm()),
        "centroid_cosine": float(F.cosine_similarity(ca, cb, dim=0, eps=1e-12)),
    }


def linear_separability(
    a: Any,
    b: Any,
    *,
    paired: bool = False,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_rows: int | None = MAX_ROWS,
) -> float:
    """Held-out accuracy of a logistic regression telling set ``a`` (0) from set ``b`` (1), fit
    on ``1 − test_fraction`` of the rows (Fahim et al. 2024, §4: 80/20): about 0.5 when the sets
    overlap, 1 when a hyperplane separates them. The sets are balanced (each capped to the smaller
    one and to ``max_rows``) so that 0.5 is chance; ``paired`` rows are split by pair, so a
    held-out row never has its near-copy in the fit set."""
    a, b = _pair(a, b)
    if paired and len(a) != len(b):
        raise ContrastkitError(
            f"paired sets must have the same number of rows, got {len(a)} and {len(b)}."
        )
    n = min(len(a), len(b), max_rows or len(a))
    rows_a = subsample(len(a), n, seed)
    rows_b = rows_a if paired else subsample(len(b), n, seed + 1)
    fit, test = train_test_split(np.arange(n), test_size=test_fraction, random_state=seed)
    a, b = a.numpy()[rows_a], b.numpy()[rows_b]
    # unpaired: the two sets are split independently (the same positions index different samples)
    x_fit, x_test = np.concatenate([a[fit], b[fit]]), np.concatenate([a[test], b[test]])
    y_fit, y_test = np.repeat([0, 1], len(fit)), np.repeat([0, 1], len(test))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(x_fit, y_fit)
    return float(probe.score(x_test, y_test))


def cross_uniformity(a: Any, b: Any, *, t: float = 2.0, paired: bool = False) -> float:
    """``log mean exp(−t‖a_i − b_j‖²)`` over pairs across the L2-normalised sets (Fahim et al.
    2024, eq. 6), leaving out the matched pairs ``i = j`` when ``paired``; the metric form of
    :func:`contrastkit.functional.geometry.cross_uniformity`."""
    a, b = _pair(a, b, min_rows=1)
    if paired and len(a) != len(b):
        raise ContrastkitError("paired sets must have the same number of rows.")
    t = positive_number(t, "t")
    return float(functional_cross_uniformity(a, b, t=t, exclude_matched=paired))


def modality_gap(
    a: Any,
    b: Any,
    *,
    paired: bool = False,
    t: float = 2.0,
    seed: int = 0,
    max_rows: int | None = MAX_ROWS,
) -> dict[str, float]:
    """Every gap measurement of Fahim et al. (2024, §4) for two sets of embeddings (normalised
    here): ``centroid_distance``, ``centroid_cosine``, ``linear_separability``,
    ``uniformity_a``/``uniformity_b`` (each set alone), ``cross_uniformity``, and, when the rows
    are ``paired`` (``a[i]`` matches ``b[i]``: an image and its caption, two views),
    ``alignment`` = ``E‖a_i − b_i‖²``. O(N²) terms use at most ``max_rows`` rows per set."""
    a, b = _pair(a, b)
    if paired and len(a) != len(b):
        raise ContrastkitError(
            f"paired sets must have the same number of rows, got {len(a)} and {len(b)}."
        )
    result = centroid_distance(a, b)
    result["linear_separability"] = linear_separability(
        a, b, paired=paired, seed=seed, max_rows=max_rows
    )
    rows_a = torch.from_numpy(subsample(len(a), max_rows, seed))
    rows_b = rows_a if paired else torch.from_numpy(subsample(len(b), max_rows, seed + 1))
    result["uniformity_a"] = float(uniformity(a[rows_a], t=t))
    result["uniformity_b"] = float(uniformity(b[rows_b], t=t))
    result["cross_uniformity"] = cross_uniformity(a[rows_a], b[rows_b], t=t, paired=paired)
    if paired:
        result["alignment"] = float(alignment(a, b, alpha=2.0))
    return result
