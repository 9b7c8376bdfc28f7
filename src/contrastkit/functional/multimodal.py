"""Two-tower contrastive losses as pure functions over the InfoNCE engine.

* CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
  Supervision", Fig. 3): rows ``a[i] ↔ b[i]`` are matched; with a logit scale ``s = 1/τ``,
  ``L = w·CE(s·â b̂ᵀ) + (1 − w)·CE(s·b̂ âᵀ)``, targets the diagonal, mean over rows.
* ConVIRT (Zhang et al. 2022, "Contrastive Learning of Medical Visual Representations from Paired
  Images and Text", §3; spec labels-multimodal-other.md §6b) is the same loss with ``s = 1/τ``
  fixed and ``w = λ`` on the image→text direction.
* The contrastive-gap terms of Fahim, Murphy & Fyshe (2024, "It's Not a Modality Gap"; spec §5b):
  in-modal uniformity, cross-modal uniformity and alignment, added to CLIP to close the gap.

Each CLIP direction is one call of :func:`~contrastkit.functional.infonce.info_nce` with the
scale folded into the anchors (``s·â`` against ``b̂`` at temperature 1), so a learnable scale
receives its gradient and the engine's tiled and distributed paths serve CLIP unchanged: under
``torch.distributed`` each rank's anchors meet the candidates of every rank, gathered with
gradient (open_clip's ``local_loss + gather_with_grad``).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from contrastkit.errors import ContrastkitError
from contrastkit.functional.distributed import world
from contrastkit.functional.geometry import cross_uniformity, uniformity
from contrastkit.functional.infonce import info_nce
from contrastkit.functional.pairs import Pairs


def clip_directions(
    a: Tensor,
    b: Tensor,
    logit_scale: Tensor | float,
    *,
    directions: tuple[str, ...] = ("a_to_b", "b_to_a"),
    normalize: bool = True,
    distributed: bool | None = None,
) -> dict[str, Tensor]:
    """The two directions of the CLIP loss separately: ``"a_to_b"`` = ``CE(s·â b̂ᵀ, diag)`` and
    ``"b_to_a"`` = ``CE(s·b̂ âᵀ, diag)``, each a mean over this rank's rows; only the requested
    ``directions`` are computed. Arguments as in :func:`clip_loss`."""
    _check_pair(a, b, "clip_loss")
    scale = _check_scale(logit_scale)
    unknown = set(directions) - {"a_to_b", "b_to_a"}
    if unknown:
        raise ContrastkitError(
            f"Unknown CLIP direction(s) {sorted(unknown)}; use 'a_to_b' and/or 'b_to_a'."
        )
    if normalize:
        a, b = F.normalize(a, dim=1, eps=1e-12), F.normalize(b, dim=1, eps=1e-12)
    pairs = Pairs.cross(len(a), device=a.device)
    ends = {"a_to_b": (a, b), "b_to_a": (b, a)}
    return {
        name: info_nce(
            scale * ends[name][0],
            pairs,
            ends[name][1],
            temperature=1.0,
            normalize=False,
            distributed=distributed,
        )
        for name in directions
    }


def clip_loss(
    a: Tensor,
    b: Tensor,
    logit_scale: Tensor | float,
    *,
    weight_ab: float = 0.5,
    normalize: bool = True,
    distributed: bool | None = None,
) -> Tensor:
    """CLIP's symmetric InfoNCE (Radford et al. 2021, Fig. 3; spec §5b):
    ``weight_ab·CE(s·â b̂ᵀ) + (1 − weight_ab)·CE(s·b̂ âᵀ)`` with targets ``arange(B)``.

    ConVIRT (spec §6b) is ``clip_loss(v, u, 1/τ, weight_ab=λ)``.

    Args:
        a, b: ``[B, D]`` embeddings of the two towers; row ``i`` of each is one matched pair.
        logit_scale: ``s = 1/τ > 0``: a number, or a 0-d tensor (e.g. ``exp(θ)`` of a learnable
            θ, which then receives its gradient).
        weight_ab: weight of the ``a → b`` direction in ``[0, 1]``; a direction of weight 0 is
            not computed.
        normalize: L2-normalise ``a`` and ``b`` first (cosine logits); ``False`` uses dot
            products of the inputs as given.
        distributed: contrast this rank's rows with the other tower's rows of every rank
            (gathered with gradient); ``None``: whenever a process group of more than one rank
            is initialised. Each rank returns the mean over its own rows.
    """
    if isinstance(weight_ab, bool) or not isinstance(weight_ab, int | float):
        raise ContrastkitError(f"weight_ab must be a number in [0, 1], got {weight_ab!r}.")
    if not 0 <= weight_ab <= 1:
        raise ContrastkitError(f"weight_ab must lie in [0, 1], got {weight_ab!r}.")
    weights = {"a_to_b": float(weight_ab), "b_to_a": 1.0 - float(weight_ab)}
    terms = clip_directions(
        a,
        b,
        logit_scale,
        directions=tuple(name for name, w in weights.items() if w > 0),
        normalize=normalize,
        distributed=distributed,
    )
    return sum(weights[name] * value for name, value in terms.items())


def gap_terms(a: Tensor, b: Tensor, *, t: float = 2.0) -> dict[str, Tensor]:
    """The uniformity and alignment terms that Fahim et al. (2024, spec §5b) add to CLIP, on
    L2-normalised ``a, b [B, D]`` (rows matched), all differentiable:

    * ``"uniformity"``: ``½ U(â) + ½ U(b̂)`` with ``U(X) = log mean_{i<j} exp(−t‖X_i − X_j‖²)``;
    * ``"cross_uniformity"``: ``log mean_{i≠j} exp(−t‖â_i − b̂_j‖²)`` (matched pairs left out);
    * ``"alignment"``: ``mean_i ‖â_i − b̂_i‖²``.

    ``L_CUA = L_CLIP + uniformity + alignment``; ``L_CUAXU`` adds ``cross_uniformity`` too. On
    ``torch.distributed`` they use this rank's rows only.
    """
    _check_pair(a, b, "gap_terms", min_rows=2)
    a, b = F.normalize(a, dim=1, eps=1e-12), F.normalize(b, dim=1, eps=1e-12)
    return {
        "uniformity": (uniformity(a, t) + uniformity(b, t)) / 2,
        "cross_uniformity": cross_uniformity(a, b, t, exclude_matched=True),
        # the squared norm directly (not geometry.alignment's norm**α), smooth where a_i = b_i
        "alignment": (a - b).pow(2).sum(1).mean(),
    }


def _check_pair(a: Tensor, b: Tensor, what: str, min_rows: int = 1) -> None:
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, Tensor) or x.ndim != 2 or not x.dtype.is_floating_point:
            raise ContrastkitError(
                f"{what}: {name} must be a 2-D float tensor [B, D] of one tower's embeddings."
            )
    if a.shape != b.shape or len(a) < min_rows:
        raise ContrastkitError(
            f"{what} needs matched rows of one shape [B, D] with B ≥ {min_rows}, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}."
        )


def _check_scale(scale: Tensor | float) -> Tensor | float:
    """A positive finite number, or a one-element float tensor (its value is not read, to avoid
    a host sync)."""
    if isinstance(scale, Tensor):
        if scale.numel() != 1 or not scale.dtype.is_floating_point:
            raise ContrastkitError(
                f"logit_scale must be a number or a one-element float tensor, got "
                f"{scale.dtype} of shape {tuple(scale.shape)}."
            )
        return scale.reshape(())
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise ContrastkitError(f"logit_scale must be a number 1/τ > 0, got {scale!r}.")
    if not 0 < scale < math.inf:
        raise ContrastkitError(f"logit_scale must be a finite number > 0, got {scale!r}.")
    return float(scale)


def candidate_count(n_local: int, distributed: bool | None) -> int:
    """How many candidates each anchor meets: ``n_local`` rows of every rank when distributed
    (resolved as in :func:`~contrastkit.functional.infonce.info_nce`), else ``n_local``."""
    size = world()[1]
    if distributed is None:
        distributed = size > 1
    return n_local * size if distributed else n_local
