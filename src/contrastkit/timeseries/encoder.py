"""TS2Vec's encoder: input projection → timestamp masking → dilated convolutions.

Yue et al. 2022 (TS2Vec), §3.1 and code ``models/encoder.py``/``models/dilated_conv.py``:
``Linear(F, hidden)`` per time step, a timestamp mask on that latent (binomial p = 0.5 while
training), then ``depth`` residual blocks of two GELU → dilated Conv1d (kernel 3, dilation
``2^i``) at width ``hidden`` and a final block to ``output_dims`` (``depth + 1`` blocks in all,
as the official code builds them), then dropout 0.1. Output: one representation per time step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.timeseries.views import WHOLE, Shard, binomial_mask, continuous_mask

__all__ = ["MASK_MODES", "DilatedConvEncoder", "TSEncoder", "instance_pool"]

MASK_MODES = ("binomial", "continuous", "all_true", "all_false", "mask_last")


class SamePadConv(nn.Module):
    """Conv1d keeping the length: centred ("same") padding, or causal (left) padding."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, causal: bool
    ) -> None:
        super().__init__()
        field = (kernel_size - 1) * dilation + 1
        self.left = field - 1 if causal else field // 2
        self.right = 0 if causal else field - 1 - field // 2
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (self.left, self.right)))


class ConvBlock(nn.Module):
    """``x + conv2(gelu(conv1(gelu(x))))`` with a 1×1 projection on the skip when needed."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation: int,
        final: bool = False,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = SamePadConv(in_channels, out_channels, kernel_size, dilation, causal)
        self.conv2 = SamePadConv(out_channels, out_channels, kernel_size, dilation, causal)
        project = in_channels != out_channels or final
        self.projector = nn.Conv1d(in_channels, out_channels, 1) if project else None

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.projector is None else self.projector(x)
        return self.conv2(F.gelu(self.conv1(F.gelu(x)))) + residual


class DilatedConvEncoder(nn.Sequential):
    """Residual blocks with dilation ``2^i`` over ``[B, C, T]``."""

    def __init__(
        self, in_channels: int, channels: list[int], kernel_size: int = 3, causal: bool = False
    ) -> None:
        super().__init__(
            *[
                ConvBlock(
                    channels[i - 1] if i > 0 else in_channels,
                    channels[i],
                    kernel_size,
                    dilation=2**i,
                    final=i == len(channels) - 1,
                    causal=causal,
                )
                for i in range(len(channels))
            ]
        )


class TSEncoder(nn.Module):
    """TS2Vec's encoder: ``[B, T, F]`` → per-time-step representations ``[B, T, output_dims]``.

    Time steps with any NaN variable are zeroed in the latent (missing data, padding). The mask
    (``mask_mode`` while training, ``"all_true"`` in eval) is drawn from ``generator`` when
    given, for this process's rows ``shard`` of a batch split over processes; ``causal=True``
    makes every step see only its past (left padding).
    """

    def __init__(
        self,
        input_dims: int,
        output_dims: int = 320,
        hidden_dims: int = 64,
        depth: int = 10,
        mask_mode: str = "binomial",
        *,
        kernel_size: int = 3,
        dropout: float = 0.1,
        causal: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("input_dims", input_dims),
            ("output_dims", output_dims),
            ("hidden_dims", hidden_dims),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ContrastkitError(f"{name} must be a positive integer, got {value!r}.")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ContrastkitError(f"depth must be a non-negative integer, got {depth!r}.")
        _check_mask_mode(mask_mode)
        self.input_dims = input_dims
        self.output_dims = output_dims
        self.mask_mode = mask_mode
        self.input_fc = nn.Linear(input_dims, hidden_dims)
        self.feature_extractor = DilatedConvEncoder(
            hidden_dims, [hidden_dims] * depth + [output_dims], kernel_size, causal
        )
        self.repr_dropout = nn.Dropout(p=dropout)

    def forward(
        self,
        x: Tensor,
        mask: str | Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        shard: Shard = WHOLE,
    ) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != self.input_dims:
            raise ContrastkitError(
                f"The encoder expects [batch, time, {self.input_dims}] inputs, got "
                f"{tuple(x.shape)}; pass series with {self.input_dims} variables, time-major."
            )
        observed = ~torch.isnan(x).any(dim=-1)
        h = self.input_fc(x.masked_fill(~observed[..., None], 0.0))
        keep = self.mask(h.shape[0], h.shape[1], mask, generator, h.device, shard) & observed
        h = h.masked_fill(~keep[..., None], 0.0)
        h = self.feature_extractor(h.transpose(1, 2))
        return self.repr_dropout(h).transpose(1, 2)

    def mask(
        self,
        batch: int,
        length: int,
        mask: str | Tensor | None,
        generator: torch.Generator | None,
        device: torch.device,
        shard: Shard = WHOLE,
    ) -> Tensor:
        """The ``[B, T]`` keep-mask for ``mask`` (a mode name or a boolean tensor)."""
        if isinstance(mask, Tensor):
            if mask.shape != (batch, length) or mask.dtype != torch.bool:
                raise ContrastkitError(
                    f"A mask tensor must be boolean of shape ({batch}, {length}), got "
                    f"{mask.dtype} {tuple(mask.shape)}."
                )
            return mask.to(device)
        mode = mask if mask is not None else (self.mask_mode if self.training else "all_true")
        _check_mask_mode(mode)
        where = generator.device if generator is not None else device
        if mode == "binomial":
            out = binomial_mask(batch, length, 0.5, generator=generator, device=where, shard=shard)
        elif mode == "continuous":
            out = continuous_mask(batch, length, generator=generator, device=where, shard=shard)
        else:
            out = torch.full((batch, length), mode != "all_false", dtype=torch.bool, device=where)
            if mode == "mask_last":
                out[:, -1] = False
        return out.to(device)


def _check_mask_mode(mode: object) -> None:
    if mode not in MASK_MODES:
        from contrastkit.errors import unknown_name

        raise unknown_name("mask mode", str(mode), MASK_MODES)


def instance_pool(z: Tensor) -> Tensor:
    """Instance-level representation: max over all time steps, ``[B, T, C]`` → ``[B, C]``
    (TS2Vec's ``encoding_window='full_series'``)."""
    return z.amax(dim=1)
