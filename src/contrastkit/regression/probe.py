"""Regression evaluation under the imbalanced-regression protocol (Yang et al. 2021, "Delving into
Deep Imbalanced Regression", §4): the target range is cut into bins of equal width; a bin is
*many-shot* with more than 100 training samples, *medium-shot* with 20–100 and *few-shot* with
fewer than 20 (including none). MAE is reported overall and per region.

:func:`regression_probe` is the linear-probe analogue for continuous targets: ridge regression
(``StandardScaler`` + ``RidgeCV``, α by efficient leave-one-out on the train set) on frozen
features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from contrastkit.errors import ContrastkitError
from contrastkit.eval.inputs import check_features
from contrastkit.regression.pairs import check_targets

__all__ = ["ALPHAS", "REGIONS", "regression_metrics", "regression_probe", "shot_regions"]

#: region names, in order of the training count
REGIONS = ("many", "medium", "few")
#: ridge strengths searched by :func:`regression_probe`
ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-3, 4, 15))


def _bins(targets: np.ndarray, bin_width: float, origin: float) -> np.ndarray:
    return np.floor((targets - origin) / bin_width).astype(np.int64)


def shot_regions(
    train_targets: Any,
    targets: Any,
    bin_width: float,
    *,
    origin: float = 0.0,
    many: int = 100,
    few: int = 20,
) -> np.ndarray:
    """Region (0 many, 1 medium, 2 few) of each of ``targets`` from the training count of its bin
    ``floor((y − origin) / bin_width)``: ``> many`` → many-shot, ``< few`` → few-shot."""
    if not (isinstance(bin_width, int | float) and bin_width > 0):
        raise ContrastkitError(f"bin_width must be a positive number, got {bin_width!r}.")
    if not 0 <= few <= many:
        raise ContrastkitError(f"Shot thresholds need 0 ≤ few ≤ many, got {few} and {many}.")
    train = check_targets(train_targets, "train_targets").double().numpy()
    y = check_targets(targets, "targets").double().numpy()
    train_bins, bins = _bins(train, bin_width, origin), _bins(y, bin_width, origin)
    values, counts = np.unique(train_bins, return_counts=True)
    lookup = dict(zip(values.tolist(), counts.tolist(), strict=True))
    count = np.array([lookup.get(b, 0) for b in bins.tolist()], dtype=np.int64)
    return np.where(count > many, 0, np.where(count < few, 2, 1))


def regression_metrics(
    predictions: Any,
    targets: Any,
    train_targets: Any,
    bin_width: float,
    *,
    origin: float = 0.0,
    many: int = 100,
    few: int = 20,
) -> dict[str, float]:
    """``{"mae", "mae_many", "mae_medium", "mae_few", "n_many", "n_medium", "n_few"}`` (a
    region's MAE is NaN when no test sample falls in it)."""
    y = check_targets(targets, "targets").double().numpy()
    pred = check_targets(predictions, "predictions", len(y)).double().numpy()
    regions = shot_regions(train_targets, y, bin_width, origin=origin, many=many, few=few)
    error = np.abs(pred - y)
    out = {"mae": float(error.mean())}
    for code, name in enumerate(REGIONS):
        chosen = regions == code
        out[f"mae_{name}"] = float(error[chosen].mean()) if chosen.any() else float("nan")
        out[f"n_{name}"] = int(chosen.sum())
    return out


def regression_probe(
    train_features: Any,
    train_targets: Any,
    test_features: Any,
    test_targets: Any,
    *,
    bin_width: float,
    origin: float = 0.0,
    alphas: tuple[float, ...] = ALPHAS,
) -> dict[str, float]:
    """Ridge on frozen features; the test metrics of :func:`regression_metrics` plus ``alpha``."""
    x_train = check_features(train_features, "train_features").double().cpu().numpy()
    x_test = check_features(test_features, "test_features").double().cpu().numpy()
    y_train = check_targets(train_targets, "train_targets", len(x_train)).double().numpy()
    y_test = check_targets(test_targets, "test_targets", len(x_test)).double().numpy()
    if x_train.shape[1] != x_test.shape[1]:
        raise ContrastkitError(
            f"train_features have dim {x_train.shape[1]} but test_features have dim "
            f"{x_test.shape[1]}; they must come from the same encoder."
        )
    if len(x_train) < 3:
        raise ContrastkitError("A ridge probe needs at least 3 training samples.")
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))
    model.fit(x_train, y_train)
    metrics = regression_metrics(model.predict(x_test), y_test, y_train, bin_width, origin=origin)
    return metrics | {"alpha": float(model[-1].alpha_)}
