"""Turn raw arrays into a validated, split :class:`ImageData`; every source ends here."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from contrastkit.data.split import split_indices
from contrastkit.data.types import ImageData
from contrastkit.data.validate import as_images, as_labels, check_options, fit_size, remap_labels
from contrastkit.errors import ContrastkitError

__all__ = ["build_image_data", "image_data_from_arrays"]


def build_image_data(
    name: str,
    x: Any,
    y: Any = None,
    *,
    x_test: Any = None,
    y_test: Any = None,
    classes: tuple[str, ...] | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    image_size: int | None = None,
) -> ImageData:
    """Validate arrays, map labels to ``0..K-1``, make images square and split train/test.

    With ``classes`` given, labels must already be ``0..len(classes)-1``; otherwise any integer
    labels are remapped in sorted order and ``classes`` holds the original values as strings.
    Without ``x_test`` a seeded split is made (stratified when labelled); ``x_test`` gives a fixed
    split and ``test_fraction`` is then unused (but still validated).
    """
    check_options(seed=seed, test_fraction=test_fraction, image_size=image_size)
    xtr = as_images(x, "x", name)
    ytr = as_labels(y, len(xtr), "y", name)
    xte = yte = None
    if x_test is None:
        if y_test is not None:
            raise ContrastkitError(
                f"{name!r} has y_test but no x_test; give x_test with it, or drop y_test."
            )
    else:
        xte = as_images(x_test, "x_test", name)
        yte = as_labels(y_test, len(xte), "y_test", name)
        if (ytr is None) != (yte is None):
            raise ContrastkitError(
                f"{name!r} has labels for only one of train and test; give both y and y_test, "
                "or neither."
            )
        if xte.shape[1] != xtr.shape[1] or (image_size is None and xte.shape[2:] != xtr.shape[2:]):
            raise ContrastkitError(
                f"x_test in {name!r} has images of shape {xte.shape[1:]} but x has "
                f"{xtr.shape[1:]} (C, H, W); give both the same shape, or pass image_size."
            )
    if ytr is not None:
        ytr, yte, classes = _labels(ytr, yte, classes, name)
    x_train = fit_size(torch.from_numpy(xtr), image_size, "x", name)
    y_train = None if ytr is None else torch.from_numpy(ytr)
    if xte is None:
        train, test = split_indices(
            len(x_train), ytr, test_fraction=test_fraction, seed=seed, where=name, classes=classes
        )
        idx_train, idx_test = torch.from_numpy(train), torch.from_numpy(test)
        x_test_t, x_train = x_train[idx_test], x_train[idx_train]
        y_test_t = None if y_train is None else y_train[idx_test]
        y_train = None if y_train is None else y_train[idx_train]
    else:
        x_test_t = fit_size(torch.from_numpy(xte), image_size, "x_test", name)
        y_test_t = None if yte is None else torch.from_numpy(yte)
    return ImageData(name, x_train, y_train, x_test_t, y_test_t, classes)


def _labels(
    ytr: np.ndarray, yte: np.ndarray | None, classes: tuple[str, ...] | None, name: str
) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
    if classes is None:
        ytr, yte, classes = remap_labels(ytr, yte)
    else:
        for y in (ytr, yte):
            if y is not None and (y.min() < 0 or y.max() >= len(classes)):
                raise ContrastkitError(
                    f"Labels in {name!r} must lie in 0..{len(classes) - 1} for its "
                    f"{len(classes)} classes; fix the labels or the class list."
                )
        ytr = ytr.astype(np.int64)
        yte = None if yte is None else yte.astype(np.int64)
    present = np.unique(ytr)
    if len(present) < 2:
        raise ContrastkitError(
            f"The labels of {name!r} hold a single class ({classes[present[0]]!r}), but labelled "
            "data needs at least 2 classes; add images of another class, or load them unlabelled."
        )
    return ytr, yte, classes


def image_data_from_arrays(
    x: Any,
    y: Any = None,
    *,
    x_test: Any = None,
    y_test: Any = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    name: str = "arrays",
    image_size: int | None = None,
) -> ImageData:
    """Build :class:`ImageData` from in-memory numpy arrays or torch tensors.

    Validated exactly like ``npz:PATH``: ``x`` is (N, H, W), (N, C, H, W) or (N, H, W, C) with C
    in {1, 3}; uint8 is divided by 255, floats are used as is (they should lie in [0, 1]); ``y`` is
    optional integer labels of length N (remapped to ``0..K-1``, original values kept as class
    names). ``x_test``/``y_test`` give a fixed split, else a seeded (stratified) split is made.
    ``image_size`` resizes the shorter side and center-crops to a square.
    """
    return build_image_data(
        name,
        x,
        y,
        x_test=x_test,
        y_test=y_test,
        seed=seed,
        test_fraction=test_fraction,
        image_size=image_size,
    )
