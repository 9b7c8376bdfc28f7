"""``digits``: scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes)."""

from __future__ import annotations

import numpy as np

from contrastkit.data.arrays import build_image_data
from contrastkit.data.types import ImageData
from contrastkit.data.validate import require_no_argument

__all__ = ["load_digits_source"]


def load_digits_source(
    arg: str | None, *, seed: int, test_fraction: float, image_size: int | None, download: bool
) -> ImageData:
    """Pixels 0..16 are divided by 16; seeded stratified split (``test_fraction``, ``seed``)."""
    require_no_argument("digits", arg)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return build_image_data(
        "digits",
        (bunch.images / 16.0).astype(np.float32),
        bunch.target,
        classes=tuple(str(t) for t in bunch.target_names),
        seed=seed,
        test_fraction=test_fraction,
        image_size=image_size,
    )
