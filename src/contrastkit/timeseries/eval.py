"""Evaluation of frozen time-series representations.

:func:`svm_accuracy` is TS2Vec's classification protocol (Yue et al. 2022, §4.1; code
``tasks/_eval_protocols.py::fit_svm``): an RBF SVM (``gamma='scale'``) on the instance-level
representations, ``C`` chosen from ``{1e-4, …, 1e4, ∞}`` by 5-fold cross-validation, and no
cross-validation (``C = ∞``) when the training set is small (fewer than 50 series or fewer
than 5 per class on average). :func:`one_nn_accuracy` is the raw-input 1-NN Euclidean baseline.
"""

from __future__ import annotations

import numpy as np

from contrastkit.errors import ContrastkitError

__all__ = ["SVM_C_GRID", "fit_svm", "one_nn_accuracy", "svm_accuracy"]

SVM_C_GRID = (0.0001, 0.001, 0.01, 0.1, 1, 10, 100, 1000, 10000, np.inf)


def _check(features: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(y)
    if f.ndim != 2 or len(f) == 0:
        raise ContrastkitError(
            f"{what} representations must be a non-empty [n, dim] array, got {f.shape}; "
            "pool the time steps first (encode(x) does)."
        )
    if labels.shape != (len(f),):
        raise ContrastkitError(
            f"{what} labels have shape {labels.shape} for {len(f)} representations; give one "
            "label per series."
        )
    if not np.isfinite(f).all():
        raise ContrastkitError(
            f"{what} representations contain NaN or infinite values; check the encoder input."
        )
    return f, labels


def fit_svm(features: np.ndarray, y: np.ndarray, *, max_samples: int = 10000, n_jobs: int = 1):
    """The fitted SVC of TS2Vec's protocol (see the module docstring)."""
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.svm import SVC

    features, y = _check(features, y, "Training")
    n_classes = len(np.unique(y))
    if n_classes < 2:
        raise ContrastkitError(
            "The training labels hold a single class; an SVM needs at least two classes."
        )
    svm = SVC(C=np.inf, gamma="scale")
    if len(features) // n_classes < 5 or len(features) < 50:
        return svm.fit(features, y)
    if len(features) > max_samples:
        features, _, y, _ = train_test_split(
            features, y, train_size=max_samples, random_state=0, stratify=y
        )
    search = GridSearchCV(
        svm, {"C": list(SVM_C_GRID), "kernel": ["rbf"], "gamma": ["scale"]}, cv=5, n_jobs=n_jobs
    )
    search.fit(features, y)
    return search.best_estimator_


def svm_accuracy(
    train_repr: np.ndarray,
    y_train: np.ndarray,
    test_repr: np.ndarray,
    y_test: np.ndarray,
    *,
    n_jobs: int = 1,
) -> float:
    """Test accuracy of :func:`fit_svm` trained on ``train_repr`` (TS2Vec protocol)."""
    clf = fit_svm(train_repr, y_train, n_jobs=n_jobs)
    test, labels = _check(test_repr, y_test, "Test")
    if test.shape[1] != np.asarray(train_repr).shape[1]:
        raise ContrastkitError(
            f"Train and test representations differ in width ({np.asarray(train_repr).shape[1]} "
            f"vs {test.shape[1]}); encode both with the same model."
        )
    return float(clf.score(test, labels))


def one_nn_accuracy(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    znormalize: bool = True,
) -> float:
    """1-NN with Euclidean distance on the series ``(n, C, L)`` — the archive's ED baseline.

    ``znormalize`` first z-normalises every series and channel on its own, the convention of the
    UCR/UEA archives' published ED accuracies (UCR series already are; e.g. BasicMotions: 0.725
    z-normalised, 0.600 as raw sensor values). Unequal lengths are compared on the NaN-padded
    arrays with NaN read as 0 (test series padded/cut to the training length).
    """
    a = np.asarray(x_train, dtype=np.float64)
    b = np.asarray(x_test, dtype=np.float64)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1] != b.shape[1]:
        raise ContrastkitError(
            f"1-NN needs (n, channels, length) arrays with equal channels, got {a.shape} and "
            f"{b.shape}."
        )
    if znormalize:
        from contrastkit.timeseries.data import standardize

        a, b = standardize(a, b, "series")
    a, b = np.nan_to_num(a.astype(np.float64)), np.nan_to_num(b.astype(np.float64))
    length = a.shape[2]
    if b.shape[2] < length:
        b = np.pad(b, ((0, 0), (0, 0), (0, length - b.shape[2])))
    a, b = a.reshape(len(a), -1), b[:, :, :length].reshape(len(b), -1)
    dist = (b * b).sum(1)[:, None] - 2 * b @ a.T + (a * a).sum(1)[None, :]
    pred = np.asarray(y_train)[dist.argmin(axis=1)]
    return float((pred == np.asarray(y_test)).mean())
