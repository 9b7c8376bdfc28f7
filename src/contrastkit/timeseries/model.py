"""The trainable module of TS2Vec, AutoTCL and COMET, and the preparation of their training series.

:class:`TS2Vec` holds one TS2Vec encoder (:class:`~.encoder.TSEncoder`) trained with the chosen
objective and the equal-weight running average of its weights
(``torch.optim.swa_utils.AveragedModel``, as all three official codes do), which ``encode``
uses; AutoTCL adds its augmentation network. Arrays are ``(n, channels, length)`` (NaN =
missing/padding); training batches are time-major ``[B, T, F]``.

- ``"ts2vec"`` (Yue et al. 2022; code ``ts2vec.py::fit``): two random overlapping crops, binomial
  timestamp masks, :func:`~.losses.hierarchical_contrastive_loss` on the overlap.
- ``"autotcl"`` (Zheng et al. 2024; code ``AutoTCL_CoST.py::fit``): per step, one step of the
  augmentation network (encoder frozen in eval mode) on the PRI surrogate — or, with
  ``aug_objective="adversarial"``, on minus the encoder's InfoNCE — then one encoder step on
  global + ``local_weight``·local InfoNCE between ``x`` and its learned view.
- ``"comet"`` (Wang et al. 2023; code ``comet.py::fit``): per level the encoder runs twice on the
  batch with that level's mask; patient and trial levels need ids and are skipped without them.

Every loss takes the step's ``generator`` (seeded alike in every process) and draws what differs
per series for this process's rows of the global batch (:class:`~.views.Shard`). Terms that
contrast series with each other (TS2Vec's instance terms, AutoTCL's global InfoNCE and MMD,
COMET's sample, trial and patient levels) are computed on the series of every process, gathered
with gradient, so that ``W`` processes take the step one process takes on the whole batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from contrastkit.config import TimeSeriesConfig
from contrastkit.errors import ContrastkitError, unknown_name
from contrastkit.functional.distributed import gather, gather_with_grad, world
from contrastkit.options import check_number
from contrastkit.timeseries.autotcl import AutoTCLAugmenter
from contrastkit.timeseries.encoder import TSEncoder, instance_pool
from contrastkit.timeseries.losses import (
    autotcl_global_loss,
    autotcl_local_loss,
    comet_level_loss,
    hierarchical_terms,
    id_contrastive_loss,
    mask_size_penalty,
    mmd,
    temporal_consistency,
)
from contrastkit.timeseries.views import (
    ALIGNED_VIEWS,
    MOVING_VIEWS,
    Shard,
    aligned_views,
    random_crops,
)

__all__ = [
    "COMET_LEVELS",
    "METHODS",
    "SeriesGroups",
    "TS2Vec",
    "augment_strengths",
    "check_series",
    "collate_groups",
    "default_iters",
    "prepare_series",
]

METHODS = ("ts2vec", "autotcl", "comet")
#: COMET's levels, in the order of ``comet.factors`` and ``comet.masks``
COMET_LEVELS = ("patient", "trial", "sample", "observation")


def augment_strengths(value: object, method: str) -> dict[str, float]:
    """``timeseries.augment`` as ``{name: σ}`` after checking names, strengths and the method."""
    defaults = {"jitter": 0.03, "scaling": 0.1}
    if isinstance(value, str) or not isinstance(value, Sequence | dict):
        raise ContrastkitError(
            f"augment must be a list of view names or a {{name: sigma}} dict, got {value!r}."
        )
    strengths = dict(value) if isinstance(value, dict) else {n: defaults.get(n) for n in value}
    if strengths and method == "autotcl":
        raise ContrastkitError(
            "AutoTCL learns its own augmentation; drop augment or choose ts2vec or comet."
        )
    for name, sigma in strengths.items():
        if name in MOVING_VIEWS:
            raise ContrastkitError(
                f"augment view {name!r} moves time steps, which breaks the per-timestamp "
                f"positives of {method}; use {' or '.join(ALIGNED_VIEWS)}."
            )
        if name not in ALIGNED_VIEWS:
            raise unknown_name("augment view", str(name), ALIGNED_VIEWS)
        check_number(f"augment.{name}", sigma, 0.0, math.inf, low_open=True)
    return {n: float(v) for n, v in strengths.items()}


def default_iters(x: np.ndarray) -> int:
    """TS2Vec's training length: 200 iterations up to 100,000 training values, else 600."""
    return 200 if np.asarray(x).size <= 100000 else 600


def check_series(x: object, channels: int, what: str = "x") -> np.ndarray:
    """``x`` as a float32 ``(n, channels, length)`` array, or a one-sentence error."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype == object or a.dtype.kind not in "fiu" or a.ndim != 3:
        raise ContrastkitError(
            f"{what} must be a numeric (n, channels, length) array, got "
            f"{a.dtype} {a.shape}; add a channel axis for univariate series (x[:, None])."
        )
    if a.shape[1] != channels:
        raise ContrastkitError(
            f"{what} has {a.shape[1]} channels but the model was trained on {channels}; pass "
            "(n, channels, length) arrays with the training data's variables."
        )
    if len(a) == 0 or a.shape[2] == 0:
        raise ContrastkitError(f"{what} is empty (shape {a.shape}); give at least one series.")
    a = a.astype(np.float32)
    if np.isinf(a).any():
        raise ContrastkitError(
            f"{what} contains infinite values; replace them (NaN marks missing values)."
        )
    return a


def prepare_series(
    x: np.ndarray, method: str, max_train_length: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """TS2Vec's preprocessing of ``(n, channels, length)`` training series (code
    ``ts2vec.py::fit``): time-major ``(n', T, F)``, series longer than ``2 × max_train_length``
    split into NaN-padded sections, series padded at either end centred, all-NaN series
    dropped; COMET keeps series whole, AutoTCL zero-fills NaN (its view ``g ⊙ h ⊙ x`` needs
    finite values). Also returns which input series were kept (COMET: for their ids)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).transpose(0, 2, 1))
    if method != "comet":
        if max_train_length is not None and x.shape[1] // max_train_length >= 2:
            parts = np.array_split(x, x.shape[1] // max_train_length, axis=1)
            width = parts[0].shape[1]
            pad = lambda p: ((0, 0), (0, width - p.shape[1]), (0, 0))  # noqa: E731
            x = np.concatenate([np.pad(p, pad(p), constant_values=np.nan) for p in parts])
        missing = np.isnan(x).all(axis=-1).any(axis=0)
        if missing[0] or missing[-1]:
            x = _centerize(x)
    keep = ~np.isnan(x).all(axis=(1, 2))
    x = x[keep]
    if method == "autotcl":
        x = np.nan_to_num(x)
    return np.ascontiguousarray(x, dtype=np.float32), keep


def _centerize(x: np.ndarray) -> np.ndarray:
    """Shift each series of ``(n, T, F)`` so its observed span sits in the middle (TS2Vec's
    ``centerize_vary_length_series``: a cyclic roll by the prefix/suffix imbalance)."""
    observed = ~np.isnan(x).all(axis=-1)
    prefix = np.argmax(observed, axis=1)
    suffix = np.argmax(observed[:, ::-1], axis=1)
    offset = (prefix + suffix) // 2 - prefix
    return np.stack([np.roll(s, int(o), axis=0) for s, o in zip(x, offset, strict=True)])


class SeriesGroups(Dataset):
    """COMET's training samples: with trial ids one sample is one whole trial (all its series),
    so a batch of trials holds the positives of the trial level and the path's sampler still
    shards samples over processes; without them one sample is one series. A sample is a dict of
    ``x [k, T, F]`` and, where the data has them, ``trial``/``patient`` ids ``[k]``."""

    def __init__(
        self, series: Tensor, trial_ids: Tensor | None = None, patient_ids: Tensor | None = None
    ) -> None:
        self.series = series
        self.ids = {
            k: v for k, v in (("trial", trial_ids), ("patient", patient_ids)) if v is not None
        }
        if trial_ids is None:
            self.groups = [torch.tensor([i]) for i in range(len(series))]
        else:
            self.groups = [torch.nonzero(trial_ids == t)[:, 0] for t in torch.unique(trial_ids)]

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rows = self.groups[index]
        return {"x": self.series[rows], **{k: v[rows] for k, v in self.ids.items()}}


def collate_groups(samples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """One batch of :class:`SeriesGroups` samples: their series (and ids) concatenated."""
    return {k: torch.cat([s[k] for s in samples]) for k in samples[0]}


class _Everywhere:
    """The series of every process for one step: ``gather`` concatenates a per-series tensor
    over processes (rank order, with gradient; the processes may hold different numbers of
    series), ``share`` turns this process's mean of a per-series term into its part of the
    mean over all series (DDP averages the processes' gradients)."""

    def __init__(self, rows: int, device: torch.device) -> None:
        self.rank, self.world = world()
        self.rows = rows
        self.sizes = [rows]
        if self.world > 1:
            self.sizes = gather(torch.tensor([rows], device=device)).tolist()
        self.share = rows * self.world / sum(self.sizes)

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.world)

    def gather(self, x: Tensor, *, grad: bool = True) -> Tensor:
        if self.world == 1:
            return x
        most = max(self.sizes)
        padded = torch.cat([x, x.new_zeros((most - len(x), *x.shape[1:]))])
        everything = gather_with_grad(padded) if grad else gather(padded)
        return torch.cat([everything[r * most : r * most + n] for r, n in enumerate(self.sizes)])


class TS2Vec(nn.Module):
    """TS2Vec's encoder with the objective of ``method`` (``"ts2vec"``, ``"autotcl"`` or
    ``"comet"``), its weight average ``net`` (what :meth:`encode` uses; update it after each
    optimiser step with :meth:`update_average`) and, for AutoTCL, the augmentation network.

    Args:
        input_dims: variables per time step (1 for univariate series).
        method: the objective.
        options: the ``timeseries`` config section (encoder widths, dropout, crops,
            hierarchy, views, AutoTCL's and COMET's settings).
    """

    def __init__(
        self, input_dims: int, method: str = "ts2vec", options: TimeSeriesConfig | None = None
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise unknown_name("time-series method", str(method), METHODS)
        o = TimeSeriesConfig() if options is None else options
        self.input_dims, self.method, self.options = input_dims, method, o
        self.strengths = augment_strengths(o.augment, method)
        self.encoder = TSEncoder(
            input_dims, o.output_dims, o.hidden_dims, o.depth, dropout=o.dropout, causal=o.causal
        )
        self.augmenter: AutoTCLAugmenter | None = None
        if method == "autotcl":
            a = o.autotcl
            self.augmenter = AutoTCLAugmenter(
                input_dims,
                a.aug_dim,
                o.hidden_dims,
                a.aug_depth,
                channels=a.mask_channels,
                mask_mode=a.aug_mask_mode,
                gumbel_bias=a.gumbel_bias,
                gamma_zeta=a.gamma_zeta,
                hard_mask=a.hard_mask,
                dropout=o.dropout,
            )
        self.net = torch.optim.swa_utils.AveragedModel(self.encoder)
        self.net.requires_grad_(False)  # an average, never trained
        self.update_average()
        #: the objective's terms of the last step (``train/<name>`` in metrics.csv)
        self.logged: dict[str, Tensor] = {}

    def update_average(self) -> None:
        """Add the encoder's current weights to the equal-weight average ``net``."""
        self.net.update_parameters(self.encoder)

    # ------------------------------------------------------------------ training losses

    def window(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """A random window of ``max_train_length`` steps of a longer batch (one per batch)."""
        length = self.options.max_train_length
        if length is None or x.shape[1] <= length:
            return x
        high = x.shape[1] - length + 1
        offset = int(torch.randint(high, (), generator=generator, device=generator.device))
        return x[:, offset : offset + length]

    def ts2vec_loss(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """TS2Vec: hierarchical contrast of two overlapping crops of ``x [B, T, F]``."""
        o, every = self.options, _Everywhere(len(x), x.device)
        crops = random_crops(
            x, temporal_unit=o.temporal_unit, generator=generator, shard=every.shard
        )
        x1, x2 = (
            aligned_views(v, self.strengths, generator=generator, shard=every.shard)
            for v in (crops.x1, crops.x2)
        )
        out1 = self.encoder(x1, generator=generator, shard=every.shard)[:, crops.overlap1]
        out2 = self.encoder(x2, generator=generator, shard=every.shard)[:, crops.overlap2]
        both = None if every.world == 1 else (every.gather(out1), every.gather(out2))
        instance, temporal = hierarchical_terms(
            out1, out2, o.alpha, o.temporal_unit, everywhere=both
        )
        self.logged = {"instance": instance.detach(), "temporal": temporal.detach()}
        return instance + every.share * temporal

    def autotcl_augmentation_loss(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """AutoTCL's augmentation step: the PRI surrogate (MMD between the encoder's pooled
        input and view + mask size + temporal consistency) or, adversarially, minus the
        encoder's global InfoNCE; the encoder runs in eval mode without dropout."""
        a, aug, every = self.options.autotcl, self._augmenter(), _Everywhere(len(x), x.device)
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            view = aug(x, generator=generator, shard=every.shard)
            with torch.no_grad():  # no path into the augmentation network
                rx = self.encoder(x, mask="all_true")
            rv = self.encoder(view.view, mask="all_true")
        finally:
            self.encoder.train(was_training)
        px, pv = every.gather(rx.amax(dim=1)), every.gather(rv.amax(dim=1))
        if a.aug_objective == "adversarial":
            loss = -self._autotcl_global(px[:, None], pv[:, None])
        else:
            # the mask-size penalty is a ReLU of the mean mask over every process's series
            size = every.gather(view.h_logit.sum(dim=-1).mean(dim=1))[:, None, None]
            consistency = temporal_consistency(view.h_logit, generator=generator, shard=every.shard)
            loss = (
                mmd(px, pv)
                + a.reg_weight * mask_size_penalty(size, a.reg_threshold)
                + a.regular_weight * every.share * consistency
            )
        self.logged["augmentation"] = loss.detach()
        return loss

    def autotcl_encoder_loss(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """AutoTCL's encoder step: global InfoNCE between ``x`` and its learned view (pooled
        over time, every process's series) + ``local_weight`` × the local loss, which the
        official code computes on the batch's first series only (the global batch's first is
        process 0's, which carries the term for all ``W`` processes)."""
        a, aug, every = self.options.autotcl, self._augmenter(), _Everywhere(len(x), x.device)
        with torch.no_grad():
            view = aug(x, generator=generator, shard=every.shard).view
        rx = self.encoder(x, generator=generator, shard=every.shard)
        rv = self.encoder(view, generator=generator, shard=every.shard)
        pooled = (every.gather(r.amax(dim=1, keepdim=True)) for r in (rx, rv))
        global_ = self._autotcl_global(*pooled)
        local = autotcl_local_loss(
            rx, a.local_segments, a.temperature, normalize=a.local_normalize, generator=generator
        )
        carried = every.world if every.rank == 0 else 0.0
        self.logged |= {"global": global_.detach(), "local": local.detach()}
        return global_ + a.local_weight * carried * local

    def _augmenter(self) -> AutoTCLAugmenter:
        if self.augmenter is None:
            raise ContrastkitError(f"The {self.method} model has no augmentation network.")
        return self.augmenter

    def _autotcl_global(self, rx: Tensor, rv: Tensor) -> Tensor:
        a = self.options.autotcl
        return autotcl_global_loss(
            rx, rv, a.temperature, normalize=a.global_normalize, intra_view=a.global_intra_view
        )

    def comet_loss(self, x: Tensor, ids: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        """COMET: the patient, trial, sample and observation levels with their factors; a level
        whose factor is 0 or whose ids (``ids["patient"]``, ``ids["trial"]``) the data lacks is
        skipped. The observation level contrasts time steps within each series (this process's);
        the others contrast series (every process's)."""
        o, every = self.options.comet, _Everywhere(len(x), x.device)
        terms: dict[str, Tensor] = {}
        loss = x.new_zeros(())
        for k, level in enumerate(COMET_LEVELS):
            factor = o.factors[k]
            if factor == 0 or (level in ("patient", "trial") and level not in ids):
                continue
            out1, out2 = (
                self.encoder(
                    aligned_views(x, self.strengths, generator=generator, shard=every.shard),
                    mask=o.masks[k],
                    generator=generator,
                    shard=every.shard,
                )
                for _ in range(2)
            )
            if level == "observation":
                terms[level] = factor * comet_level_loss(out1, out2, level)
                loss = loss + every.share * terms[level]
                continue
            z1, z2 = every.gather(out1), every.gather(out2)
            if level == "sample":
                terms[level] = factor * comet_level_loss(z1, z2, level)
            else:
                group = every.gather(ids[level], grad=False)
                weight = factor if o.faithful_factors else 1.0
                terms[level] = weight * id_contrastive_loss(z1, z2, group, o.id_temperature)
            loss = loss + terms[level]
        self.logged = {k: v.detach() for k, v in terms.items()}
        return loss

    # ------------------------------------------------------------------ encode

    @torch.no_grad()
    def encode(
        self,
        x: np.ndarray | Tensor,
        *,
        pooling: Literal["instance", "timestamp"] = "instance",
        mask: str | None = None,
    ) -> np.ndarray:
        """Representations of ``x (n, channels, length)`` from the averaged encoder in eval mode:
        ``(n, output_dims)`` max-pooled over all time steps (``"instance"``, TS2Vec's
        ``full_series``) or ``(n, length, output_dims)`` per time step (``"timestamp"``)."""
        if pooling not in ("instance", "timestamp"):
            raise unknown_name("pooling", str(pooling), ["instance", "timestamp"])
        data = check_series(x, self.input_dims).transpose(0, 2, 1)
        if self.method == "autotcl":
            data = np.nan_to_num(data)
        device = next(self.net.parameters()).device
        rows = max(1, 2**22 // (data.shape[1] * self.options.output_dims))  # ~16 MB per chunk
        was_training = self.net.training
        self.net.eval()
        out = []
        try:
            for start in range(0, len(data), rows):
                chunk = torch.from_numpy(np.ascontiguousarray(data[start : start + rows]))
                z = self.net(chunk.to(device), mask)
                out.append((instance_pool(z) if pooling == "instance" else z).float().cpu())
        finally:
            self.net.train(was_training)
        return torch.cat(out).numpy()
