"""Projection heads g(·) mapping encoder features to the space where the contrastive loss is taken."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from contrastkit.errors import ContrastkitError

__all__ = ["ProjectionHead"]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ContrastkitError(f"ProjectionHead {name} must be a positive integer, got {value!r}.")
    return value


class ProjectionHead(nn.Sequential):
    """SimCLR's MLP projection head (Chen et al. 2020, §2.1): ``[B, in_dim]`` → ``[B, out_dim]``.

    ``num_layers`` counts the Linear layers: every layer but the last is
    ``Linear(·, hidden_dim) → BatchNorm1d → ReLU`` (the Linear has no bias when BatchNorm follows
    it), and the last is ``Linear(·, out_dim)`` with bias. ``num_layers=1`` is a linear
    projection; the paper's head is ``num_layers=2``. BatchNorm in training mode needs batches of
    at least 2.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 512,
        out_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = True,
    ) -> None:
        for name, value in (
            ("in_dim", in_dim),
            ("hidden_dim", hidden_dim),
            ("out_dim", out_dim),
            ("num_layers", num_layers),
        ):
            _positive_int(name, value)
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim))
        super().__init__(*layers)
        self.in_dim = in_dim
        self.hidden_dim = hidden_dim
        self.out_dim = out_dim
        self.num_layers = num_layers

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ContrastkitError(
                f"ProjectionHead expects features shaped [B, {self.in_dim}], got {tuple(x.shape)}."
            )
        return super().forward(x)
