"""``folder:PATH``: a directory of images, with class sub-directories or flat (unlabelled).

Layout: ``PATH/<class>/**/<image>`` (ImageFolder style; classes in sorted order, sub-directories
without images are ignored) gives labelled data; images directly in ``PATH`` give unlabelled
data. Hidden files and directories are skipped; files are picked by torchvision's image
extensions. Images load as grayscale when every image is grayscale, else as RGB (alpha dropped).
All images must share one size unless ``image_size`` is given, in which case each is resized
(shorter side to ``image_size``, bilinear, antialiased) and center-cropped to a square.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from contrastkit.data.arrays import build_image_data
from contrastkit.data.types import ImageData
from contrastkit.data.validate import require_argument, resize_images
from contrastkit.errors import ContrastkitError

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["load_folder"]

_GRAY_BANDS = {"1", "L", "I", "F", "A"}


def load_folder(
    arg: str | None, *, seed: int, test_fraction: float, image_size: int | None, download: bool
) -> ImageData:
    """Load every image under ``arg``; seeded split, stratified when labelled."""
    name = f"folder:{require_argument('folder', arg)}"
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise ContrastkitError(f"{name!r}: no directory at {root}; check the path.")
    files, labels, classes = _discover(root, name)
    images = [_open(path) for path in files]
    gray = all(set(im.getbands()) <= _GRAY_BANDS for im in images)
    sizes = {im.size for im in images}
    if image_size is None and len(sizes) > 1:
        (w1, h1), (w2, h2) = sorted(sizes)[:2]
        raise ContrastkitError(
            f"Images in {name!r} have different sizes ({h1}×{w1}, {h2}×{w2}, …); pass "
            "image_size to resize and center-crop them to one size."
        )
    tensors = [_to_tensor(im, gray) for im in images]
    if image_size is not None:
        tensors = [resize_images(t, image_size) for t in tensors]
    return build_image_data(
        name,
        torch.stack(tensors),
        labels,
        classes=classes,
        seed=seed,
        test_fraction=test_fraction,
        image_size=image_size,
    )


def _image_files(directory: Path, recursive: bool) -> list[Path]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    found = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(
        p
        for p in found
        if p.is_file()
        and p.suffix.lower() in IMG_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def _discover(
    root: Path, name: str
) -> tuple[list[Path], np.ndarray | None, tuple[str, ...] | None]:
    """Return (files, labels or None, class names or None) for the folder layout."""
    loose = _image_files(root, recursive=False)
    per_class = {
        d.name: files
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".")
        if (files := _image_files(d, recursive=True))
    }
    if not per_class:
        if not loose:
            raise ContrastkitError(
                f"{name!r} holds no images (png, jpg, …); put images in it, or in one "
                "sub-directory per class."
            )
        return loose, None, None
    if loose:
        raise ContrastkitError(
            f"{name!r} mixes class sub-directories with loose images such as {loose[0].name}; "
            "move every image into a class sub-directory (or remove the sub-directories)."
        )
    files = [f for group in per_class.values() for f in group]
    labels = np.repeat(np.arange(len(per_class)), [len(g) for g in per_class.values()])
    return files, labels, tuple(per_class)


def _open(path: Path) -> Image:
    """Open and fully decode one image, naming the file when it is unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return im.copy() if im.mode != "P" else im.convert("RGBA")
    except (OSError, ValueError, SyntaxError) as exc:  # PIL raises these for corrupt files
        raise ContrastkitError(
            f"Cannot read image file {path} ({exc.__class__.__name__}); remove or replace it."
        ) from exc


def _to_tensor(im: Image, gray: bool) -> torch.Tensor:
    """``[C, H, W]`` float32 in [0, 1]; 16-bit grayscale is scaled by 65535."""
    if gray and im.mode.startswith("I"):
        a = np.asarray(im, dtype=np.float32) / 65535.0
    else:
        a = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.float32) / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(a))
