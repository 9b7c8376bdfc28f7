"""Seeded train/test split (stratified when labelled) with clear errors for too-small data."""

from __future__ import annotations

import math

import numpy as np

from contrastkit.data.validate import short_reason
from contrastkit.errors import ContrastkitError

__all__ = ["split_indices"]


def split_indices(
    n: int,
    y: np.ndarray | None,
    *,
    test_fraction: float,
    seed: int,
    where: str,
    classes: tuple[str, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(train_idx, test_idx)`` from sklearn's ``train_test_split`` (stratified on ``y``).

    Sizes follow sklearn: ``n_test = ceil(test_fraction * n)``, ``n_train = n - n_test``.
    """
    from sklearn.model_selection import train_test_split

    n_test = math.ceil(test_fraction * n)
    n_train = n - n_test
    hint = "add more images or change test_fraction"
    if n_test < 1 or n_train < 1:
        part = "test" if n_test < 1 else "train"
        raise ContrastkitError(
            f"{where!r} has {n} images, so test_fraction={test_fraction} leaves the {part} split "
            f"empty; {hint}."
        )
    if y is not None:
        values, counts = np.unique(y, return_counts=True)
        k = len(values)
        if counts.min() < 2:
            v = values[counts.argmin()]
            label = classes[v] if classes is not None else v
            raise ContrastkitError(
                f"Class {label!r} in {where!r} has only 1 image, but a stratified train/test "
                "split needs at least 2 per class; add images of that class or remove it."
            )
        if min(n_test, n_train) < k:
            part, size = ("test", n_test) if n_test < k else ("train", n_train)
            raise ContrastkitError(
                f"The {part} split of {where!r} would hold {size} images, too few for a "
                f"stratified split over {k} classes; {hint}."
            )
    try:
        train, test = train_test_split(
            np.arange(n), test_size=test_fraction, random_state=int(seed), stratify=y
        )
    except ValueError as exc:  # pragma: no cover - the checks above should catch these
        raise ContrastkitError(
            f"Cannot split {where!r} into train/test ({short_reason(exc)}); {hint}."
        ) from exc
    return train, test
