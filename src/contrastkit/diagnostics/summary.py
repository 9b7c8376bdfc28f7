"""Every number of the diagnostics for one embedding set, optionally a train split for a probe,
and optionally a second set to compare with: what ``contrastkit diagnose`` prints."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrastkit.diagnostics._inputs import features_np, labels_np, subsample
from contrastkit.diagnostics.calibration import probe_calibration
from contrastkit.diagnostics.gap import modality_gap
from contrastkit.diagnostics.geometry import collapse_std, sphere_geometry
from contrastkit.diagnostics.hardness import hardness_statistics
from contrastkit.diagnostics.maps import neighbour_label_agreement
from contrastkit.diagnostics.shift import frechet_bootstrap
from contrastkit.diagnostics.spectrum import spectrum_summary
from contrastkit.errors import ContrastkitError
from contrastkit.functional.pairs import Pairs

__all__ = ["diagnose", "load_embeddings"]

#: Rows used for the O(N²) measurements (hardness, neighbours) of a larger set.
MAX_ROWS = 2048


def diagnose(
    features: Any,
    labels: Any | None = None,
    *,
    other: Any | None = None,
    paired: bool = False,
    train_features: Any | None = None,
    train_labels: Any | None = None,
    temperature: float = 0.1,
    seed: int = 0,
) -> dict[str, float]:
    """A flat ``{name: value}`` of the diagnostics of ``features [N, D]``:

    - always: ``n``, ``dim``, ``uniformity``, ``collapse_std``, ``effective_rank``,
      ``effective_rank_fraction``, ``top_variance_fraction``, and ``hardness_normalized_entropy``
      / ``hardness_top1_mass`` at ``temperature`` with every other row as a negative;
    - with ``labels``: ``tolerance``, ``neighbour_label_agreement``;
    - with ``train_features`` and both label arrays: ``probe_ece``, ``probe_accuracy`` (a linear
      probe fit on the train rows) and ``frechet_train_vs_this`` (``_std`` from a bootstrap);
    - with ``other`` (a second set in the same space): ``gap_*`` (:func:`modality_gap`,
      ``paired`` when row ``i`` of both sets belong together) and ``frechet_distance`` with
      ``frechet_std``.
    """
    x = features_np(features, "features", min_rows=3)
    y = None if labels is None else labels_np(labels, "labels", len(x))
    out: dict[str, float] = {"n": float(len(x)), "dim": float(x.shape[1])}
    geometry = sphere_geometry(x, y, seed=seed)
    out["uniformity"] = geometry["uniformity"]
    if "tolerance" in geometry:
        out["tolerance"] = geometry["tolerance"]
    out["collapse_std"] = collapse_std(x)
    out |= {k: float(v) for k, v in spectrum_summary(x).items() if k != "dim"}
    rows = subsample(len(x), MAX_ROWS, seed)
    ids = torch.arange(len(rows))
    hardness = hardness_statistics(
        torch.from_numpy(x[rows]), Pairs(ids, ids, 0), temperature=temperature
    )
    out["hardness_normalized_entropy"] = float(hardness["normalized_entropy"].mean())
    out["hardness_top1_mass"] = float(hardness["top_k_mass"].mean())
    if y is not None:
        out["neighbour_label_agreement"] = neighbour_label_agreement(x[rows], y[rows])
    if train_features is not None:
        if y is None or train_labels is None:
            raise ContrastkitError(
                "A probe on train_features needs train_labels and labels for the evaluated set."
            )
        calibration = probe_calibration(train_features, train_labels, x, y, seed=seed)
        out["probe_ece"], out["probe_accuracy"] = calibration["ece"], calibration["accuracy"]
        shift = frechet_bootstrap(train_features, x, seed=seed)
        out["frechet_train_vs_this"] = shift["distance"]
        out["frechet_train_vs_this_std"] = shift["bootstrap_std"]
    if other is not None:
        b = features_np(other, "other", min_rows=3)
        if b.shape[1] != x.shape[1]:
            raise ContrastkitError(
                f"The two sets have dimensions {x.shape[1]} and {b.shape[1]}; compare embeddings "
                "from the same encoder."
            )
        out |= {f"gap_{k}": v for k, v in modality_gap(x, b, paired=paired, seed=seed).items()}
        shift = frechet_bootstrap(x, b, seed=seed)
        out["frechet_distance"], out["frechet_std"] = shift["distance"], shift["bootstrap_std"]
    return {k: float(v) for k, v in out.items()}


FEATURE_KEYS = ("test_features", "features", "embeddings")
LABEL_KEYS = ("test_labels", "labels")


def load_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a user's ``.npz`` (read as data: ``allow_pickle=False``) that
    :func:`diagnose` takes: ``features`` (``test_features``, ``features`` or ``embeddings``, else
    the file's only 2-D array), ``labels`` (``test_labels`` or ``labels``) when present, and
    ``train_features``/``train_labels`` (as ``contrastkit fit``/``embed`` write them) when both
    splits are labelled."""
    path = Path(path)
    if not path.is_file():
        raise ContrastkitError(f"The embeddings file {path} does not exist; check the path.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise ValueError("not an .npz archive")
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise ContrastkitError(
            f"{path} is not an .npz archive of plain numeric arrays (object arrays are not "
            "read); write it with numpy.savez."
        ) from None
    key = next((k for k in FEATURE_KEYS if k in arrays), None)
    if key is None:
        two_d = [k for k, v in arrays.items() if v.ndim == 2]
        if len(two_d) != 1:
            raise ContrastkitError(
                f"{path} has arrays {sorted(arrays)}; name the features one of "
                f"{', '.join(FEATURE_KEYS)}."
            )
        key = two_d[0]
    out = {"features": arrays[key]}
    label_key = next((k for k in LABEL_KEYS if k in arrays), None)
    if label_key is not None:
        out["labels"] = arrays[label_key]
    both = "train_features" in arrays and "train_labels" in arrays
    if "labels" in out and both and key != "train_features":
        out["train_features"], out["train_labels"] = (
            arrays["train_features"],
            arrays["train_labels"],
        )
    return out
