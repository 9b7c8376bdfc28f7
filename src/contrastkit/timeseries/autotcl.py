"""AutoTCL's parametric augmentation (Zheng et al. 2024, "Parametric Augmentation for Time Series
Contrastive Learning", ICLR; code ``AutoTCL_CoST.py``).

An instance is factorised into an informative part ``h(x) ⊙ x`` and the rest; the view
``v = g(x) ⊙ h(x) ⊙ x`` keeps the informative part and varies the rest through an invertible
(non-zero, element-wise) transform ``g``. Both come from one shared TS2Vec-style encoder with two
sigmoid heads; ``h`` is sampled with a hard-concrete relaxation and a straight-through binary
mask (code ``_sample_graph``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.timeseries.encoder import TSEncoder
from contrastkit.timeseries.views import WHOLE, Shard

__all__ = ["AugmentedView", "AutoTCLAugmenter", "sample_mask"]


def sample_mask(
    h_logit: Tensor,
    *,
    training: bool = True,
    gumbel_bias: float = 0.001,
    gamma_zeta: float = 0.05,
    hard: bool = True,
    generator: torch.Generator | None = None,
    shard: Shard = WHOLE,
) -> Tensor:
    """AutoTCL's mask sampler (code ``_sample_graph`` + hard mask).

    Training: ``u ~ U(β, 1 − β)``, ``m = σ(log u − log(1 − u) + h_logit)``; eval: ``m = σ(h_logit)``.
    Stretch ``m̃ = clip(m·(1 + γ) − γ, 0, 1)`` with ``γ = gamma_zeta``; ``hard``: forward
    ``1[m̃ > 0.5]`` (½ at exactly 0.5, as ``(sign + 1)/2``) with the gradient of ``m̃``.
    As in the code, ``h_logit`` is the sigmoid head's output, used as a logit. ``u`` is drawn
    for this process's rows ``shard`` of a batch split over processes.
    """
    if not 0.0 <= gumbel_bias < 0.5:
        raise ContrastkitError(f"gumbel_bias must lie in [0, 0.5), got {gumbel_bias!r}.")
    if training:
        device = generator.device if generator is not None else h_logit.device
        shape = (shard.rows(h_logit.shape[0]), *h_logit.shape[1:])
        r = shard.take(torch.rand(shape, generator=generator, device=device)).to(h_logit)
        u = (1 - gumbel_bias) + (2 * gumbel_bias - 1) * r  # (β, 1 − β]
        m = torch.sigmoid(torch.log(u) - torch.log1p(-u) + h_logit)
    else:
        m = torch.sigmoid(h_logit)
    m = (m * (1 + gamma_zeta) - gamma_zeta).clamp(0.0, 1.0)
    if hard:
        binary = (torch.sign(m - 0.5) + 1) / 2
        m = (binary - m).detach() + m
    return m


@dataclass(frozen=True)
class AugmentedView:
    """The view ``v = g ⊙ h ⊙ x`` with its parts: ``h_logit`` (mask head output), ``mask``
    (sampled ``h``) and ``transform`` (``g``), each ``[B, T, channels]``."""

    view: Tensor
    h_logit: Tensor
    mask: Tensor
    transform: Tensor


class AutoTCLAugmenter(nn.Module):
    """Shared encoder ``a(x) [B, T, aug_dim]`` → ``h_logit = σ(Linear(a))``, ``g = σ(Linear(a))``.

    ``channels`` heads (default: one per input variable, as the official script sets
    ``agu_channel`` to the number of variables); ``channels = 1`` shares them across variables.
    ``dropout`` acts on the shared encoder's output, as in TS2Vec's encoder.
    """

    def __init__(
        self,
        input_dims: int,
        aug_dim: int = 16,
        hidden_dims: int = 64,
        depth: int = 3,
        *,
        channels: int | None = None,
        mask_mode: str = "binomial",
        gumbel_bias: float = 0.001,
        gamma_zeta: float = 0.05,
        hard_mask: bool = True,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        channels = input_dims if channels is None else channels
        if channels not in (1, input_dims):
            raise ContrastkitError(
                f"channels must be 1 or the number of input variables ({input_dims}), got "
                f"{channels!r}."
            )
        self.shared = TSEncoder(input_dims, aug_dim, hidden_dims, depth, mask_mode, dropout=dropout)
        self.factor = nn.Sequential(nn.Linear(aug_dim, channels), nn.Sigmoid())
        self.transform = nn.Sequential(nn.Linear(aug_dim, channels), nn.Sigmoid())
        self.gumbel_bias = gumbel_bias
        self.gamma_zeta = gamma_zeta
        self.hard_mask = hard_mask

    def forward(
        self,
        x: Tensor,
        *,
        sample: bool = True,
        generator: torch.Generator | None = None,
        shard: Shard = WHOLE,
    ) -> AugmentedView:
        """The view of ``x [B, T, F]`` (finite values: AutoTCL zero-fills NaN beforehand)."""
        a = self.shared(x, generator=generator, shard=shard)
        h_logit = self.factor(a)
        g = self.transform(a)
        mask = sample_mask(
            h_logit,
            training=sample,
            gumbel_bias=self.gumbel_bias,
            gamma_zeta=self.gamma_zeta,
            hard=self.hard_mask,
            generator=generator,
            shard=shard,
        )
        return AugmentedView(g * mask * x, h_logit, mask, g)
