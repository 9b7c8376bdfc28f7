"""ConR: a contrastive regulariser for deep imbalanced regression (Keramati, Meng & Evans 2024,
"ConR: Contrastive Regularizer for Deep Imbalanced Regression", ICLR; code
``BorealisAI/ConR``, ``agedb-dir/loss.py::ConR``).

For the ``N`` rows of two augmented views, ``q = normalize(features)``, ``S = q qᵀ/τ``,
``L_ij = |y_i − y_j|`` and ``P_ij = |ŷ_i − ŷ_j|`` (detached predictions):

* positives ``Pos_ij = [L_ij ≤ ω] ∧ [i ≠ j]``;
* negatives ``Neg_ij = [L_ij > ω] ∧ [P_ij ≤ ω]`` — label-dissimilar samples the model currently
  predicts alike (eq. 2–3);
* pushing weight ``W_ij = w_i · exp(e · L_ij)`` (code; ``pushing="linear"``: ``e · w_i · L_ij``,
  the NYUD2 variant), growing with label distance;
* ``ℓ_i = (1/|Pos_i|) Σ_{j∈Pos_i} (log Den_i − S_ij)`` for anchors with a negative, else 0;
* ``L_ConR = (1/N) Σ_i w_i ℓ_i`` (eq. 4), added to the regression loss as ``L + β L_ConR``.

Denominators:

* ``"clean"`` (paper): ``Den_i = Σ_{Pos_i} e^{S_ij} + Σ_{Neg_i} W_ij e^{S_ij}`` — exactly the
  InfoNCE engine with positives from :class:`TargetPairs` and per-pair negative weights
  ``W_ij·[Neg_ij]``.
* ``"reference"`` (default, the released code): the code sums ``exp(S_ij · Pos_ij)`` over every
  column, so every non-positive column (self and negatives included) adds ``exp(0) = 1``:
  ``Den_i = Σ_{Pos_i} e^{S_ij} + (N − |Pos_i|) + Σ_{Neg_i} W_ij e^{S_ij}``. The constant is not
  an option of the engine, so this path is written out here (one ``logsumexp``).

An anchor with negatives but no positive makes the reference code divide 0 by 0; here it adds 0.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional import info_nce
from contrastkit.regression.pairs import TargetPairs, check_targets

__all__ = ["ConRLoss", "conr_loss"]

Denominator = Literal["reference", "clean"]


def conr_loss(
    features: Tensor,
    targets: Tensor,
    predictions: Tensor,
    weights: Tensor | None = None,
    *,
    window: float = 1.0,
    temperature: float = 0.07,
    push: float = 0.01,
    pushing: Literal["exp", "linear"] = "exp",
    denominator: Denominator = "reference",
    reduction: Literal["mean", "none"] = "mean",
) -> Tensor:
    """ConR of ``features [N, D]`` (all views concatenated) with ``targets [N]`` and the model's
    ``predictions [N]`` (detached inside); ``weights [N]`` are per-sample re-weights ``w_i``
    (default 1). ``reduction="none"`` gives ``w_i ℓ_i`` per anchor (their mean is the loss).
    Defaults are the AgeDB-DIR ones (ω = 1, τ = 0.07, e = 0.01; the paper's β = 4 is the caller's).
    """
    if features.ndim != 2 or not features.is_floating_point():
        raise ContrastkitError(
            f"ConR features must be a float tensor [N, D], got shape {tuple(features.shape)}."
        )
    n = len(features)
    y = check_targets(targets, "targets", n).to(features.device)
    y_hat = check_targets(predictions.detach(), "predictions", n).to(features.device)
    w = (
        torch.ones(n, device=features.device)
        if weights is None
        else check_targets(weights, "weights", n).to(features.device)
    )
    if bool((w < 0).any()):
        raise ContrastkitError("ConR sample weights must be non-negative.")
    if not (isinstance(window, int | float) and window >= 0):
        raise ContrastkitError(f"window ω must be a number ≥ 0, got {window!r}.")
    if denominator not in ("reference", "clean") or pushing not in ("exp", "linear"):
        raise ContrastkitError(
            "denominator must be 'reference' or 'clean' and pushing 'exp' or 'linear'; got "
            f"{denominator!r} and {pushing!r}."
        )
    label_distance = (y[:, None] - y[None, :]).abs()
    eye = torch.eye(n, dtype=torch.bool, device=features.device)
    positive = (label_distance <= window) & ~eye
    negative = (label_distance > window) & ((y_hat[:, None] - y_hat[None, :]).abs() <= window)
    if pushing == "exp":
        push_weight = w[:, None] * torch.exp(push * label_distance)
    else:
        push_weight = push * w[:, None] * label_distance
    has_positive = positive.any(1)
    active = has_positive & negative.any(1)
    if denominator == "clean":
        pairs = TargetPairs.from_targets(y, window)
        # rows without a positive are dropped by the engine; weight 1 keeps their (unused)
        # denominators finite so no NaN reaches the gradient
        weight = torch.where(negative | ~has_positive[:, None], push_weight, 0.0)
        per_anchor = info_nce(
            features,
            pairs,
            temperature=temperature,
            negative_weight=weight.to(features.dtype),
            reduction="none",
            backend="dense",
            distributed=False,
        )
    else:
        q = F.normalize(features.to(torch.promote_types(features.dtype, torch.float32)), dim=1)
        logits = q @ q.T / temperature
        n_non_positive = (n - positive.sum(1)).to(logits.dtype)
        log_push = torch.log(push_weight.clamp_min(torch.finfo(logits.dtype).tiny))
        terms = torch.cat(
            [
                logits.masked_fill(~positive, float("-inf")),
                (logits + log_push).masked_fill(~negative, float("-inf")),
                torch.log(n_non_positive)[:, None],
            ],
            dim=1,
        )
        mean_positive = logits.masked_fill(~positive, 0.0).sum(1) / positive.sum(1).clamp(min=1)
        per_anchor = torch.logsumexp(terms, dim=1) - mean_positive
    per_anchor = torch.where(active, w * per_anchor.nan_to_num(0.0), 0.0)
    if reduction == "none":
        return per_anchor
    if reduction != "mean":
        raise ContrastkitError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
    return per_anchor.mean()


class ConRLoss(nn.Module):
    """``β · L_ConR`` as a module (see :func:`conr_loss`); call with
    ``(features, targets, predictions, weights=None)``."""

    def __init__(
        self,
        beta: float = 4.0,
        *,
        window: float = 1.0,
        temperature: float = 0.07,
        push: float = 0.01,
        pushing: Literal["exp", "linear"] = "exp",
        denominator: Denominator = "reference",
    ) -> None:
        super().__init__()
        if not (isinstance(beta, int | float) and math.isfinite(beta) and beta >= 0):
            raise ContrastkitError(f"beta must be a finite number ≥ 0, got {beta!r}.")
        self.beta = beta
        self.options = dict(
            window=window,
            temperature=temperature,
            push=push,
            pushing=pushing,
            denominator=denominator,
        )

    def forward(
        self,
        features: Tensor,
        targets: Tensor,
        predictions: Tensor,
        weights: Tensor | None = None,
    ) -> Tensor:
        return self.beta * conr_loss(features, targets, predictions, weights, **self.options)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, " + ", ".join(f"{k}={v}" for k, v in self.options.items())
