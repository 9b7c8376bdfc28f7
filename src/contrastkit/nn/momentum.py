"""A momentum (exponential-moving-average) copy of an encoder: MoCo's key encoder (He et al. 2020,
eq. 2), with BYOL's cosine schedule of the momentum as an option (Grill et al. 2020, §3.2)."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError

SCHEDULES = ("constant", "cosine")


def momentum_at(base: float, progress: float, schedule: str = "constant") -> float:
    """The EMA momentum after ``progress ∈ [0, 1]`` of training: ``base`` throughout
    (``"constant"``, MoCo), or ``1 − (1 − base)·(cos(π·progress) + 1)/2`` (``"cosine"``, BYOL),
    which rises from ``base`` to 1."""
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return 1 - (1 - base) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1) / 2
    raise ContrastkitError(f"Unknown momentum schedule {schedule!r}; use one of {SCHEDULES}.")


class MomentumEncoder(nn.Module):
    """A frozen copy of ``online`` that follows it by ``θ_k ← m·θ_k + (1 − m)·θ_q``.

    Args:
        online: the encoder to follow (e.g. ``Sequential(backbone, head)``); copied once.
        base: the momentum ``m`` (MoCo: 0.999 on ImageNet, 0.99 on small data).
        schedule: ``"constant"`` or ``"cosine"`` (see :func:`momentum_at`).
        bn_groups: encode the keys in this many groups of a random permutation of the batch, so
            a key's BatchNorm statistics come from other samples than its query's — shuffling
            BN (MoCo §3.3) on one device; the keys are returned in the input order.
    """

    def __init__(
        self, online: nn.Module, base: float = 0.99, schedule: str = "constant", bn_groups: int = 1
    ) -> None:
        super().__init__()
        if not 0 <= base <= 1:
            raise ContrastkitError(f"model.momentum must lie in [0, 1], got {base!r}.")
        if schedule not in SCHEDULES:
            raise ContrastkitError(
                f"Unknown momentum schedule {schedule!r}; use one of {SCHEDULES}."
            )
        if isinstance(bn_groups, bool) or not isinstance(bn_groups, int) or bn_groups < 1:
            raise ContrastkitError(
                f"model.key_bn_groups must be a positive integer, got {bn_groups!r}."
            )
        self.encoder = copy.deepcopy(online)
        self.encoder.requires_grad_(False)
        self.base, self.schedule, self.bn_groups = base, schedule, bn_groups

    @torch.no_grad()
    def update(self, online: nn.Module, progress: float = 0.0) -> float:
        """One EMA step towards ``online``'s current parameters; returns the momentum used."""
        m = momentum_at(self.base, progress, self.schedule)
        target = list(self.encoder.parameters())
        source = list(online.parameters())
        if len(target) != len(source):
            raise ContrastkitError("The momentum encoder no longer matches its online encoder.")
        torch._foreach_lerp_(target, [p.detach() for p in source], 1 - m)
        return m

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if self.bn_groups == 1 or len(x) < 2 * self.bn_groups:
            return self.encoder(x)
        order = torch.randperm(len(x), device=x.device)
        keys = torch.cat([self.encoder(part) for part in x[order].chunk(self.bn_groups)])
        return keys[torch.argsort(order)]
