"""Paired data sources for two-tower methods, by name (the config's ``data.source``):

- ``codesearch`` / ``codesearch:stdlib``: (docstring summary, function body) pairs from the
  running Python's standard library, split by module (:mod:`contrastkit.data.codesearch`).
- ``fashion-mnist-captions``: Fashion-MNIST images, each with a caption from templates over its
  class name; zero-shot classification uses other templates than training.
- ``pairs:FILE.csv`` / ``.tsv``: two columns (open_clip's CSV); a column of image paths is read as
  images.
- ``captions:DIR``: an image folder with a ``<stem>.txt`` caption beside each image.

Side ``a`` is the query / image side, ``b`` the code / text side.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from contrastkit.data.codesearch import build_code_search_corpus
from contrastkit.data.paired import (
    PairedData,
    PairedSplits,
    load_captioned_folder,
    load_pairs_csv,
    split_pairs,
)
from contrastkit.errors import ContrastkitError, unknown_name

SOURCES = ("codesearch", "fashion-mnist-captions", "pairs", "captions")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# Fashion-MNIST class names as a caption would say them
FASHION_NAMES = (
    "t-shirt",
    "pair of trousers",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
TRAIN_TEMPLATES = (
    "a photo of a {}.",
    "a black and white photo of a {}.",
    "a small picture of the {}.",
    "a low resolution photo of a {}.",
    "an image of a {}.",
    "a grayscale product photo of a {}.",
)
# zero-shot prompts: templates never seen in training (CLIP's prompt ensembling, §3.1.4)
ZERO_SHOT_TEMPLATES = ("a photo of the {}.", "a picture of one {}.", "this is a {}.")


@dataclass(frozen=True)
class TwoTowerData:
    """Paired splits and what each side holds (``"text"`` or ``"images"``), plus, for
    class-captioned images, the class names, zero-shot templates and test labels."""

    name: str
    splits: PairedSplits
    kinds: tuple[str, str]
    classes: tuple[str, ...] | None = None
    templates: tuple[str, ...] = ()
    test_labels: np.ndarray | None = None


def load_two_tower_data(source: str, *, seed: int = 0, image_size: int = 64) -> TwoTowerData:
    """The named source, split (fixed splits where the data has them, else seeded 80/10/10)."""
    kind, _, arg = source.partition(":")
    if kind == "codesearch":
        if arg not in ("", "stdlib"):
            raise ContrastkitError(
                f"codesearch builds its corpus from the standard library; use 'codesearch:stdlib', not {source!r}."
            )
        return TwoTowerData("codesearch:stdlib", build_code_search_corpus(), ("text", "text"))
    if kind == "fashion-mnist-captions":
        return fashion_mnist_captions(seed=seed)
    if kind in ("pairs", "captions") and not arg:
        raise ContrastkitError(f"Name the file or folder: '{kind}:PATH'.")
    if kind == "pairs":
        data = load_pairs_csv(arg)
        kinds = tuple(_column_kind(getattr(data, side)) for side in ("a", "b"))
        root = Path(arg).parent
        data = replace(
            data,
            **{
                side: _read_images(getattr(data, side), root, image_size)
                for side, k in zip("ab", kinds, strict=True)
                if k == "images"
            },
        )
        return TwoTowerData(source, split_pairs(data, seed=seed), kinds)  # type: ignore[arg-type]
    if kind == "captions":
        data = load_captioned_folder(arg)
        data = replace(data, a=_resize([np.asarray(x) for x in data.a], image_size))
        return TwoTowerData(source, split_pairs(data, seed=seed), ("images", "text"))
    raise unknown_name("two-tower data source", kind, SOURCES)


def fashion_mnist_captions(*, seed: int = 0) -> TwoTowerData:
    """Fashion-MNIST's fixed 60k/10k split; image ``i`` is paired with a caption from a seeded
    random training template over its class name (test captions use the zero-shot templates)."""
    from contrastkit.data import load_data

    images = load_data("fashion-mnist")
    rng = np.random.default_rng(seed)

    def captioned(x: np.ndarray, y: np.ndarray, templates: tuple[str, ...]) -> PairedData:
        pick = rng.integers(len(templates), size=len(y))
        captions = [templates[t].format(FASHION_NAMES[c]) for t, c in zip(pick, y, strict=True)]
        return PairedData(list(_uint8(x)), captions, name="fashion-mnist-captions")

    y_train, y_test = np.asarray(images.y_train), np.asarray(images.y_test)
    splits = PairedSplits(
        captioned(images.x_train, y_train, TRAIN_TEMPLATES),
        None,
        captioned(images.x_test, y_test, ZERO_SHOT_TEMPLATES),
    )
    return TwoTowerData(
        "fashion-mnist-captions",
        splits,
        ("images", "text"),
        classes=FASHION_NAMES,
        templates=ZERO_SHOT_TEMPLATES,
        test_labels=y_test,
    )


def _uint8(x: np.ndarray) -> np.ndarray:
    """``[N, 1, H, W]`` floats in [0, 1] or uint8 → ``[N, H, W]`` uint8."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return x.reshape(len(x), *x.shape[-2:]) if x.ndim == 4 and x.shape[1] == 1 else x


def _column_kind(values: list) -> str:
    return "images" if all(str(v).lower().endswith(IMAGE_SUFFIXES) for v in values) else "text"


def _read_images(paths: list, root: Path, size: int) -> list[np.ndarray]:
    arrays = []
    for value in paths:
        path = Path(value) if Path(value).is_absolute() else root / value
        try:
            with Image.open(path) as image:
                arrays.append(np.asarray(image.convert("RGB")))
        except (OSError, ValueError) as error:
            raise ContrastkitError(
                f"Cannot read image {path} ({type(error).__name__}); fix the path in the CSV."
            ) from None
    return _resize(arrays, size)


def _resize(images: list[np.ndarray], size: int) -> list[np.ndarray]:
    """RGB images of any size → ``[size, size, 3]`` uint8 (so batches stack)."""
    return [
        np.asarray(Image.fromarray(x).convert("RGB").resize((size, size), Image.BILINEAR))
        for x in images
    ]
