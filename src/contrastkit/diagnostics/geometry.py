"""Geometry of an embedding set on the unit sphere: alignment and uniformity (Wang & Isola 2020),
tolerance (Wang & Liu 2021) and the per-channel spread that reveals complete collapse
(Chen & He 2021). Thin wrappers over :mod:`contrastkit.functional.geometry`, which holds the
equations; here they take numpy or torch, normalise, and subsample for the O(N²) terms."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from contrastkit.diagnostics._inputs import features_torch, labels_np, positive_number, subsample
from contrastkit.errors import ContrastkitError
from contrastkit.functional.geometry import alignment, tolerance, uniformity

__all__ = ["collapse_std", "sphere_geometry"]

#: Rows used for uniformity (B(B−1)/2 pairwise distances) and tolerance when a set is larger.
MAX_PAIRWISE_ROWS = 2048


def sphere_geometry(
    features: Any,
    labels: Any | None = None,
    positives: Any | None = None,
    *,
    t: float = 2.0,
    alpha: float = 2.0,
    max_rows: int | None = MAX_PAIRWISE_ROWS,
    seed: int = 0,
) -> dict[str, float]:
    """Alignment, uniformity and tolerance of L2-normalised ``features [N, D]``.

    - ``uniformity``: ``log E exp(−t‖x−y‖²)`` (Wang & Isola 2020, eq. 5) over the distinct pairs
      of at most ``max_rows`` rows (drawn under ``seed``); lower is more uniform: 0 at collapse,
      about ``−2t + 2t²/D`` for points uniform on a high-dimensional sphere (−4 + 8/D at t = 2).
    - ``alignment`` (only with ``positives [N, D]``, row ``i`` the positive of ``features[i]``):
      ``E ‖x−y‖^α`` (Wang & Isola 2020, eq. 4).
    - ``tolerance`` (only with ``labels [N]``): mean cosine of same-class pairs
      (Wang & Liu 2021, §4.2, the conditional estimator of instance-dense.md §1 f).
    """
    x = F.normalize(features_torch(features, "features", min_rows=2), dim=1)
    t = positive_number(t, "t")
    alpha = positive_number(alpha, "alpha")
    rows = torch.from_numpy(subsample(len(x), max_rows, seed))
    result = {"uniformity": float(uniformity(x[rows], t=t))}
    if positives is not None:
        y = features_torch(positives, "positives")
        if y.shape != x.shape:
            raise ContrastkitError(
                f"positives must pair row by row with features {tuple(x.shape)}, got {tuple(y.shape)}."
            )
        result["alignment"] = float(alignment(x, F.normalize(y, dim=1), alpha=alpha))
    if labels is not None:
        y = torch.from_numpy(labels_np(labels, "labels", len(x)))
        result["tolerance"] = float(tolerance(x[rows], y[rows]))
    return result


def collapse_std(features: Any) -> float:
    """Standard deviation over samples of the L2-normalised features, averaged over channels and
    scaled by ``√D`` (Chen & He 2021, SimSiam §4.1, Fig. 2): 0 when every sample maps to one
    point (complete collapse), about 1 when the features spread like an isotropic Gaussian.
    The population standard deviation (ddof=0) is used."""
    x = F.normalize(features_torch(features, "features", min_rows=2), dim=1)
    return float(x.std(dim=0, correction=0).mean() * math.sqrt(x.shape[1]))
