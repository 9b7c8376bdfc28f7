"""Checks shared by every source: options, image arrays, labels, square sizes.

Each check raises :class:`~contrastkit.errors.ContrastkitError` with one sentence saying what is
wrong and how to fix it; ``where`` names the source (e.g. ``'npz:data.npz'``) in that sentence.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from contrastkit.errors import ContrastkitError

__all__ = [
    "as_images",
    "as_labels",
    "check_options",
    "fit_size",
    "remap_labels",
    "require_argument",
    "require_no_argument",
    "resize_images",
    "short_reason",
]

_LAYOUTS = "(N, H, W), (N, C, H, W) or (N, H, W, C) with C in {1, 3}"


def check_options(*, seed: Any, test_fraction: Any, image_size: Any) -> None:
    """Validate the options every loader takes."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ContrastkitError(f"seed must be an integer in [0, 2**32), got {seed!r}.")
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, numbers.Real)
        or not 0.0 < float(test_fraction) < 1.0
    ):
        raise ContrastkitError(
            f"test_fraction must be a number strictly between 0 and 1 (e.g. 0.2), "
            f"got {test_fraction!r}."
        )
    if image_size is not None and (
        isinstance(image_size, bool)
        or not isinstance(image_size, numbers.Integral)
        or image_size < 1
    ):
        raise ContrastkitError(
            f"image_size must be a positive integer (pixels) or None, got {image_size!r}."
        )


def short_reason(exc: BaseException, limit: int = 80) -> str:
    """A one-line, sentence-safe summary of ``exc`` to embed in parentheses."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.split(". ")[0].rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def require_argument(prefix: str, arg: str | None, what: str = "PATH") -> str:
    """Return ``arg`` for a ``prefix:ARG`` source, or raise when it is missing."""
    if not arg:
        raise ContrastkitError(
            f"Data source '{prefix}' needs {what}; write it as '{prefix}:{what}'."
        )
    return arg


def require_no_argument(prefix: str, arg: str | None) -> None:
    """Raise when a source that takes no argument was given one (``digits:foo``)."""
    if arg is not None:
        raise ContrastkitError(
            f"Data source '{prefix}' takes no argument, got '{prefix}:{arg}'; "
            f"write just '{prefix}'."
        )


def _as_numpy(a: Any, what: str, where: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        if a.is_floating_point() and a.dtype not in (torch.float32, torch.float64):
            a = a.float()  # float16 / bfloat16
        return a.numpy()
    try:
        out = np.asarray(a)
    except (TypeError, ValueError):
        out = None
    if out is None or out.dtype == object:
        raise ContrastkitError(
            f"{what} in {where!r} is not one numeric array (got a ragged or non-numeric "
            f"{type(a).__name__}); pass a numpy array or torch tensor of equally-shaped items."
        )
    return out


def as_images(x: Any, what: str, where: str) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 ``(N, C, H, W)`` array.

    Accepts the layouts (N, H, W), (N, C, H, W) and (N, H, W, C) with C in {1, 3} (channels-last
    when the last dim is 1 or 3 and dim 1 is not); uint8 is divided by 255, floats must be finite
    and are used as is (they should already lie in [0, 1]).
    """
    a = _as_numpy(x, what, where)
    if a.dtype != np.uint8 and a.dtype.kind != "f":
        raise ContrastkitError(
            f"{what} in {where!r} has dtype {a.dtype}, but images must be uint8 (0..255) or "
            "float in [0, 1]; convert them, e.g. with x.astype(np.uint8) or x / 255."
        )
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[1] not in (1, 3) and a.shape[3] in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    elif a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ContrastkitError(
            f"{what} in {where!r} has shape {tuple(a.shape)}, but images must be {_LAYOUTS}; "
            "reshape the array to one of these layouts."
        )
    if a.size == 0:
        raise ContrastkitError(
            f"{what} in {where!r} is empty (shape {tuple(a.shape)}); give at least a few images."
        )
    if a.dtype == np.uint8:
        out = np.divide(a, np.float32(255.0), dtype=np.float32)
    else:
        bad = a.size - int(np.count_nonzero(np.isfinite(a)))
        if bad:
            raise ContrastkitError(
                f"{what} in {where!r} contains {bad} NaN or infinite values; replace or drop "
                "those images."
            )
        out = a.astype(np.float32)  # always a copy: ImageData never aliases caller memory
    return np.ascontiguousarray(out)


def as_labels(y: Any, n: int, what: str, where: str) -> np.ndarray | None:
    """Return ``y`` as a 1-D integer array of length ``n`` (``None`` stays ``None``)."""
    if y is None:
        return None
    a = _as_numpy(y, what, where)
    if a.ndim != 1:
        raise ContrastkitError(
            f"{what} in {where!r} has shape {tuple(a.shape)}, but labels must be 1-D with one "
            "integer per image; flatten it, e.g. with y.ravel()."
        )
    if a.dtype.kind not in "iu":
        raise ContrastkitError(
            f"{what} in {where!r} has dtype {a.dtype}, but labels must be integers; convert "
            "them, e.g. with y.astype(np.int64) or by mapping class names to integers."
        )
    if len(a) != n:
        raise ContrastkitError(
            f"{what} in {where!r} has {len(a)} labels for {n} images; give exactly one label "
            "per image."
        )
    return a


def remap_labels(
    y_train: np.ndarray, y_test: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """Map arbitrary integer labels to ``0..K-1`` in sorted order; class names are the originals."""
    values = np.unique(y_train if y_test is None else np.concatenate([y_train, y_test]))
    classes = tuple(str(v) for v in values.tolist())
    remap = lambda y: np.searchsorted(values, y).astype(np.int64)  # noqa: E731
    return remap(y_train), None if y_test is None else remap(y_test), classes


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``[..., H, W]`` images so the shorter side is ``size``, then center-crop to square.

    Bilinear with antialiasing (non-negative weights, so values stay within the input range).
    """
    from torchvision.transforms.v2 import functional as TF

    if tuple(x.shape[-2:]) == (size, size):
        return x
    return TF.center_crop(TF.resize(x, [size], antialias=True), [size, size]).contiguous()


def fit_size(x: torch.Tensor, image_size: int | None, what: str, where: str) -> torch.Tensor:
    """Return square images: resized to ``image_size`` when given, else checked to be square."""
    if image_size is not None:
        return resize_images(x, image_size)
    h, w = x.shape[-2:]
    if h != w:
        raise ContrastkitError(
            f"{what} in {where!r} holds {h}×{w} images, but images must be square; pass "
            "image_size to resize and center-crop them."
        )
    return x
