"""Hardness-awareness of InfoNCE (Wang & Liu 2021, "Understanding the Behaviour of Contrastive
Loss", §3.2; instance-dense.md §1 b): the distribution of the relative penalty
``r_i(s_ij) = exp(s_ij/τ) / Σ_{k≠i} exp(s_ik/τ)`` over each anchor's negatives, summarised by its
entropy and the mass of its top-k negatives, and how both move with the temperature τ."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from contrastkit.diagnostics._inputs import positive_int, positive_number
from contrastkit.errors import ContrastkitError
from contrastkit.functional.infonce import negative_hardness
from contrastkit.functional.pairs import Pairs

__all__ = ["DEFAULT_TEMPERATURES", "hardness_statistics", "temperature_sweep"]

#: The sweep of Wang & Liu (2021, Table 1 and Fig. 4) widened at both ends.
DEFAULT_TEMPERATURES = (0.03, 0.05, 0.07, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


@torch.no_grad()
def hardness_statistics(
    anchors: Tensor,
    pairs: Pairs,
    candidates: Tensor | None = None,
    *,
    temperature: float,
    top_k: int = 1,
) -> dict[str, Tensor]:
    """Per-anchor summaries ``[N]`` of the relative penalty over negatives
    (:func:`contrastkit.functional.infonce.negative_hardness`, cosine scores):

    - ``entropy`` (nats) of ``r_i``; ``normalized_entropy`` = entropy / log(number of negatives),
      1 when every negative weighs the same (τ → ∞), → 0 when one negative takes it all (τ → 0);
    - ``top_k_mass``: the summed penalty of the ``top_k`` hardest negatives.
    """
    temperature = positive_number(temperature, "temperature")
    top_k = positive_int(top_k, "top_k")
    r = negative_hardness(anchors.detach(), pairs, candidates, temperature=temperature).double()
    positive, is_self = pairs.masks(n_columns=r.shape[1])
    n_negatives = (~positive & ~is_self).sum(dim=1).to(r.device)
    if bool((n_negatives == 0).any()):
        raise ContrastkitError("every anchor needs at least one negative to measure hardness.")
    entropy = torch.special.entr(r).sum(dim=1)  # Σ −r log r, with 0 log 0 = 0
    log_n = n_negatives.double().log()
    normalized = torch.where(
        n_negatives > 1, entropy / log_n.clamp(min=1e-300), torch.ones_like(entropy)
    )
    return {
        "entropy": entropy,
        "normalized_entropy": normalized,
        "top_k_mass": r.topk(min(top_k, r.shape[1]), dim=1).values.sum(dim=1),
    }


def temperature_sweep(
    anchors: Tensor,
    pairs: Pairs,
    candidates: Tensor | None = None,
    *,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    top_k: int = 1,
) -> dict[str, list[float]]:
    """:func:`hardness_statistics` averaged over anchors, for each temperature: lists
    ``temperature``, ``entropy``, ``normalized_entropy``, ``top_k_mass`` (Wang & Liu 2021, Fig. 3:
    the entropy of the penalty rises with τ)."""
    if len(temperatures) == 0:
        raise ContrastkitError("temperature_sweep needs at least one temperature.")
    rows = [
        hardness_statistics(anchors, pairs, candidates, temperature=tau, top_k=top_k)
        for tau in temperatures
    ]
    out: dict[str, list[float]] = {"temperature": [float(t) for t in temperatures]}
    for key in ("entropy", "normalized_entropy", "top_k_mass"):
        out[key] = [float(row[key].mean()) for row in rows]
    return out
