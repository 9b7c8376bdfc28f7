"""Batched time-series views, made on the batch's device and reproducible under a generator.

Tensors are time-major ``[B, T, F]`` (batch, time steps, variables) like the TS2Vec encoder's
input. Pass a ``torch.Generator`` on the batch's device to make a view reproducible; NaN marks
padding after a series' end (and missing observations) and is carried along. A :class:`Shard`
says which rows of a batch split over processes this batch is: the draws that differ per row
are then made for the whole batch and each process keeps its own rows.

- :func:`random_crops`: TS2Vec's two overlapping crops (Yue et al. 2022, §3.2 "contextual
  consistency"; code ``ts2vec.py::fit``).
- :func:`binomial_mask`, :func:`continuous_mask`: timestamp masks applied to the encoder's
  latent (TS2Vec §3.2; code ``models/encoder.py``); ``True`` keeps a time step.
- :func:`jitter`, :func:`scaling`, :func:`permutation`, :func:`time_warp`: the classic
  sensor-data augmentations (Um et al. 2017, "Data augmentation of wearable sensor data").
  :func:`aligned_views` applies the first two, which keep every step in place, as the extra
  views of TS2Vec and COMET.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from contrastkit.errors import ContrastkitError

__all__ = [
    "ALIGNED_VIEWS",
    "Crops",
    "Shard",
    "aligned_views",
    "binomial_mask",
    "continuous_mask",
    "jitter",
    "permutation",
    "random_crops",
    "scaling",
    "take_per_row",
    "time_warp",
]


def _check_batch(x: Tensor, what: str = "x") -> None:
    if not isinstance(x, Tensor) or x.ndim != 3 or not x.dtype.is_floating_point:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ContrastkitError(
            f"{what} must be a float tensor [batch, time, variables], got {shape}; reshape it "
            "(numpy arrays (n, channels, length) become x.transpose(0, 2, 1))."
        )


@dataclass(frozen=True)
class Shard:
    """This process's rows of a batch split over ``world`` processes: rows ``rank``,
    ``rank + world``, ``rank + 2·world`` … of the global batch, the order in which the training
    path's distributed sampler deals samples out. A random draw that differs per row is made for
    all ``world × n`` rows, from a generator every process seeds alike, and each process keeps
    its own rows, so ``world`` processes × ``n`` rows draw what one process draws for the whole
    batch (draws shared by the batch, such as a crop length, are equal anyway)."""

    rank: int = 0
    world: int = 1

    def rows(self, n: int) -> int:
        """Rows of the global batch whose local part has ``n`` rows."""
        return n * self.world

    def take(self, drawn: Tensor) -> Tensor:
        """This process's rows of a draw made for :meth:`rows` rows."""
        return drawn if self.world == 1 else drawn[self.rank :: self.world]


#: a batch that is not split (one process)
WHOLE = Shard()


def _randint(low: int, high: int, generator: torch.Generator | None, size: tuple = ()) -> Tensor:
    """Integers uniform in ``[low, high)`` (``high > low``), on the generator's device."""
    device = generator.device if generator is not None else "cpu"
    return torch.randint(low, high, size, generator=generator, device=device)


def take_per_row(x: Tensor, start: Tensor, length: int) -> Tensor:
    """``x[b, start[b] : start[b] + length]`` for every row ``b`` of ``[B, T, F]``."""
    index = start.to(x.device)[:, None] + torch.arange(length, device=x.device)
    return x[torch.arange(len(x), device=x.device)[:, None], index]


@dataclass(frozen=True)
class Crops:
    """Two overlapping crops of a batch (TS2Vec).

    View 1 covers ``[left_outer, right)`` and view 2 ``[left, right_outer)`` of each series,
    shifted by a per-series offset; both contain the ``overlap`` steps ``[left, right)``, which
    are the last ``overlap`` steps of view 1 and the first ``overlap`` steps of view 2.
    """

    x1: Tensor
    x2: Tensor
    overlap: int
    offsets: Tensor

    @property
    def overlap1(self) -> slice:
        """Time indices of the overlap within view 1."""
        return slice(self.x1.shape[1] - self.overlap, self.x1.shape[1])

    @property
    def overlap2(self) -> slice:
        """Time indices of the overlap within view 2."""
        return slice(0, self.overlap)


def random_crops(
    x: Tensor,
    *,
    temporal_unit: int = 0,
    generator: torch.Generator | None = None,
    shard: Shard = WHOLE,
) -> Crops:
    """TS2Vec's random overlapping crops of ``x`` ``[B, T, F]`` (code ``ts2vec.py::fit``).

    Overlap length ``l ~ U{2^(u+1), …, T}``, overlap ``[a, a+l)``, outer ends ``a₁ ~ U{0…a}``,
    ``b₂ ~ U{a+l…T}``, and one offset per series in ``[−a₁, T − b₂]`` shifting both crops.
    """
    _check_batch(x)
    ts_l = x.shape[1]
    low = 2 ** (temporal_unit + 1)
    if ts_l < low:
        raise ContrastkitError(
            f"Series of length {ts_l} are too short for crops with temporal_unit={temporal_unit}; "
            f"they need at least {low} time steps (lower temporal_unit or use longer series)."
        )
    crop_l = int(_randint(low, ts_l + 1, generator))
    left = int(_randint(0, ts_l - crop_l + 1, generator))
    right = left + crop_l
    left_outer = int(_randint(0, left + 1, generator))
    right_outer = int(_randint(right, ts_l + 1, generator))
    offsets = shard.take(
        _randint(-left_outer, ts_l - right_outer + 1, generator, (shard.rows(len(x)),))
    )
    x1 = take_per_row(x, offsets + left_outer, right - left_outer)
    x2 = take_per_row(x, offsets + left, right_outer - left)
    return Crops(x1, x2, crop_l, offsets)


def binomial_mask(
    batch: int,
    length: int,
    p: float = 0.5,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    shard: Shard = WHOLE,
) -> Tensor:
    """``[B, T]`` boolean mask, each step kept (True) with probability ``p`` (TS2Vec: 0.5)."""
    if not 0.0 <= p <= 1.0:
        raise ContrastkitError(f"The keep probability p must lie in [0, 1], got {p!r}.")
    device = generator.device if generator is not None else device
    return shard.take(torch.rand(shard.rows(batch), length, generator=generator, device=device)) < p


def continuous_mask(
    batch: int,
    length: int,
    n: int | float = 5,
    span: int | float = 0.1,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    shard: Shard = WHOLE,
) -> Tensor:
    """``[B, T]`` mask with ``n`` random segments of ``span`` steps set to False per series
    (TS2Vec's ``generate_continuous_mask``; COMET's sample/observation view). Float ``n``/``span``
    are fractions of ``T``; ``n`` is clipped to ``[1, T // 2]`` and ``span`` to at least 1."""
    device = generator.device if generator is not None else device
    n = int(n * length) if isinstance(n, float) else int(n)
    n = max(min(n, length // 2), 1)
    span = int(span * length) if isinstance(span, float) else int(span)
    span = max(span, 1)
    starts = shard.take(
        torch.randint(
            0, length - span + 1, (shard.rows(batch), n, 1), generator=generator, device=device
        )
    )
    t = torch.arange(length, device=device)
    hidden = ((t >= starts) & (t < starts + span)).any(dim=1)
    return ~hidden


def jitter(
    x: Tensor,
    sigma: float = 0.03,
    *,
    generator: torch.Generator | None = None,
    shard: Shard = WHOLE,
) -> Tensor:
    """``x + σ·ε``, ``ε ~ N(0, 1)`` per value (Um et al. 2017)."""
    _check_batch(x)
    shape = (shard.rows(x.shape[0]), *x.shape[1:])
    noise = shard.take(torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype))
    return x + sigma * noise


def scaling(
    x: Tensor,
    sigma: float = 0.1,
    *,
    generator: torch.Generator | None = None,
    shard: Shard = WHOLE,
) -> Tensor:
    """``x · s`` with one factor ``s ~ N(1, σ²)`` per series and variable (Um et al. 2017)."""
    _check_batch(x)
    shape = (shard.rows(x.shape[0]), 1, x.shape[2])
    noise = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
    return x * (1.0 + sigma * shard.take(noise))


def _lengths(x: Tensor) -> Tensor:
    """True length of each series (one past its last step with any non-NaN value)."""
    observed = ~torch.isnan(x).all(dim=2)
    t = torch.arange(1, x.shape[1] + 1, device=x.device)
    return (observed * t).amax(dim=1)


def permutation(
    x: Tensor, max_segments: int = 5, *, generator: torch.Generator | None = None
) -> Tensor:
    """Cut each series into ``2 … max_segments`` random pieces and shuffle them (Um et al.
    2017); only the observed part moves, NaN padding stays at the end."""
    _check_batch(x)
    if max_segments < 2:
        raise ContrastkitError(f"max_segments must be at least 2, got {max_segments}.")
    lengths = _lengths(x).tolist()
    index = torch.arange(x.shape[1], device=x.device).repeat(len(x), 1)
    for b, n in enumerate(lengths):
        pieces = int(_randint(2, max_segments + 1, generator))
        if n < pieces:
            continue
        cuts = torch.randperm(n - 1, generator=generator, device=index.device)[: pieces - 1] + 1
        bounds = [0, *sorted(cuts.tolist()), n]
        order = torch.randperm(pieces, generator=generator, device=index.device).tolist()
        new = [torch.arange(bounds[k], bounds[k + 1], device=x.device) for k in order]
        index[b, :n] = torch.cat(new)
    return x.gather(1, index[:, :, None].expand_as(x))


def time_warp(
    x: Tensor, sigma: float = 0.2, knots: int = 4, *, generator: torch.Generator | None = None
) -> Tensor:
    """Smoothly speed up and slow down time (Um et al. 2017): speeds ``~ N(1, σ²)`` at
    ``knots + 2`` evenly spaced points, linearly interpolated, integrated into a monotone map
    of each series' observed span onto itself, then resampled by linear interpolation."""
    _check_batch(x)
    batch, steps, _ = x.shape
    lengths = _lengths(x).to(x.dtype)
    speed = 1.0 + sigma * torch.randn(
        (batch, knots + 2), generator=generator, device=x.device, dtype=x.dtype
    )
    speed = speed.clamp(min=0.05)  # keep the map strictly increasing
    # position of every output step on the knot grid of its own series
    t = torch.arange(steps, device=x.device, dtype=x.dtype)
    grid = (t / (lengths[:, None] - 1).clamp(min=1)).clamp(max=1.0) * (knots + 1)
    lo = grid.floor().long().clamp(max=knots)
    frac = grid - lo
    v = speed.gather(1, lo) * (1 - frac) + speed.gather(1, (lo + 1).clamp(max=knots + 1)) * frac
    warp = torch.cumsum(v, dim=1) - v[:, :1]
    last = warp.gather(1, (lengths.long() - 1).clamp(min=0)[:, None])
    src = warp / last.clamp(min=1e-12) * (lengths[:, None] - 1)
    src = torch.minimum(src, (lengths[:, None] - 1).clamp(min=0))
    i0 = src.floor().long()
    i1 = (i0 + 1).clamp(max=steps - 1)
    w = (src - i0)[:, :, None]
    expand = lambda i: i[:, :, None].expand_as(x)  # noqa: E731
    out = x.gather(1, expand(i0)) * (1 - w) + x.gather(1, expand(i1)) * w
    out = torch.where(w == 0, x.gather(1, expand(i0)), out)  # exact at knots, no NaN leaks
    observed = t[None, :] < lengths[:, None]
    return torch.where(observed[:, :, None], out, x)


#: views that keep every time step in place, so a timestamp's positive stays aligned
ALIGNED_VIEWS = {"jitter": jitter, "scaling": scaling}
#: views that move time steps (they break TS2Vec's and COMET's per-timestamp positives)
MOVING_VIEWS = {"permutation": permutation, "time_warp": time_warp}


def aligned_views(
    x: Tensor,
    strengths: dict[str, float],
    *,
    generator: torch.Generator | None = None,
    shard: Shard = WHOLE,
) -> Tensor:
    """Apply the :data:`ALIGNED_VIEWS` named in ``strengths`` (name → σ) in order."""
    for name, sigma in strengths.items():
        x = ALIGNED_VIEWS[name](x, sigma, generator=generator, shard=shard)
    return x
