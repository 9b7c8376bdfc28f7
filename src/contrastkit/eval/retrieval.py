"""Two-tower evaluation: paired retrieval (recall@k, MRR, median rank) and zero-shot classification.

Retrieval follows the CLIP / ConVIRT protocol (Radford et al. 2021, §3.1.4 and Table 13;
Zhang et al. 2022, ConVIRT §4.3 image–text retrieval) and CodeSearchNet's MRR (Husain et al.
2019, §3.2): query ``i``'s only correct item is item ``i``; items are ranked by cosine
similarity; the rank is 1-based. **Ties are ranked pessimistically**: the correct item ranks
below every other item with an equal score, so a collapsed encoder (all scores equal) gets the
worst rank ``N``, never a lucky rank 1.

Zero-shot classification is CLIP's (Radford et al. 2021, §3.1.4): each class is embedded from
text prompts ("a photo of a {}."), the normalised prompt embeddings of a class are averaged and
renormalised (prompt ensembling, §3.1.4), and an input gets the class of highest cosine.

No library computes pessimistic-tie ranks in chunks, so the ranking is written here in torch; it
never materialises more than ``chunk_size × N`` similarities.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from contrastkit.errors import ContrastkitError
from contrastkit.eval.inputs import check_features, check_labels

__all__ = [
    "bidirectional_retrieval",
    "class_prompt_embeddings",
    "retrieval_metrics",
    "retrieval_ranks",
    "zero_shot_accuracy",
    "zero_shot_predict",
]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ContrastkitError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _paired(queries: Any, items: Any) -> tuple[torch.Tensor, torch.Tensor]:
    q = check_features(queries, "queries")
    x = check_features(items, "items")
    if len(q) != len(x):
        raise ContrastkitError(
            f"queries has {len(q)} rows but items has {len(x)}; retrieval needs paired sets "
            "where items[i] is the match of queries[i]."
        )
    if q.shape[1] != x.shape[1]:
        raise ContrastkitError(
            f"queries have dim {q.shape[1]} but items have dim {x.shape[1]}; embed both into "
            "one shared space."
        )
    dtype = torch.promote_types(q.dtype, x.dtype)
    return q.to(dtype), x.to(device=q.device, dtype=dtype)


def retrieval_ranks(
    queries: Any, items: Any, *, normalize: bool = True, chunk_size: int = 4096
) -> torch.Tensor:
    """1-based rank of ``items[i]`` among all items for ``queries[i]`` (``[N]`` int64).

    ``rank_i = #{j : s_ij ≥ s_ii}`` with ``s`` the cosine (or, with ``normalize=False``, the dot
    product): ties count against the correct item. Chunked over queries: memory
    ``O(chunk_size × N)``.
    """
    q, x = _paired(queries, items)
    chunk = _positive_int("chunk_size", chunk_size)
    if normalize:
        q, x = F.normalize(q, dim=1), F.normalize(x, dim=1)
    ranks = torch.empty(len(q), dtype=torch.long)
    for start in range(0, len(q), chunk):
        sims = q[start : start + chunk] @ x.T  # [c, N]
        rows = torch.arange(len(sims), device=sims.device)
        positive = sims[rows, start + rows]
        ranks[start : start + len(sims)] = (sims >= positive[:, None]).sum(dim=1).cpu()
    return ranks


def _check_ks(ks: Any) -> list[int]:
    if isinstance(ks, numbers.Integral) and not isinstance(ks, bool):
        ks = (ks,)
    if not isinstance(ks, Iterable) or isinstance(ks, (str, bytes)):
        raise ContrastkitError(
            f"ks must be a list of positive integers such as (1, 5, 10), got {ks!r}."
        )
    out = [_positive_int("each k in ks", k) for k in ks]
    if not out:
        raise ContrastkitError("ks is empty; give at least one cut-off such as (1, 5, 10).")
    return list(dict.fromkeys(out))


def retrieval_metrics(
    queries: Any,
    items: Any,
    *,
    ks: Sequence[int] = (1, 5, 10),
    normalize: bool = True,
    chunk_size: int = 4096,
) -> dict[str, float]:
    """Recall@k, mean reciprocal rank and median rank of paired retrieval ``queries → items``.

    ``queries[i]``'s correct item is ``items[i]`` (a paired test set, ``[N, D]`` each, torch or
    numpy). Ranks come from :func:`retrieval_ranks` (cosine similarity, 1-based, ties ranked
    pessimistically). Returns ``"recall@k"`` = mean(rank ≤ k) for each ``k`` (1 when
    ``k ≥ N``), ``"mrr"`` = mean(1 / rank) and ``"median_rank"`` (numpy's median: the mean of
    the two middle ranks when ``N`` is even).
    """
    ks = _check_ks(ks)
    ranks = retrieval_ranks(queries, items, normalize=normalize, chunk_size=chunk_size)
    r = ranks.double()
    out = {f"recall@{k}": float((r <= k).double().mean()) for k in ks}
    out["mrr"] = float((1.0 / r).mean())
    out["median_rank"] = float(np.median(ranks.numpy()))
    return out


def bidirectional_retrieval(a: Any, b: Any, **kwargs: Any) -> dict[str, float]:
    """:func:`retrieval_metrics` both ways: keys ``"a_to_b/…"`` (``a`` as queries) and
    ``"b_to_a/…"`` (``b`` as queries); keyword arguments go to both."""
    forward = retrieval_metrics(a, b, **kwargs)
    backward = retrieval_metrics(b, a, **kwargs)
    return {
        **{f"a_to_b/{k}": v for k, v in forward.items()},
        **{f"b_to_a/{k}": v for k, v in backward.items()},
    }


def zero_shot_predict(
    features: Any, class_embeddings: Any, *, normalize: bool = True
) -> np.ndarray:
    """Index of the class embedding of highest cosine for each row of ``features`` (``[N]`` int64).

    ``class_embeddings`` is ``[C, D]``, e.g. from :func:`class_prompt_embeddings`. With
    ``normalize=False`` the plain dot product is used. Ties go to the smallest class index.
    """
    x = check_features(features, "features")
    c = check_features(class_embeddings, "class_embeddings")
    if x.shape[1] != c.shape[1]:
        raise ContrastkitError(
            f"features have dim {x.shape[1]} but class_embeddings have dim {c.shape[1]}; embed "
            "both into one shared space."
        )
    dtype = torch.promote_types(x.dtype, c.dtype)
    x, c = x.to(dtype), c.to(device=x.device, dtype=dtype)
    if normalize:
        x, c = F.normalize(x, dim=1), F.normalize(c, dim=1)
    return (x @ c.T).argmax(dim=1).cpu().numpy().astype(np.int64)


def zero_shot_accuracy(
    features: Any, class_embeddings: Any, labels: Any, *, normalize: bool = True
) -> float:
    """Top-1 accuracy of :func:`zero_shot_predict` against integer ``labels`` in ``[0, C)``."""
    preds = zero_shot_predict(features, class_embeddings, normalize=normalize)
    y = check_labels(labels, "labels", len(preds)).cpu().numpy()
    num_classes = len(check_features(class_embeddings, "class_embeddings"))
    if int(y.max()) >= num_classes:
        raise ContrastkitError(
            f"labels contain class {int(y.max())} but class_embeddings has only {num_classes} "
            "rows; give one embedding per class."
        )
    return float((preds == y).mean())


def class_prompt_embeddings(
    encode: Callable[[list[str]], Any],
    class_names: Sequence[str],
    templates: Sequence[str | Callable[[str], str]],
) -> np.ndarray:
    """CLIP prompt ensembling (Radford et al. 2021, §3.1.4): one ``[C, D]`` row per class.

    For each class, ``encode`` embeds every template filled with the class name (a string
    template has its ``"{}"`` replaced, a callable is called with the name); the L2-normalised
    embeddings are averaged and the mean is renormalised. ``encode`` is called once per class
    with the list of its prompts and must return ``[len(templates), D]`` (torch or numpy).
    """
    if not callable(encode):
        raise ContrastkitError(
            f"encode must be a function from texts to embeddings, got {encode!r}."
        )
    if isinstance(class_names, str) or not isinstance(class_names, Sequence) or not class_names:
        raise ContrastkitError(
            f"class_names must be a non-empty list of class names, got {class_names!r}."
        )
    if not all(isinstance(n, str) and n.strip() for n in class_names):
        raise ContrastkitError("Every class name must be a non-empty string; fix class_names.")
    dupes = sorted({n for n in class_names if list(class_names).count(n) > 1})
    if dupes:
        raise ContrastkitError(
            f"class_names repeats {dupes[0]!r}; give each class once (merge or rename duplicates)."
        )
    if isinstance(templates, str) or not isinstance(templates, Sequence) or not templates:
        raise ContrastkitError(
            f"templates must be a non-empty list such as ['a photo of a {{}}.'], got {templates!r}."
        )
    for t in templates:
        if not (callable(t) or (isinstance(t, str) and "{}" in t)):
            raise ContrastkitError(
                f"Template {t!r} has no '{{}}' for the class name; write it like 'a photo of a "
                "{}.' or pass a function of the name."
            )
    rows = []
    dim = None
    for name in class_names:
        prompts = [t(name) if callable(t) else t.replace("{}", name) for t in templates]
        emb = check_features(encode(prompts), f"encode(prompts of {name!r})")
        if len(emb) != len(prompts) or (dim is not None and emb.shape[1] != dim):
            raise ContrastkitError(
                f"encode returned shape {tuple(emb.shape)} for {len(prompts)} prompts of "
                f"{name!r}; it must return one embedding row per text, of one dimension."
            )
        dim = emb.shape[1]
        mean = F.normalize(emb, dim=1).mean(dim=0)
        rows.append(F.normalize(mean, dim=0).cpu())
    return torch.stack(rows).numpy()
