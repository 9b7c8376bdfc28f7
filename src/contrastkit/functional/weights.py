"""Per-anchor weights for the InfoNCE engine's positive term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.errors import ContrastkitError


def vmf_positive_weights(
    z1: Tensor, z2: Tensor, sigma: float = 0.5, *, detach: bool = False
) -> Tensor:
    """DCLW's von Mises–Fisher weights (Yeh et al. 2022, §3.2):
    ``w_i = 2 − B · softmax_i(cos(z1_i, z2_i) / σ)``; mean exactly 1, harder positives weigh more.

    ``detach=True`` treats the weights as constants (lightly does; the paper is silent).
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ContrastkitError(
            f"DCLW weights need two views of the same shape [B, D], got {tuple(z1.shape)} and {tuple(z2.shape)}."
        )
    if not sigma > 0:
        raise ContrastkitError(f"sigma must be positive, got {sigma!r}.")
    similarity = (F.normalize(z1, dim=1, eps=1e-12) * F.normalize(z2, dim=1, eps=1e-12)).sum(1)
    if detach:
        similarity = similarity.detach()
    return 2 - len(z1) * torch.softmax(similarity / sigma, dim=0)
