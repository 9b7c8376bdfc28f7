"""The in-memory dataset every image source returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ImageData"]


@dataclass(frozen=True, eq=False)
class ImageData:
    """A train/test pair of square image tensors, with optional integer labels.

    ``x_*`` are float32 ``[N, C, H, W]`` with ``H == W`` (values in ``[0, 1]`` for every built-in
    source); ``y_*`` are int64 ``[N]`` with classes ``0..K-1``, or ``None`` when unlabelled;
    ``classes[k]`` names class ``k`` when known.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor | None
    x_test: torch.Tensor
    y_test: torch.Tensor | None
    classes: tuple[str, ...] | None = None

    @property
    def has_labels(self) -> bool:
        """Whether the data carries class labels."""
        return self.y_train is not None

    @property
    def num_classes(self) -> int | None:
        """Number of classes, or ``None`` when unlabelled."""
        if self.classes is not None:
            return len(self.classes)
        if self.y_train is None:
            return None
        ys = [y for y in (self.y_train, self.y_test) if y is not None and y.numel()]
        return int(max(int(y.max()) for y in ys)) + 1

    @property
    def channels(self) -> int:
        """Number of image channels (1 = grayscale, 3 = RGB)."""
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        """Image height, which is also the width (images are square)."""
        return int(self.x_train.shape[2])

    def __repr__(self) -> str:
        return (
            f"ImageData(name={self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
            f"channels={self.channels}, image_size={self.image_size}, "
            f"num_classes={self.num_classes})"
        )
