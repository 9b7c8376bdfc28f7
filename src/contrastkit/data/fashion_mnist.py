"""``fashion-mnist``: Zalando's 28×28 clothing images, official 60k/10k split.

Read from Debian's ``dataset-fashion-mnist`` files (``/usr/share/datasets/fashion-mnist``, or
``$CONTRASTKIT_FASHION_MNIST_DIR``; ``.gz`` or decompressed) with torchvision's idx parser. When
they are absent, torchvision's ``FashionMNIST`` under ``~/.cache/contrastkit`` is used, and
downloaded there only with ``download=True``.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import torch

from contrastkit.data.arrays import build_image_data
from contrastkit.data.types import ImageData
from contrastkit.data.validate import require_no_argument, short_reason
from contrastkit.errors import ContrastkitError

__all__ = ["DEFAULT_DIR", "ENV_DIR", "fashion_mnist_dir", "load_fashion_mnist"]

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
ENV_DIR = "CONTRASTKIT_FASHION_MNIST_DIR"
_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def fashion_mnist_dir() -> Path:
    """The directory searched for the idx files (``$CONTRASTKIT_FASHION_MNIST_DIR`` or Debian's)."""
    return Path(os.environ.get(ENV_DIR) or DEFAULT_DIR).expanduser()


def cache_root() -> Path:
    """Root for torchvision's ``FashionMNIST`` download (``~/.cache/contrastkit``)."""
    return Path.home() / ".cache" / "contrastkit"


def load_fashion_mnist(
    arg: str | None, *, seed: int, test_fraction: float, image_size: int | None, download: bool
) -> ImageData:
    """Load the fixed 60k/10k split (``seed``/``test_fraction`` are unused)."""
    from torchvision.datasets import FashionMNIST

    require_no_argument("fashion-mnist", arg)
    directory = fashion_mnist_dir()
    files = [_find(directory, stem) for stem in _STEMS]
    if all(files):
        x, y, xt, yt = _read_idx(tuple(str(f) for f in files))
    elif any(files):
        missing = next(s for s, f in zip(_STEMS, files, strict=True) if f is None)
        raise ContrastkitError(
            f"Fashion-MNIST in {directory} lacks {missing}.gz; reinstall the files "
            "(sudo apt-get install --reinstall dataset-fashion-mnist) or fix ${ENV_DIR}."
        )
    else:
        x, y, xt, yt = _read_torchvision(str(cache_root()), download, str(directory))
    return build_image_data(
        "fashion-mnist",
        x,
        y,
        x_test=xt,
        y_test=yt,
        classes=tuple(FashionMNIST.classes),
        seed=seed,
        test_fraction=test_fraction,
        image_size=image_size,
    )


def _find(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


@functools.lru_cache(maxsize=2)
def _read_idx(paths: tuple[str, ...]) -> _Arrays:
    """Decode the four idx files to uint8 images / int64 labels (cached: never mutate them)."""
    from torchvision.datasets.mnist import read_image_file, read_label_file
    from torchvision.datasets.utils import extract_archive

    out = []
    with tempfile.TemporaryDirectory(prefix="contrastkit-fmnist-") as tmp:
        for path, reader in zip(paths, (read_image_file, read_label_file) * 2, strict=True):
            try:
                raw = path
                if path.endswith(".gz"):
                    extract_archive(path, tmp)
                    raw = os.path.join(tmp, os.path.basename(path)[: -len(".gz")])
                out.append(reader(raw))
            except (OSError, EOFError, AssertionError, ValueError, TypeError, RuntimeError) as exc:
                raise ContrastkitError(
                    f"Could not read the Fashion-MNIST file {path} ({short_reason(exc)}); "
                    "reinstall it with sudo apt-get install --reinstall dataset-fashion-mnist."
                ) from exc
    return tuple(out)  # type: ignore[return-value]


@functools.lru_cache(maxsize=2)
def _read_torchvision(root: str, download: bool, searched: str) -> _Arrays:
    from torchvision.datasets import FashionMNIST

    try:
        train, test = (FashionMNIST(root, train=t, download=download) for t in (True, False))
    except (OSError, RuntimeError, EOFError) as exc:
        if not download:
            raise ContrastkitError(
                f"Fashion-MNIST was not found in {searched}; install it with "
                "`sudo apt-get install dataset-fashion-mnist` (or set $"
                f"{ENV_DIR} to a folder with its idx files), or pass download=True on a machine "
                "with internet."
            ) from exc
        raise ContrastkitError(
            f"Downloading Fashion-MNIST into {root} failed ({short_reason(exc)}); it needs "
            "internet, so install it with `sudo apt-get install dataset-fashion-mnist` or retry "
            "on a machine with internet."
        ) from exc
    return train.data, train.targets, test.data, test.targets
