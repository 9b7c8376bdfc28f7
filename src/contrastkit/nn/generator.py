"""The Hallucinator's feature-space positive generator (Wu, Hobbs & Hovakimyan, ICCV 2023, §3)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit.functional.mixing import extrapolate


class Hallucinator(nn.Module):
    """``ĥ = G([q ; e])`` with the asymmetric extrapolation ``e = (1 + λ)·q − λ·k`` (eq. 2) and
    the non-linear smoothing ``G``: Linear(2D→2D)–ReLU–Linear(2D→2D)–ReLU–Linear(2D→D) (eq. 3;
    the official code's 256/256/128 for D = 128). ``G`` is trained by the contrastive loss only.

    ``forward(q, k)`` draws one λ ~ U(0, ``max_lambda``) per call (one per iteration, as the code
    does) unless ``lam`` is given.
    """

    def __init__(self, dim: int, max_lambda: float = 0.1) -> None:
        super().__init__()
        self.max_lambda = max_lambda
        self.generate = nn.Sequential(
            nn.Linear(2 * dim, 2 * dim),
            nn.ReLU(inplace=True),
            nn.Linear(2 * dim, 2 * dim),
            nn.ReLU(inplace=True),
            nn.Linear(2 * dim, dim),
        )

    def forward(self, q: Tensor, k: Tensor, lam: float | None = None) -> Tensor:
        if lam is None:
            lam = self.max_lambda * float(torch.rand(()))
        return self.generate(torch.cat([q, extrapolate(q, k, lam)], dim=1))
