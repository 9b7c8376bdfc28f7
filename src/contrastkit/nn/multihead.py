"""AMCL's multi-head projector and adaptive-temperature networks (Wang et al., ECCV 2024, §3;
official ``LeiWangR/cl``: ``multi_head_projector.py``, ``adaptive_temperature.py``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.nn.heads import ProjectionHead

__all__ = ["MultiHeadProjection", "TemperatureNet"]


def _positive_int(owner: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ContrastkitError(f"{owner} {name} must be a positive integer, got {value!r}.")
    return value


class MultiHeadProjection(nn.Module):
    """``C`` independent projection heads ``h^c``: ``[N, in_dim]`` → ``[N, C, out_dim]``.

    Each head is a :class:`~contrastkit.nn.heads.ProjectionHead`; the defaults are the official
    CIFAR heads ``Linear(in→512) → ReLU → Linear(512→128)`` (no BatchNorm).
    """

    def __init__(
        self,
        in_dim: int,
        heads: int = 3,
        hidden_dim: int = 512,
        out_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        _positive_int("MultiHeadProjection", "heads", heads)
        self.heads = nn.ModuleList(
            ProjectionHead(in_dim, hidden_dim, out_dim, num_layers, batch_norm)
            for _ in range(heads)
        )
        self.in_dim, self.out_dim, self.n_heads = in_dim, out_dim, heads

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([head(x) for head in self.heads], dim=1)


class TemperatureNet(nn.Module):
    """AMCL's adaptive pair temperature: ``τ = τ_min + (τ_max − τ_min)·sigmoid(φ_c([z; z′]))``
    with ``φ_c = Linear(2d′→hidden) → ReLU → Linear(hidden→1)``.

    ``forward(z [N, C, d′], z′ [N, C, d′])`` → ``τ [N, C]``, head ``c`` through ``φ_c`` (one per
    head, as in the official code) or, with ``shared=True``, through one ``φ`` for all heads (the
    paper and README's "shared MLP layer"). The inputs are the raw head outputs, as in the code.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 3,
        hidden_dim: int = 128,
        tau_min: float = 1e-5,
        tau_max: float = 2.0,
        shared: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("heads", heads), ("hidden_dim", hidden_dim)):
            _positive_int("TemperatureNet", name, value)
        if not 0 < tau_min < tau_max < float("inf"):
            raise ContrastkitError(
                f"TemperatureNet needs 0 < tau_min < tau_max, got {tau_min!r} and {tau_max!r}."
            )
        self.dim, self.n_heads, self.shared = dim, heads, shared
        self.tau_min, self.tau_max = float(tau_min), float(tau_max)
        self.phi = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))
            for _ in range(1 if shared else heads)
        )

    def forward(self, z: Tensor, z_other: Tensor) -> Tensor:
        expected = (self.n_heads, self.dim)
        if z.ndim != 3 or z.shape != z_other.shape or tuple(z.shape[1:]) != expected:
            raise ContrastkitError(
                f"TemperatureNet expects two tensors [N, {self.n_heads}, {self.dim}], got "
                f"{tuple(z.shape)} and {tuple(z_other.shape)}."
            )
        pair = torch.cat([z, z_other], dim=-1)  # [N, C, 2d′]
        if self.shared:
            logits = self.phi[0](pair)[..., 0]
        else:
            logits = torch.stack([phi(pair[:, c]) for c, phi in enumerate(self.phi)], dim=1)[..., 0]
        return self.tau_min + (self.tau_max - self.tau_min) * torch.sigmoid(logits)

    def extra_repr(self) -> str:
        return f"tau_min={self.tau_min}, tau_max={self.tau_max}, shared={self.shared}"
