"""Paired two-modality data (CLIP / ConVIRT / code search): ``a[i]`` goes with ``b[i]``.

* :class:`PairedData` holds the two aligned lists (texts, image arrays or image paths) with an
  optional group per pair (the image of several captions, the module of a function, …).
* :func:`load_pairs_csv` reads an open_clip-style CSV/TSV with a header row (open_clip's
  ``CsvDataset``: one column of image paths, one of captions); :func:`resolve_paths` turns a
  column of relative paths into checked absolute ones.
* :func:`load_captioned_folder` reads a folder of images, each with a sibling ``<stem>.txt``
  caption.
* :func:`split_pairs` makes a seeded train/valid/test split that keeps every group in one split,
  so near-duplicate pairs of one group never straddle train and test.

Every problem with the data raises :class:`~contrastkit.errors.ContrastkitError` with a
one-sentence fix.
"""

from __future__ import annotations

import csv
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contrastkit.data.validate import short_reason
from contrastkit.errors import ContrastkitError, did_you_mean

__all__ = [
    "IMAGE_EXTENSIONS",
    "PairedData",
    "PairedSplits",
    "load_captioned_folder",
    "load_pairs_csv",
    "resolve_paths",
    "split_pairs",
]

#: File suffixes :func:`load_captioned_folder` treats as images.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass(frozen=True)
class PairedData:
    """Aligned pairs: ``a[i]`` ↔ ``b[i]``, with an optional group name per pair.

    Items are texts, image arrays or image paths, depending on the loader; ``groups[i]`` names
    the group of pair ``i`` (used by :func:`split_pairs`); ``name`` says where the data came from.
    """

    a: list
    b: list
    groups: list[str] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        where = f" of {self.name!r}" if self.name else ""
        for side in ("a", "b"):
            if not isinstance(getattr(self, side), Sequence) or isinstance(
                getattr(self, side), (str, bytes)
            ):
                raise ContrastkitError(
                    f"PairedData.{side}{where} must be a list of items, got "
                    f"{type(getattr(self, side)).__name__}; pass one item per pair in a list."
                )
            object.__setattr__(self, side, list(getattr(self, side)))
        if len(self.a) != len(self.b):
            raise ContrastkitError(
                f"PairedData{where} has {len(self.a)} items in a but {len(self.b)} in b; give "
                "exactly one b item per a item."
            )
        if self.groups is not None:
            groups = list(self.groups) if isinstance(self.groups, Sequence) else None
            if (
                groups is None
                or isinstance(self.groups, str)
                or not all(isinstance(g, str) for g in groups)
            ):
                raise ContrastkitError(
                    f"PairedData.groups{where} must be a list of strings (one group name per "
                    "pair) or None."
                )
            if len(groups) != len(self.a):
                raise ContrastkitError(
                    f"PairedData{where} has {len(groups)} groups for {len(self.a)} pairs; give "
                    "exactly one group name per pair."
                )
            object.__setattr__(self, "groups", groups)

    def __len__(self) -> int:
        return len(self.a)

    def subset(self, indices: Sequence[int] | np.ndarray) -> PairedData:
        """The pairs at ``indices`` (in that order), with their groups and the same name."""
        idx = np.asarray(indices)
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise ContrastkitError(
                f"subset indices must be a 1-D sequence of integers, got {np.asarray(indices)!r}."
            )
        bad = idx[(idx < -len(self)) | (idx >= len(self))]
        if bad.size:
            raise ContrastkitError(
                f"subset index {int(bad[0])} is out of range for {len(self)} pairs; use indices "
                f"in [0, {len(self)})."
            )
        rows = idx.tolist()
        return PairedData(
            a=[self.a[i] for i in rows],
            b=[self.b[i] for i in rows],
            groups=None if self.groups is None else [self.groups[i] for i in rows],
            name=self.name,
        )

    def __repr__(self) -> str:
        groups = "None" if self.groups is None else len(set(self.groups))
        return f"PairedData(name={self.name!r}, pairs={len(self)}, groups={groups})"


@dataclass(frozen=True)
class PairedSplits:
    """A train / valid / test split of :class:`PairedData` (``valid`` is ``None`` when unused)."""

    train: PairedData
    valid: PairedData | None
    test: PairedData


# ---------------------------------------------------------------------------------------------
# CSV / TSV


def load_pairs_csv(
    path: str | Path,
    a_column: str | None = None,
    b_column: str | None = None,
    *,
    sep: str | None = None,
    group_column: str | None = None,
) -> PairedData:
    """Read pairs from a CSV/TSV with a header row (open_clip's ``CsvDataset`` layout).

    ``sep`` defaults to a tab for ``.tsv``/``.tab`` files and a comma otherwise; ``a_column`` and
    ``b_column`` default to the first two columns; ``group_column`` (optional) names the group of
    each pair for :func:`split_pairs`. Cells are stripped of surrounding whitespace; blank lines
    are skipped; a row with an empty (or missing) cell in a used column is an error. Columns of
    image paths stay strings: see :func:`resolve_paths`.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        hint = "it is a directory" if path.is_dir() else "no such file"
        raise ContrastkitError(f"Cannot read pairs from {path} ({hint}); check the path.")
    if sep is None:
        sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    elif not isinstance(sep, str) or len(sep) != 1:
        raise ContrastkitError(f"sep must be one character such as ',' or '\\t', got {sep!r}.")
    try:
        # utf-8-sig drops the byte-order mark that spreadsheet programs write
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=sep)
            rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as exc:
        raise ContrastkitError(
            f"{path} is not UTF-8 text ({short_reason(exc)}); save it as UTF-8."
        ) from exc
    except csv.Error as exc:
        raise ContrastkitError(
            f"{path} is not a valid CSV ({short_reason(exc)}); fix the file."
        ) from exc
    rows = [(line, row) for line, row in rows if row]  # csv yields [] for blank lines
    if not rows:
        raise ContrastkitError(f"{path} is empty; it needs a header row and at least 2 pairs.")
    header = [cell.strip() for cell in rows[0][1]]
    if len(header) < 2:
        raise ContrastkitError(
            f"{path} has {len(header)} column with sep={sep!r}; it needs at least 2 (pass sep "
            "if the file uses another separator)."
        )
    for i, name in enumerate(header):
        if not name or name in header[:i]:
            problem = f"column {i + 1} has no name" if not name else f"{name!r} appears twice"
            raise ContrastkitError(
                f"The header row of {path} is not usable ({problem}); give every column a "
                "distinct name."
            )
    a_column = header[0] if a_column is None else a_column
    b_column = header[1] if b_column is None else b_column
    columns = {"a_column": a_column, "b_column": b_column}
    if group_column is not None:
        columns["group_column"] = group_column
    for arg, column in columns.items():
        if column not in header:
            raise ContrastkitError(
                f"{path} has no column {column!r} ({arg}){did_you_mean(str(column), header)}; "
                f"its columns are: {', '.join(header)}."
            )
    if a_column == b_column:
        raise ContrastkitError(
            f"a_column and b_column are both {a_column!r}; pick two different columns of {path}."
        )
    index = {name: header.index(name) for name in columns.values()}
    values: dict[str, list[str]] = {name: [] for name in index}
    for line, row in rows[1:]:
        for name, i in index.items():
            cell = row[i].strip() if i < len(row) else ""
            if not cell:
                raise ContrastkitError(
                    f"Line {line} of {path} has an empty {name!r} cell; fill it in or delete "
                    "the line."
                )
            values[name].append(cell)
    if len(rows) - 1 < 2:
        raise ContrastkitError(
            f"{path} holds {len(rows) - 1} pairs below its header; it needs at least 2."
        )
    return PairedData(
        a=values[a_column],
        b=values[b_column],
        groups=None if group_column is None else values[group_column],
        name=str(path),
    )


def resolve_paths(
    data: PairedData, column: str = "a", root: str | Path | None = None
) -> PairedData:
    """Make the paths in ``data.a`` or ``data.b`` absolute and check that every file exists.

    Relative paths are resolved against ``root`` (pass the CSV's folder); ``root=None`` means the
    current directory, where open_clip's ``CsvDataset`` opens them. Absolute paths are kept.
    """
    if not isinstance(data, PairedData):
        raise ContrastkitError(f"resolve_paths needs PairedData, got {type(data).__name__}.")
    if column not in ("a", "b"):
        raise ContrastkitError(f"column must be 'a' or 'b', got {column!r}.")
    base = Path.cwd() if root is None else Path(root).expanduser()
    if not base.is_dir():
        raise ContrastkitError(f"root {base} is not a directory; pass the folder of the CSV.")
    items = getattr(data, column)
    resolved: list[str] = []
    missing: list[tuple[str, Path]] = []
    for item in items:
        if not isinstance(item, (str, Path)):
            raise ContrastkitError(
                f"Column {column!r} of {data.name!r} holds {type(item).__name__} items, not "
                "paths; resolve_paths only applies to a column of file paths."
            )
        p = Path(item).expanduser()
        p = (p if p.is_absolute() else base / p).resolve()
        if not p.is_file():
            missing.append((str(item), p))
        resolved.append(str(p))
    if missing:
        item, p = missing[0]
        raise ContrastkitError(
            f"{len(missing)} of {len(items)} files in column {column!r} of {data.name!r} do not "
            f"exist, e.g. {item!r} (looked for {p}); fix the paths or pass the right root."
        )
    a, b = (resolved, data.b) if column == "a" else (data.a, resolved)
    return PairedData(a=a, b=b, groups=data.groups, name=data.name)


# ---------------------------------------------------------------------------------------------
# Captioned image folder


def load_captioned_folder(root: str | Path) -> PairedData:
    """Images under ``root`` (recursively; png/jpg/jpeg/bmp/webp) with sibling ``<stem>.txt``.

    ``a`` holds the images as uint8 RGB arrays ``[H, W, 3]`` (PIL; grayscale, palette and alpha
    images are converted to RGB), ``b`` the stripped caption texts. Files are in sorted path
    order; hidden files and folders are skipped; ``.txt`` files without an image are ignored.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ContrastkitError(f"No directory at {root}; check the path of the captioned folder.")
    images = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not images:
        raise ContrastkitError(
            f"{root} holds no images ({', '.join(IMAGE_EXTENSIONS)}); add images, each with a "
            "<name>.txt caption next to it."
        )
    arrays, captions = [], []
    for image in images:
        caption_file = image.with_suffix(".txt")
        if not caption_file.is_file():
            raise ContrastkitError(
                f"Image {image} has no caption file {caption_file.name}; write its caption there "
                "or remove the image."
            )
        try:
            caption = caption_file.read_text(encoding="utf-8-sig").strip()
        except UnicodeDecodeError as exc:
            raise ContrastkitError(
                f"Caption file {caption_file} is not UTF-8 text ({short_reason(exc)}); save it "
                "as UTF-8."
            ) from exc
        if not caption:
            raise ContrastkitError(
                f"Caption file {caption_file} is empty; write a caption for {image.name}."
            )
        arrays.append(_read_rgb(image))
        captions.append(caption)
    return PairedData(a=arrays, b=captions, name=str(root))


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError, SyntaxError) as exc:  # PIL raises these for corrupt files
        raise ContrastkitError(
            f"Cannot read image file {path} ({exc.__class__.__name__}); remove or replace it."
        ) from exc


# ---------------------------------------------------------------------------------------------
# Splitting


def _check_fractions(fractions: Any) -> tuple[float, float, float]:
    ok = isinstance(fractions, Sequence) and len(fractions) in (2, 3)
    values: list[float] = []
    if ok:
        for f in fractions:
            if isinstance(f, bool) or not isinstance(f, numbers.Real) or not math.isfinite(f):
                ok = False
                break
            values.append(float(f))
    if not ok or any(f < 0 for f in values) or abs(sum(values) - 1.0) > 1e-6 or values[0] <= 0:
        raise ContrastkitError(
            "fractions must be (train, valid, test) or (train, test) non-negative numbers that "
            f"sum to 1 with train > 0, e.g. (0.8, 0.1, 0.1); got {fractions!r}."
        )
    if len(values) == 2:
        values.insert(1, 0.0)
    return values[0], values[1], values[2]


def split_pairs(
    data: PairedData,
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    by_group: bool = True,
) -> PairedSplits:
    """A seeded train/valid/test split of ``data`` (``fractions`` = (train, valid, test)).

    Grouped (``by_group`` and ``data.groups`` given): the sorted group names are shuffled by a
    seeded permutation and laid end to end by their pair counts; a group goes to the split in
    whose share of ``[0, 1)`` its midpoint falls. So whole groups stay together, the row
    fractions are met up to one group, and the split does not depend on the order of the rows.
    Otherwise rows are shuffled; the valid and test splits get ``ceil(fraction · N)`` rows.
    Rows keep their original order inside each split. A zero valid fraction gives
    ``valid=None``, a zero test fraction an empty test split; a split with a positive fraction
    that would stay empty is an error.
    """
    if not isinstance(data, PairedData):
        raise ContrastkitError(f"split_pairs needs PairedData, got {type(data).__name__}.")
    fracs = _check_fractions(fractions)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ContrastkitError(f"seed must be an integer in [0, 2**32), got {seed!r}.")
    rng = np.random.default_rng(int(seed))
    n = len(data)
    if by_group and data.groups is not None:
        names, codes, counts = np.unique(
            np.asarray(data.groups, dtype=object), return_inverse=True, return_counts=True
        )
        order = rng.permutation(len(names))
        ends = np.cumsum(counts[order])
        mids = (ends - counts[order] / 2) / max(n, 1)
        bounds = np.cumsum(fracs)[:2]
        split_of_group = np.empty(len(names), dtype=np.int64)
        split_of_group[order] = np.searchsorted(bounds, mids, side="right")
        which = split_of_group[codes]
        unit = f"{len(names)} groups"
    else:
        n_valid = math.ceil(fracs[1] * n - 1e-9) if fracs[1] > 0 else 0
        n_test = math.ceil(fracs[2] * n - 1e-9) if fracs[2] > 0 else 0
        which = np.zeros(n, dtype=np.int64)
        perm = rng.permutation(n)
        which[perm[n - n_valid - n_test : n - n_test]] = 1
        which[perm[n - n_test :]] = 2
        unit = f"{n} pairs"
    parts = []
    for k, part in enumerate(("train", "valid", "test")):
        rows = np.flatnonzero(which == k)
        if fracs[k] > 0 and len(rows) == 0:
            raise ContrastkitError(
                f"{data.name or 'The data'!r} has {unit}, too few to give the {part} split "
                f"(fraction {fracs[k]:g}) any pairs; add data, change fractions, or set that "
                "fraction to 0."
            )
        parts.append(data.subset(rows))
    return PairedSplits(train=parts[0], valid=parts[1] if fracs[1] > 0 else None, test=parts[2])
