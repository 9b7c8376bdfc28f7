"""``npz:PATH``: a NumPy ``.npz`` archive with ``x`` and optional ``y``, ``x_test``, ``y_test``.

Validated like :func:`~contrastkit.data.arrays.image_data_from_arrays`; without ``x_test`` a
seeded (stratified when labelled) split is made. Loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from contrastkit.data.arrays import build_image_data
from contrastkit.data.types import ImageData
from contrastkit.data.validate import require_argument, short_reason
from contrastkit.errors import ContrastkitError

__all__ = ["KEYS", "load_npz"]

KEYS = ("x", "y", "x_test", "y_test")
_SAVE_HINT = "save it with np.savez(path, x=images, y=labels)"


def load_npz(
    arg: str | None, *, seed: int, test_fraction: float, image_size: int | None, download: bool
) -> ImageData:
    """Read the archive at ``arg`` and build :class:`ImageData` from its arrays."""
    name = f"npz:{require_argument('npz', arg)}"
    arrays = _read(Path(arg).expanduser(), name)
    return build_image_data(
        name,
        arrays["x"],
        arrays.get("y"),
        x_test=arrays.get("x_test"),
        y_test=arrays.get("y_test"),
        seed=seed,
        test_fraction=test_fraction,
        image_size=image_size,
    )


def _read(path: Path, name: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ContrastkitError(f"{name!r}: no file at {path}; check the path.")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ContrastkitError(
            f"Cannot read {path} as an .npz archive ({short_reason(exc)}); {_SAVE_HINT}."
        ) from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ContrastkitError(
            f"{name!r} is a single .npy array, not an .npz archive; {_SAVE_HINT}."
        )
    with loaded as archive:
        if "x" not in archive.files:
            found = ", ".join(archive.files) or "nothing"
            raise ContrastkitError(
                f"{name!r} has no array named 'x' (found: {found}); {_SAVE_HINT}."
            )
        return {key: _array(archive, key, name) for key in KEYS if key in archive.files}


def _array(archive: np.lib.npyio.NpzFile, key: str, name: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise ContrastkitError(
                f"Cannot read array {key!r} of {name!r} ({short_reason(exc)}); {_SAVE_HINT}."
            ) from exc
        raise ContrastkitError(
            f"Array {key!r} in {name!r} holds Python objects, which are not loaded for safety; "
            "save plain numeric arrays instead."
        ) from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ContrastkitError(
            f"Cannot read array {key!r} of {name!r} ({short_reason(exc)}); {_SAVE_HINT}."
        ) from exc
