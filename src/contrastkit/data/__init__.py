"""Named image data sources: ``load_data(spec)`` returns a validated, split :class:`ImageData`.

Built-in specs: ``digits`` (default), ``fashion-mnist``, ``folder:PATH``, ``npz:PATH`` and
``torchvision:cifar10|cifar100|stl10``; :func:`register_source` adds more. Every problem with the
data raises :class:`~contrastkit.errors.ContrastkitError` with a one-sentence fix.
"""

from __future__ import annotations

from contrastkit.data.arrays import image_data_from_arrays
from contrastkit.data.digits import load_digits_source
from contrastkit.data.fashion_mnist import load_fashion_mnist
from contrastkit.data.folder import load_folder
from contrastkit.data.npz import load_npz
from contrastkit.data.registry import DEFAULT_SOURCE, available_sources, load_data, register_source
from contrastkit.data.torchvision_sources import TORCHVISION_DATASETS, load_torchvision
from contrastkit.data.types import ImageData

__all__ = [
    "DEFAULT_SOURCE",
    "ImageData",
    "available_sources",
    "image_data_from_arrays",
    "load_data",
    "register_source",
]

register_source("digits", load_digits_source)
register_source("fashion-mnist", load_fashion_mnist)
register_source("folder", load_folder, examples=["folder:PATH"])
register_source("npz", load_npz, examples=["npz:PATH"])
register_source(
    "torchvision",
    load_torchvision,
    examples=[f"torchvision:{name}" for name in TORCHVISION_DATASETS],
)
