"""``torchvision:cifar10|cifar100|stl10``: torchvision datasets with their official splits.

Files live under ``~/.cache/contrastkit/torchvision`` (``$CONTRASTKIT_DATA_DIR`` overrides) and are
downloaded only with ``download=True``. STL-10 uses its labelled ``train``/``test`` splits.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from contrastkit.data.arrays import build_image_data
from contrastkit.data.registry import closest
from contrastkit.data.types import ImageData
from contrastkit.data.validate import require_argument, short_reason
from contrastkit.errors import ContrastkitError

__all__ = ["ENV_DATA_DIR", "TORCHVISION_DATASETS", "data_root", "load_torchvision"]

ENV_DATA_DIR = "CONTRASTKIT_DATA_DIR"
_Split = tuple[Any, Any, list[str]]  # images, labels, class names


def _cifar(cls_name: str) -> Callable[[str, bool, bool], _Split]:
    def read(root: str, train: bool, download: bool) -> _Split:
        import torchvision.datasets as tvd

        ds = getattr(tvd, cls_name)(root, train=train, download=download)
        return ds.data, np.asarray(ds.targets), ds.classes

    return read


def _stl10(root: str, train: bool, download: bool) -> _Split:
    import torchvision.datasets as tvd

    ds = tvd.STL10(root, split="train" if train else "test", download=download)
    return ds.data, ds.labels, ds.classes


TORCHVISION_DATASETS: dict[str, Callable[[str, bool, bool], _Split]] = {
    "cifar10": _cifar("CIFAR10"),
    "cifar100": _cifar("CIFAR100"),
    "stl10": _stl10,
}


def data_root() -> Path:
    """Where torchvision datasets are stored (``$CONTRASTKIT_DATA_DIR`` or the user cache)."""
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "contrastkit" / "torchvision"


def load_torchvision(
    arg: str | None, *, seed: int, test_fraction: float, image_size: int | None, download: bool
) -> ImageData:
    """Load a dataset's official train/test split (``seed`` and ``test_fraction`` are unused)."""
    key = require_argument("torchvision", arg, "NAME").lower()
    name = f"torchvision:{key}"
    read = TORCHVISION_DATASETS.get(key)
    if read is None:
        match = closest(key, TORCHVISION_DATASETS)
        hint = f" (did you mean 'torchvision:{match}'?)" if match else ""
        raise ContrastkitError(
            f"Unknown torchvision dataset {key!r}{hint}; use one of: "
            f"{', '.join(TORCHVISION_DATASETS)}."
        )
    root = data_root()
    try:
        x, y, classes = read(str(root), True, download)
        xt, yt, _ = read(str(root), False, download)
    except (OSError, RuntimeError, EOFError) as exc:
        if not download:
            raise ContrastkitError(
                f"{name} is not in {root} and needs internet to download; pass download=True on "
                f"a machine with internet (or set ${ENV_DATA_DIR} to a folder that holds it)."
            ) from exc
        raise ContrastkitError(
            f"Downloading {name} into {root} failed ({short_reason(exc)}); it needs internet to "
            "download, so pass download=True on a machine with internet (or copy the files "
            f"into {root})."
        ) from exc
    return build_image_data(
        name,
        x,
        y,
        x_test=xt,
        y_test=yt,
        classes=tuple(classes),
        seed=seed,
        test_fraction=test_fraction,
        image_size=image_size,
    )
