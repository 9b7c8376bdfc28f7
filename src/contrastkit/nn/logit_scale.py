"""CLIP's learnable logit scale (Radford et al. 2021, §2.5): the temperature is optimised as a
log-parameterised multiplicative scalar, initialised to τ0 = 0.07 and clipped so that the logits
are never scaled by more than 100; spec labels-multimodal-other.md §5b."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError


class LogitScale(nn.Module):
    """``s = exp(θ)`` with ``θ = log(1/τ0)`` at the start, kept in ``[0, log max_scale]``.

    θ is a parameter when ``learnable``, else a buffer (a fixed temperature, still saved with the
    model). The clamp is not part of the forward pass: the training loop calls
    ``after_optimizer_step()`` on every submodule that has it after each optimiser step (as the
    reference code clamps after ``optimizer.step()``); call :meth:`clamp_` yourself in a loop of
    your own.

    Args:
        temperature: the initial τ0 (CLIP: 0.07); ``1/max_scale ≤ τ0 ≤ 1``.
        learnable: optimise θ.
        max_scale: the largest scale ``s`` (CLIP: 100).
    """

    def __init__(
        self, temperature: float = 0.07, learnable: bool = True, max_scale: float = 100.0
    ) -> None:
        super().__init__()
        for name, value in (("temperature", temperature), ("max_scale", max_scale)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ContrastkitError(f"LogitScale {name} must be a number, got {value!r}.")
        if not 1 <= max_scale < math.inf:
            raise ContrastkitError(
                f"max_scale must be a finite number ≥ 1 (CLIP: 100), got {max_scale!r}."
            )
        if not 1 / max_scale <= temperature <= 1:
            raise ContrastkitError(
                f"temperature {temperature!r} lies outside [1/max_scale, 1] = "
                f"[{1 / max_scale:g}, 1], where the clamp would move it; choose a temperature "
                "in that range or raise max_scale."
            )
        self.max_scale = float(max_scale)
        theta = torch.tensor(math.log(1 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(theta)
        else:
            self.register_buffer("log_scale", theta)

    @property
    def learnable(self) -> bool:
        return isinstance(self.log_scale, nn.Parameter)

    def forward(self) -> Tensor:
        """The scale ``s = exp(θ)`` (0-d, differentiable in θ when learnable)."""
        return self.log_scale.exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp θ into ``[0, log max_scale]`` in place (``1 ≤ s ≤ max_scale``)."""
        self.log_scale.clamp_(0.0, math.log(self.max_scale))

    def after_optimizer_step(self) -> None:
        """Called by the training loop after each optimiser step: clamps θ."""
        self.clamp_()

    def extra_repr(self) -> str:
        return f"learnable={self.learnable}, max_scale={self.max_scale:g}"
