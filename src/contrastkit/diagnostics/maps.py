"""Pictures of an embedding space: a 2-D map (PCA always; t-SNE from scikit-learn; UMAP when the
``umap-learn`` package is installed) and nearest neighbours in cosine similarity, for a grid of
queries and the images closest to them."""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

from contrastkit.diagnostics._inputs import features_np, labels_np, positive_int, subsample
from contrastkit.errors import ContrastkitError, unknown_name

__all__ = [
    "available_map_methods",
    "embedding_map",
    "nearest_neighbours",
    "neighbour_label_agreement",
]

MapMethod = Literal["pca", "tsne", "umap"]
#: Points drawn in a map when the set is larger (t-SNE is O(N log N) per iteration).
MAX_MAP_POINTS = 2000


def available_map_methods() -> list[str]:
    """The 2-D map methods this installation can run: PCA and t-SNE always, UMAP when installed."""
    return ["pca", "tsne"] + (["umap"] if importlib.util.find_spec("umap") else [])


def embedding_map(
    features: Any,
    method: MapMethod = "pca",
    *,
    seed: int = 0,
    max_points: int | None = MAX_MAP_POINTS,
) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates ``[n, 2]`` of at most ``max_points`` rows of ``features [N, D]`` and the
    row indices ``[n]`` they belong to. ``"pca"`` projects on the two leading principal axes;
    ``"tsne"`` (van der Maaten & Hinton 2008) and ``"umap"`` (McInnes et al. 2018) use cosine
    distances and ``seed``."""
    x = features_np(features, "features", min_rows=3)
    if method not in ("pca", "tsne", "umap"):
        raise unknown_name("map method", str(method), ["pca", "tsne", "umap"])
    if method not in available_map_methods():
        raise ContrastkitError(
            "The 'umap' map needs the umap-learn package; pip install umap-learn."
        )
    rows = subsample(len(x), max_points, seed)
    x = x[rows]
    if x.shape[1] < 2:
        return np.column_stack([x[:, 0], np.zeros(len(x))]), rows
    if method == "pca":
        with np.errstate(invalid="ignore", divide="ignore"):  # a collapsed set has no variance
            coords = PCA(n_components=2, random_state=seed).fit_transform(x)
    elif method == "tsne":
        perplexity = min(30.0, (len(x) - 1) / 3)
        coords = TSNE(
            n_components=2, perplexity=perplexity, metric="cosine", init="pca", random_state=seed
        ).fit_transform(x)
    else:  # pragma: no cover - only where umap-learn is installed
        import umap

        coords = umap.UMAP(n_components=2, metric="cosine", random_state=seed).fit_transform(x)
    return np.asarray(coords, dtype=np.float64), rows


def nearest_neighbours(
    queries: Any, references: Any, k: int = 8, *, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` references closest to each query in cosine similarity: indices ``[Q, k]`` and
    similarities ``[Q, k]``, most similar first. With ``exclude_self`` the queries are the
    references (same rows) and each row's own match is skipped."""
    q = features_np(queries, "queries")
    r = features_np(references, "references")
    if q.shape[1] != r.shape[1]:
        raise ContrastkitError(
            f"queries have dim {q.shape[1]} but references have dim {r.shape[1]}; "
            "they must come from the same encoder."
        )
    k = positive_int(k, "k")
    if exclude_self and len(q) != len(r):
        raise ContrastkitError("exclude_self needs the queries to be the references.")
    wanted = k + int(exclude_self)
    if wanted > len(r):
        raise ContrastkitError(
            f"k={k} neighbours asked for but there are only {len(r)} references."
        )
    index = NearestNeighbors(n_neighbors=wanted, metric="cosine", algorithm="brute").fit(r)
    distance, idx = index.kneighbors(q)
    if exclude_self:
        # drop each row's own entry (not always in column 0 when duplicates tie)
        keep = idx != np.arange(len(q))[:, None]
        keep[keep.sum(axis=1) > k, -1] = False  # own row absent: drop the farthest instead
        idx = idx[keep].reshape(len(q), k)
        distance = distance[keep].reshape(len(q), k)
    return idx, 1.0 - distance


def neighbour_label_agreement(features: Any, labels: Any, k: int = 10) -> float:
    """Fraction of each sample's ``k`` nearest neighbours (cosine, itself excluded) that share its
    label, averaged over samples: 1 when classes form tight clusters, about the class prior when
    the space ignores the labels."""
    x = features_np(features, "features", min_rows=2)
    y = labels_np(labels, "labels", len(x))
    idx, _ = nearest_neighbours(x, x, min(k, len(x) - 1), exclude_self=True)
    return float((y[idx] == y[:, None]).mean())
