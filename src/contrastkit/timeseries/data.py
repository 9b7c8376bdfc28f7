"""Time-series data: the UCR/UEA archive (through aeon), ``.npz`` and CSV arrays.

Every loader returns :class:`TimeSeriesData` with float32 arrays of shape ``(n, channels,
length)``. Series of unequal length are padded with NaN at the end, as TS2Vec does (Yue et al.
2022, code ``datautils.py``/``utils.py``), and their true lengths are kept. NaN inside a series
means a missing observation (the TS2Vec encoder zeroes it); infinities are rejected.

Standardisation follows TS2Vec's loaders:

- UCR (univariate): the archive already z-normalises every series, so values are used as they
  are, except for the archive's few non-normalised sets (e.g. PickupGestureWiimoteZ), which are
  standardised with the mean/std of all training values (``"global"``).
- UEA (multivariate): per-channel mean/std of the training values (``"channel"``, sklearn's
  ``StandardScaler`` over every time step of every series).
"""

from __future__ import annotations

import csv
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from contrastkit.errors import ContrastkitError, did_you_mean, unknown_name

__all__ = [
    "TimeSeriesData",
    "bundled_datasets",
    "group_codes",
    "load_csv_series",
    "load_npz_series",
    "load_timeseries",
    "load_ucr",
    "series_lengths",
    "standardize",
    "timeseries_from_arrays",
    "ucr_source",
]

Normalization = Literal["none", "series", "channel", "global"]
_NORMALIZATIONS = ("none", "series", "channel", "global")

#: UCR sets the archive ships without per-series z-normalisation; TS2Vec standardises them with
#: the training mean/std (code ``datautils.load_UCR``). ``UnitTest`` is aeon's subset of Chinatown.
NOT_NORMALIZED = frozenset(
    {
        "AllGestureWiimoteX",
        "AllGestureWiimoteY",
        "AllGestureWiimoteZ",
        "BME",
        "Chinatown",
        "Crop",
        "EOGHorizontalSignal",
        "EOGVerticalSignal",
        "Fungi",
        "GestureMidAirD1",
        "GestureMidAirD2",
        "GestureMidAirD3",
        "GesturePebbleZ1",
        "GesturePebbleZ2",
        "GunPointAgeSpan",
        "GunPointMaleVersusFemale",
        "GunPointOldVersusYoung",
        "HouseTwenty",
        "InsectEPGRegularTrain",
        "InsectEPGSmallTrain",
        "MelbournePedestrian",
        "PickupGestureWiimoteZ",
        "PigAirwayPressure",
        "PigArtPressure",
        "PigCVP",
        "PLAID",
        "PowerCons",
        "Rock",
        "SemgHandGenderCh2",
        "SemgHandMovementCh2",
        "SemgHandSubjectCh2",
        "ShakeGestureWiimoteZ",
        "SmoothSubspace",
        "UMD",
        "UnitTest",
    }
)

#: forecasting/regression/anomaly sets that aeon also bundles; not classification archives
_NOT_CLASSIFICATION = frozenset(
    {
        "Airline",
        "CardanoSentiment",
        "Covid3Month",
        "Covid3Month_disc",
        "Daphnet_S06R02E0",
        "KDD-TSAD_135",
        "Longley",
        "Lynx",
        "PBS_dataset",
        "ShampooSales",
        "Uschange",
        "m1_yearly_dataset",
        "segmentation",
        "solar",
    }
)


@dataclass(frozen=True, eq=False)
class TimeSeriesData:
    """A train/test pair of time series with optional integer labels.

    ``x_*`` are float32 ``(n, channels, length)`` (NaN after each series' end when lengths
    differ); ``y_*`` are int64 ``(n,)`` with classes ``0..K-1`` or ``None``; ``lengths_*`` are
    the true lengths; ``classes[k]`` names class ``k`` when known. ``trial_ids`` and
    ``patient_ids`` (int64 ``(n_train,)`` or ``None``) group the training series for COMET's
    trial and patient levels.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    classes: tuple[str, ...] | None = None
    lengths_train: np.ndarray | None = None
    lengths_test: np.ndarray | None = None
    trial_ids: np.ndarray | None = None
    patient_ids: np.ndarray | None = None

    @property
    def channels(self) -> int:
        """Number of variables per time step (1 = univariate)."""
        return int(self.x_train.shape[1])

    @property
    def length(self) -> int:
        """Padded length of the training series."""
        return int(self.x_train.shape[2])

    @property
    def has_labels(self) -> bool:
        return self.y_train is not None

    @property
    def num_classes(self) -> int | None:
        if self.classes is not None:
            return len(self.classes)
        if self.y_train is None:
            return None
        return int(max(self.y_train.max(), -1 if self.y_test is None else self.y_test.max())) + 1

    @property
    def equal_length(self) -> bool:
        """Whether every series (train and test) has the full padded length."""
        lengths = [v for v in (self.lengths_train, self.lengths_test) if v is not None]
        return all(bool((v == self.length).all()) for v in lengths) and (
            self.x_test.shape[2] == self.length
        )

    def __repr__(self) -> str:
        return (
            f"TimeSeriesData(name={self.name!r}, train={len(self.x_train)}, "
            f"test={len(self.x_test)}, channels={self.channels}, length={self.length}, "
            f"num_classes={self.num_classes})"
        )


# ----------------------------------------------------------------------------- validation


def series_lengths(x: np.ndarray) -> np.ndarray:
    """True length of each series of ``(n, C, L)``: one past its last time step with any value."""
    observed = ~np.isnan(x).all(axis=1)  # (n, L)
    last = observed.shape[1] - 1 - np.argmax(observed[:, ::-1], axis=1)
    return np.where(observed.any(axis=1), last + 1, 0).astype(np.int64)


def _as_series(x: object, what: str, where: str) -> np.ndarray:
    """``x`` as float32 ``(n, C, L)``; 2-D input is read as univariate ``(n, L)``."""
    try:
        a = np.asarray(x)
    except (TypeError, ValueError):
        a = np.asarray([], dtype=object)
    if a.dtype == object or a.dtype.kind not in "fiub":
        raise ContrastkitError(
            f"{what} in {where!r} must be a numeric array of shape (n, channels, length), got "
            f"dtype {a.dtype}; convert it with np.asarray(x, dtype=np.float32)."
        )
    if a.ndim == 2:
        a = a[:, None, :]
    if a.ndim != 3 or a.size == 0:
        raise ContrastkitError(
            f"{what} in {where!r} has shape {tuple(a.shape)}, but time series must be a "
            "non-empty (n, channels, length) array (or (n, length) for univariate data)."
        )
    a = a.astype(np.float32)
    if np.isinf(a).any():
        raise ContrastkitError(
            f"{what} in {where!r} contains infinite values; replace them with finite values "
            "or with NaN for missing observations."
        )
    lengths = series_lengths(a)
    if (lengths == 0).any():
        i = int(np.argmin(lengths))
        raise ContrastkitError(
            f"Series {i} of {what} in {where!r} has no observed value (all NaN); remove it."
        )
    if lengths.max() < 2:
        raise ContrastkitError(
            f"The series of {what} in {where!r} have a single time step; contrasting time "
            "steps needs series of length at least 2."
        )
    return np.ascontiguousarray(a)


def _encode_labels(
    y_train: object, y_test: object | None, n_train: int, n_test: int, where: str
) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """Labels of any type to int64 ``0..K-1`` (numeric order when every label is a number)."""

    def as_strings(y: object, n: int, what: str) -> np.ndarray:
        a = np.asarray(y)
        if a.ndim != 1 or len(a) != n:
            raise ContrastkitError(
                f"{what} in {where!r} has shape {tuple(a.shape)}, but labels must be 1-D with "
                f"one entry per series ({n}); flatten it or fix its length."
            )
        if a.dtype.kind == "f":
            if np.isnan(a).any():
                raise ContrastkitError(
                    f"{what} in {where!r} contains NaN labels; drop those series or label them."
                )
            if np.all(a == np.round(a)):
                a = a.astype(np.int64)
        return np.array([str(v) for v in a.tolist()], dtype=object)

    train = as_strings(y_train, n_train, "y_train")
    test = None if y_test is None else as_strings(y_test, n_test, "y_test")
    names = sorted(set(train.tolist()), key=_label_key)
    unseen = [] if test is None else sorted(set(test.tolist()) - set(names), key=_label_key)
    if unseen:
        raise ContrastkitError(
            f"The test labels of {where!r} include {unseen[:3]} which no training series has; "
            "every test class must appear in the training split."
        )
    index = {name: i for i, name in enumerate(names)}
    encode = lambda y: np.array([index[v] for v in y], dtype=np.int64)  # noqa: E731
    return encode(train), None if test is None else encode(test), tuple(names)


def _label_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def standardize(
    x_train: np.ndarray, x_test: np.ndarray, mode: Normalization
) -> tuple[np.ndarray, np.ndarray]:
    """Standardise ``(n, C, L)`` arrays, ignoring NaN (a zero std leaves the scale at 1).

    ``"global"``: one mean/std over every training value (TS2Vec, non-normalised UCR sets);
    ``"channel"``: per-channel mean/std over the training values (TS2Vec, UEA; sklearn's
    ``StandardScaler``); ``"series"``: every series and channel z-normalised on its own (the UCR
    archive's convention); ``"none"``: unchanged.
    """
    if mode not in _NORMALIZATIONS:
        raise ContrastkitError(
            f"Unknown normalization {mode!r}{did_you_mean(str(mode), _NORMALIZATIONS)}; use one "
            f"of: {', '.join(_NORMALIZATIONS)}."
        )
    if mode == "none":
        return x_train, x_test
    if mode == "series":
        return _znorm(x_train, axis=2), _znorm(x_test, axis=2)
    axis = (0, 1, 2) if mode == "global" else (0, 2)
    mean = np.nanmean(x_train.astype(np.float64), axis=axis, keepdims=True)
    std = np.nanstd(x_train.astype(np.float64), axis=axis, keepdims=True)
    std = np.where(std > 0, std, 1.0)
    scale = lambda x: ((x - mean) / std).astype(np.float32)  # noqa: E731
    return scale(x_train), scale(x_test)


def _znorm(x: np.ndarray, axis: int) -> np.ndarray:
    mean = np.nanmean(x.astype(np.float64), axis=axis, keepdims=True)
    std = np.nanstd(x.astype(np.float64), axis=axis, keepdims=True)
    return ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def _pad(series: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Stack ``(C, L_i)`` arrays into ``(n, C, length)``, NaN after each series' end."""
    out = np.full((len(series), series[0].shape[0], length), np.nan, dtype=np.float32)
    for i, s in enumerate(series):
        out[i, :, : s.shape[1]] = s
    return out


def _pad_to(x: np.ndarray, length: int) -> np.ndarray:
    if x.shape[2] >= length:
        return x
    return np.concatenate(
        [x, np.full((*x.shape[:2], length - x.shape[2]), np.nan, np.float32)], axis=2
    )


def timeseries_from_arrays(
    name: str,
    x: object,
    y: object | None = None,
    *,
    x_test: object | None = None,
    y_test: object | None = None,
    trial_ids: object | None = None,
    patient_ids: object | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    normalize: Normalization = "channel",
) -> TimeSeriesData:
    """Validated :class:`TimeSeriesData` from arrays ``(n, channels, length)`` (or ``(n, length)``).

    Without ``x_test`` a seeded split holds out ``test_fraction``: of the patients (else the
    trials) when ``patient_ids`` (``trial_ids``) are given, so that no group is in both splits,
    otherwise of the series, stratified when labelled. ``trial_ids``/``patient_ids`` hold one id
    per series of ``x``. Splits of unequal padded length are NaN-padded to the longer one.
    """
    xa = _as_series(x, "x", name)
    groups = {
        "trial_ids": group_codes(trial_ids, len(xa), "trial_ids", name),
        "patient_ids": group_codes(patient_ids, len(xa), "patient_ids", name),
    }
    if y_test is not None and x_test is None:
        raise ContrastkitError(f"{name!r} has y_test but no x_test; give both or neither.")
    if (y is None) != (y_test is None) and x_test is not None:
        raise ContrastkitError(
            f"{name!r} labels only one split; give labels for both train and test or for neither."
        )
    if x_test is None:
        if not 0.0 < float(test_fraction) < 1.0:
            raise ContrastkitError(
                f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}."
            )
        by = groups["patient_ids"] if groups["patient_ids"] is not None else groups["trial_ids"]
        train_idx, test_idx = (
            _split(len(xa), y, test_fraction, seed, name)
            if by is None
            else _group_split(by, test_fraction, seed, name)
        )
        groups = {
            k: None if v is None else np.unique(v[train_idx], return_inverse=True)[1]
            for k, v in groups.items()
        }
        ya = None if y is None else np.asarray(y)
        xa, xt = xa[train_idx], xa[test_idx]
        y, y_test = (None, None) if ya is None else (ya[train_idx], ya[test_idx])
    else:
        xt = _as_series(x_test, "x_test", name)
        if xt.shape[1] != xa.shape[1]:
            raise ContrastkitError(
                f"x has {xa.shape[1]} channels but x_test has {xt.shape[1]} in {name!r}; both "
                "splits need the same variables."
            )
    length = max(xa.shape[2], xt.shape[2])
    xa, xt = standardize(_pad_to(xa, length), _pad_to(xt, length), normalize)
    labels = (None, None, None) if y is None else _encode_labels(y, y_test, len(xa), len(xt), name)
    return TimeSeriesData(
        name,
        xa,
        labels[0],
        xt,
        labels[1],
        labels[2],
        series_lengths(xa),
        series_lengths(xt),
        **groups,
    )


def group_codes(ids: object | None, n: int, what: str, where: str = "") -> np.ndarray | None:
    """Integer codes ``0..G-1`` of one group id per series (numbers or strings), or ``None``."""
    if ids is None:
        return None
    place = f" in {where!r}" if where else ""
    a = np.asarray(ids)
    if a.shape != (n,):
        raise ContrastkitError(
            f"{what}{place} has shape {tuple(a.shape)}; give one id per series of x ({n})."
        )
    if a.dtype.kind == "f" and np.isnan(a).any():
        raise ContrastkitError(f"{what}{place} has missing (NaN) ids; give every series one.")
    if a.dtype.kind not in "iufUSb":
        raise ContrastkitError(f"{what}{place} must hold numbers or strings, got dtype {a.dtype}.")
    return np.unique(a, return_inverse=True)[1].astype(np.int64)


def _group_split(
    groups: np.ndarray, test_fraction: float, seed: int, where: str
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import GroupShuffleSplit

    if len(np.unique(groups)) < 2:
        raise ContrastkitError(
            f"{where!r} has a single patient/trial group, too few for a split that keeps groups "
            "apart; add groups or give x_test."
        )
    splitter = GroupShuffleSplit(1, test_size=test_fraction, random_state=int(seed))
    train_idx, test_idx = next(splitter.split(groups, groups=groups))
    return np.sort(train_idx), np.sort(test_idx)


def _split(
    n: int, y: object | None, test_fraction: float, seed: int, where: str
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    n_test = int(np.ceil(test_fraction * n))
    if n_test < 1 or n - n_test < 1:
        raise ContrastkitError(
            f"{where!r} has {n} series, too few for a train/test split with "
            f"test_fraction={test_fraction}; add series or give x_test."
        )
    stratify = None
    if y is not None:
        ya = np.asarray(y)
        if ya.ndim != 1 or len(ya) != n:
            raise ContrastkitError(
                f"y in {where!r} has shape {tuple(ya.shape)}; give one label per series ({n})."
            )
        _, counts = np.unique(ya.astype(str), return_counts=True)
        if counts.min() >= 2 and min(n_test, n - n_test) >= len(counts):
            stratify = ya.astype(str)
    return train_test_split(
        np.arange(n), test_size=test_fraction, random_state=int(seed), stratify=stratify
    )


# ----------------------------------------------------------------------------- UCR / UEA


def _aeon_data_dir() -> Path | None:
    try:
        import aeon.datasets as aeon_datasets
    except ImportError:
        return None
    return Path(aeon_datasets.__file__).parent / "data"


def bundled_datasets() -> list[str]:
    """UCR/UEA classification sets that ship inside the installed aeon wheel (no download)."""
    root = _aeon_data_dir()
    if root is None or not root.is_dir():
        return []
    return sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir() and d.name not in _NOT_CLASSIFICATION and (d / f"{d.name}_TRAIN.ts").exists()
    )


def _archive_names() -> list[str]:
    try:
        from aeon.datasets import tsc_datasets
    except ImportError:
        return []
    return sorted(set(tsc_datasets.univariate) | set(tsc_datasets.multivariate))


def load_ucr(
    name: str, *, download: bool = False, extract_path: str | os.PathLike | None = None
) -> TimeSeriesData:
    """A UCR (univariate) or UEA (multivariate) archive set with its official train/test split.

    Bundled sets load offline; any other archive name needs ``download=True`` and internet (aeon
    fetches it into ``extract_path``). Standardisation as TS2Vec (module docstring).
    """
    try:
        from aeon.datasets import load_classification
    except ImportError as exc:
        raise ContrastkitError(
            "Loading UCR/UEA data needs aeon; install it with pip install 'contrastkit[timeseries]'."
        ) from exc
    bundled = bundled_datasets()
    by_lower = {n.lower(): n for n in bundled}
    key = str(name).strip()
    if key.lower() in by_lower:
        key = by_lower[key.lower()]
    elif not download:
        archive = _archive_names()
        if key in archive:
            raise ContrastkitError(
                f"UCR/UEA dataset {key!r} is not bundled with aeon; pass download=True to fetch "
                f"it (needs internet), or use one of: {', '.join(bundled)}."
            )
        raise unknown_name("UCR/UEA dataset (bundled with aeon)", key, bundled)
    try:
        parts = [
            load_classification(key, split=s, extract_path=extract_path) for s in ("train", "test")
        ]
    except Exception as exc:  # aeon raises many types when a download fails
        raise ContrastkitError(
            f"aeon could not load UCR/UEA dataset {key!r} ({type(exc).__name__}); check the name "
            "and your internet connection."
        ) from exc
    (x_train, y_train), (x_test, y_test) = parts
    series = [[np.asarray(s, dtype=np.float32) for s in x] for x in (x_train, x_test)]
    length = max(s.shape[1] for part in series for s in part)
    xa, xt = (_pad(part, length) for part in series)
    # UEA: per-channel train statistics; UCR: as archived, except the non-normalised sets
    univariate: Normalization = "global" if key in NOT_NORMALIZED else "none"
    mode: Normalization = "channel" if xa.shape[1] > 1 else univariate
    return timeseries_from_arrays(
        f"ucr:{key}", xa, y_train, x_test=xt, y_test=y_test, normalize=mode
    )


# ----------------------------------------------------------------------------- files

_NPZ_KEYS = ("x", "y", "x_test", "y_test", "trial_ids", "patient_ids")


def load_npz_series(
    path: str | os.PathLike,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    normalize: Normalization = "channel",
) -> TimeSeriesData:
    """An ``.npz`` archive with ``x`` ``(n, channels, length)`` and optional ``y``, ``x_test``,
    ``y_test`` (NaN marks missing steps/padding), and ``trial_ids``/``patient_ids`` (one per
    series of ``x``, for COMET). Loaded with ``allow_pickle=False``."""
    p = Path(path).expanduser()
    name = f"npz:{path}"
    hint = "save it with np.savez(path, x=series, y=labels)"
    if not p.is_file():
        raise ContrastkitError(f"{name!r}: no file at {p}; check the path.")
    try:
        loaded = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ContrastkitError(f"Cannot read {p} as an .npz archive; {hint}.") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ContrastkitError(f"{name!r} is a single .npy array, not an .npz archive; {hint}.")
    with loaded as archive:
        if "x" not in archive.files:
            found = ", ".join(archive.files) or "nothing"
            raise ContrastkitError(f"{name!r} has no array named 'x' (found: {found}); {hint}.")
        arrays = {}
        for key in _NPZ_KEYS:
            if key in archive.files:
                try:
                    arrays[key] = archive[key]
                except ValueError as exc:
                    raise ContrastkitError(
                        f"Array {key!r} in {name!r} holds Python objects, which are not loaded "
                        "for safety; save plain numeric or string arrays instead."
                    ) from exc
    return timeseries_from_arrays(
        name,
        arrays["x"],
        arrays.get("y"),
        x_test=arrays.get("x_test"),
        y_test=arrays.get("y_test"),
        trial_ids=arrays.get("trial_ids"),
        patient_ids=arrays.get("patient_ids"),
        seed=seed,
        test_fraction=test_fraction,
        normalize=normalize,
    )


def load_csv_series(
    path: str | os.PathLike,
    *,
    label_column: int | None = 0,
    channels: int = 1,
    seed: int = 0,
    test_fraction: float = 0.2,
    normalize: Normalization = "channel",
) -> TimeSeriesData:
    """A CSV/TSV file in the UCR archive's layout: one series per row, the class label in
    ``label_column`` (``None``: unlabelled), then the values. A row of ``channels`` variables
    holds them channel after channel; empty cells, ``NaN`` and ``?`` are missing values, and
    shorter rows are padded with NaN. A file named ``*_TRAIN.*`` with a ``*_TEST.*`` sibling
    uses that as the test split; otherwise a seeded split holds out ``test_fraction``.
    """
    p = Path(path).expanduser()
    name = f"csv:{path}"
    if not p.is_file():
        raise ContrastkitError(f"{name!r}: no file at {p}; check the path.")
    if not isinstance(channels, int) or channels < 1:
        raise ContrastkitError(f"channels must be a positive integer, got {channels!r}.")
    x, y = _read_csv(p, label_column, channels, name)
    test_path = p.with_name(re.sub(r"_TRAIN(?=\.[^.]*$)", "_TEST", p.name))
    if test_path != p and test_path.is_file():
        xt, yt = _read_csv(test_path, label_column, channels, name)
        return timeseries_from_arrays(name, x, y, x_test=xt, y_test=yt, normalize=normalize)
    return timeseries_from_arrays(
        name, x, y, seed=seed, test_fraction=test_fraction, normalize=normalize
    )


def _read_csv(
    path: Path, label_column: int | None, channels: int, name: str
) -> tuple[np.ndarray, np.ndarray | None]:
    text = path.read_text()
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first else ","
    rows = [
        r for r in csv.reader(text.splitlines(), delimiter=delimiter) if any(c.strip() for c in r)
    ]
    if not rows:
        raise ContrastkitError(f"{name!r} has no rows; write one series per line.")
    labels, series = [], []
    for i, row in enumerate(rows):
        cells = [c.strip() for c in row]
        if label_column is not None:
            if label_column >= len(cells):
                raise ContrastkitError(
                    f"Row {i + 1} of {path.name} has no column {label_column} for the label; "
                    "fix the file or set label_column=None."
                )
            labels.append(cells.pop(label_column))
        while cells and cells[-1] in ("", "NaN", "nan", "?"):
            cells.pop()
        try:
            values = np.array(
                [np.nan if c in ("", "NaN", "nan", "?") else float(c) for c in cells],
                dtype=np.float32,
            )
        except ValueError as exc:
            raise ContrastkitError(
                f"Row {i + 1} of {path.name} has a non-numeric value; every cell but the label "
                "must be a number, empty, NaN or ?."
            ) from exc
        if len(values) % channels:
            values = np.concatenate(
                [values, np.full(channels - len(values) % channels, np.nan, np.float32)]
            )
        if len(values) == 0:
            raise ContrastkitError(f"Row {i + 1} of {path.name} holds no values; remove it.")
        series.append(values.reshape(channels, -1))
    x = _pad(series, max(s.shape[1] for s in series))
    return x, None if label_column is None else np.array(labels)


# ----------------------------------------------------------------------------- specs


def load_timeseries(
    spec: str, *, seed: int = 0, test_fraction: float = 0.2, download: bool = False
) -> TimeSeriesData:
    """Load ``ucr:NAME``, ``npz:PATH`` or ``csv:PATH`` (see the loaders above)."""
    prefix, sep, arg = str(spec).strip().partition(":")
    prefix = prefix.lower()
    if not sep or not arg.strip():
        raise ContrastkitError(
            f"Time-series source {spec!r} needs a prefix and an argument, e.g. 'ucr:GunPoint', "
            "'npz:series.npz' or 'csv:NAME_TRAIN.tsv'."
        )
    arg = arg.strip()
    if prefix == "ucr":
        return load_ucr(arg, download=download)
    if prefix == "npz":
        return load_npz_series(arg, seed=seed, test_fraction=test_fraction)
    if prefix in ("csv", "tsv"):
        return load_csv_series(arg, seed=seed, test_fraction=test_fraction)
    raise unknown_name("time-series source prefix", prefix, ["ucr", "npz", "csv"])


def ucr_source(
    arg: str | None,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    image_size: int | None = None,
    download: bool = False,
) -> TimeSeriesData:
    """``ucr:NAME`` with the signature of :func:`contrastkit.data.registry.register_source`."""
    if not arg:
        raise ContrastkitError(
            f"Data source 'ucr' needs a dataset name, e.g. 'ucr:GunPoint'; bundled: "
            f"{', '.join(bundled_datasets())}."
        )
    if image_size is not None:
        raise ContrastkitError("image_size applies to images only; remove it for 'ucr:' data.")
    return load_ucr(arg, download=download)
