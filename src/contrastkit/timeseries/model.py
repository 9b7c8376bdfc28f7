"""An sklearn-like ``fit``/``encode`` model for TS2Vec, AutoTCL and COMET.

``TS2Vec(input_dims, method=...)`` trains one TS2Vec encoder (:class:`~.encoder.TSEncoder`)
with the chosen objective and keeps an equal-weight running average of its weights
(``torch.optim.swa_utils.AveragedModel``, as all three official codes do) for ``encode``.
Arrays are ``(n, channels, length)`` (NaN = missing/padding), as everywhere in
:mod:`contrastkit.timeseries`.

- ``"ts2vec"`` (Yue et al. 2022; code ``ts2vec.py::fit``): two random overlapping crops, binomial
  timestamp masks, :func:`~.losses.hierarchical_contrastive_loss` on the overlap.
- ``"autotcl"`` (Zheng et al. 2024; code ``AutoTCL_CoST.py::fit``): per iteration, one step of the
  augmentation network (encoder frozen in eval mode) on the PRI surrogate — or, with
  ``aug_objective="adversarial"``, on minus the encoder's InfoNCE — then one encoder step on
  global + ``local_weight``·local InfoNCE between ``x`` and its learned view.
- ``"comet"`` (Wang et al. 2023; code ``comet.py::fit``): per level the encoder runs twice on the
  batch with that level's mask; patient and trial levels need ``patient_ids``/``trial_ids`` and
  are skipped without them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from contrastkit.errors import ContrastkitError, unknown_name
from contrastkit.options import check_number
from contrastkit.timeseries.autotcl import AutoTCLAugmenter
from contrastkit.timeseries.data import group_codes
from contrastkit.timeseries.encoder import MASK_MODES, TSEncoder, instance_pool
from contrastkit.timeseries.losses import (
    autotcl_global_loss,
    autotcl_local_loss,
    comet_level_loss,
    hierarchical_contrastive_loss,
    id_contrastive_loss,
    mask_size_penalty,
    mmd,
    temporal_consistency,
)
from contrastkit.timeseries.views import ALIGNED_VIEWS, MOVING_VIEWS, aligned_views, random_crops

__all__ = ["METHODS", "AutoTCLOptions", "COMETOptions", "TS2Vec", "default_iters"]

METHODS = ("ts2vec", "autotcl", "comet")
Method = Literal["ts2vec", "autotcl", "comet"]


@dataclass(frozen=True)
class AutoTCLOptions:
    """AutoTCL's settings; defaults are the official class/``fit`` defaults (``AutoTCL_CoST.py``),
    with the mask heads per variable as the official script (``agu_channel = F``).
    ``global_normalize=False`` swaps the global InfoNCE's cosine for raw dot products and
    ``global_intra_view=True`` makes it NT-Xent over both views; with ``local_normalize=False``,
    ``local_weight=1`` and ``local_segments=8`` the encoder loss is that of InfoTS (Luo et al.
    2023, code ``infots.py::fit``), the authors' classification predecessor. See
    ``benchmarks/results/ucr.md`` for how the forms train."""

    aug_dim: int = 16
    aug_depth: int = 3
    aug_mask_mode: str = "all_true"  # the official code calls the augmentation encoder unmasked
    meta_lr: float = 0.01
    local_weight: float = 0.1
    reg_weight: float = 0.001
    regular_weight: float = 0.001
    reg_threshold: float = 0.4
    gumbel_bias: float = 0.001
    gamma_zeta: float = 0.05
    hard_mask: bool = True
    ratio_step: int = 1
    aug_objective: Literal["pri", "adversarial"] = "pri"
    temperature: float = 1.0
    global_normalize: bool = True
    global_intra_view: bool = False
    local_segments: int = 16
    local_normalize: bool = True
    mask_channels: int | None = None


@dataclass(frozen=True)
class COMETOptions:
    """COMET's settings (``config_files/*``): ``factors``/``masks`` for the patient, trial,
    sample and observation levels. ``faithful_factors=False`` reproduces the code, where the
    patient and trial factors only switch their level on; ``True`` multiplies them as the paper
    intends."""

    factors: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)
    masks: tuple[str, str, str, str] = ("all_true", "all_true", "continuous", "continuous")
    id_temperature: float = 0.1
    faithful_factors: bool = False


def _options(kind: type, value: Any, what: str) -> Any:
    if value is None:
        return kind()
    if isinstance(value, kind):
        return value
    if isinstance(value, dict):
        known = {f.name for f in fields(kind)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise unknown_name(f"{what} option", unknown[0], known)
        return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
    raise ContrastkitError(f"{what} options must be a dict or {kind.__name__}, got {value!r}.")


def _augment(value: object, method: str) -> dict[str, float]:
    """``augment`` as ``{name: σ}`` after checking names, strengths and the method."""
    if value is None:
        return {}
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
    """TS2Vec's default training length: 200 iterations up to 100,000 values, else 600."""
    return 200 if np.asarray(x).size <= 100000 else 600


@dataclass
class _State:
    n_iters: int = 0
    n_epochs: int = 0
    loss_log: list[float] = field(default_factory=list)


class TS2Vec:
    """Time-series contrastive learner with an sklearn-like API.

    Args:
        input_dims: variables per time step (1 for univariate series).
        output_dims, hidden_dims, depth: encoder widths and number of hidden blocks (TS2Vec:
            320, 64, 10).
        method: ``"ts2vec"``, ``"autotcl"`` or ``"comet"``.
        lr: AdamW learning rate of the encoder (TS2Vec: 1e-3).
        batch_size: series per step (TS2Vec's scripts: 8); must not exceed the training set.
        max_train_length: longer series are cut into sections (and windows) of at most this
            many steps while training (TS2Vec: 3000; ``None`` keeps them whole).
        temporal_unit, alpha: TS2Vec's hierarchy settings (0 and 0.5).
        causal: causal convolutions instead of TS2Vec's centred ones.
        device: torch device to train and encode on.
        augment: extra input-space views for ``ts2vec`` and ``comet``, drawn independently for
            each of the two encoder passes: ``{"jitter": σ, "scaling": σ}`` or a list of those
            names (σ = 0.03 and 0.1). Views that move time steps are refused (the losses pair
            equal timestamps); AutoTCL learns its own.
        seed: seeds weights, data order, crops, masks, views and dropout.
        autotcl, comet: method settings (:class:`AutoTCLOptions`, :class:`COMETOptions` or
            dicts of their fields).
    """

    def __init__(
        self,
        input_dims: int,
        output_dims: int = 320,
        hidden_dims: int = 64,
        depth: int = 10,
        *,
        method: Method = "ts2vec",
        lr: float = 0.001,
        batch_size: int = 8,
        max_train_length: int | None = 3000,
        temporal_unit: int = 0,
        alpha: float = 0.5,
        causal: bool = False,
        device: str | torch.device = "cpu",
        augment: Sequence[str] | dict[str, float] | None = None,
        seed: int = 0,
        autotcl: AutoTCLOptions | dict | None = None,
        comet: COMETOptions | dict | None = None,
    ) -> None:
        if method not in METHODS:
            raise unknown_name("time-series method", str(method), METHODS)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ContrastkitError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if not (isinstance(lr, int | float) and 0 < lr < math.inf):
            raise ContrastkitError(f"lr must be a positive number, got {lr!r}.")
        if max_train_length is not None and (
            not isinstance(max_train_length, int) or max_train_length < 2
        ):
            raise ContrastkitError(
                f"max_train_length must be an integer ≥ 2 or None, got {max_train_length!r}."
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ContrastkitError(f"seed must be an integer in [0, 2**32), got {seed!r}.")
        self.input_dims = input_dims
        self.method = method
        self.lr = float(lr)
        self.batch_size = batch_size
        self.max_train_length = max_train_length
        self.temporal_unit = int(temporal_unit)
        self.alpha = float(alpha)
        self.device = torch.device(device)
        self.seed = seed
        self.augment = _augment(augment, method)
        self.autotcl = _options(AutoTCLOptions, autotcl, "autotcl")
        self.comet = _options(COMETOptions, comet, "comet")
        if self.autotcl.aug_objective not in ("pri", "adversarial"):
            raise unknown_name(
                "AutoTCL aug_objective", self.autotcl.aug_objective, ["pri", "adversarial"]
            )
        for mode in self.comet.masks:
            if mode not in MASK_MODES:
                raise unknown_name("COMET mask", mode, MASK_MODES)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._net = TSEncoder(input_dims, output_dims, hidden_dims, depth, causal=causal)
            self.augmenter: AutoTCLAugmenter | None = None
            if method == "autotcl":
                o = self.autotcl
                self.augmenter = AutoTCLAugmenter(
                    input_dims,
                    o.aug_dim,
                    hidden_dims,
                    o.aug_depth,
                    channels=o.mask_channels,
                    mask_mode=o.aug_mask_mode,
                    gumbel_bias=o.gumbel_bias,
                    gamma_zeta=o.gamma_zeta,
                    hard_mask=o.hard_mask,
                ).to(self.device)
        self._net.to(self.device)
        self.net = torch.optim.swa_utils.AveragedModel(self._net)
        self.net.update_parameters(self._net)
        self._optimizer = torch.optim.AdamW(self._net.parameters(), lr=self.lr)
        self._meta_optimizer = (
            None
            if self.augmenter is None
            else torch.optim.AdamW(self.augmenter.parameters(), lr=self.autotcl.meta_lr)
        )
        self._order = torch.Generator().manual_seed(seed)  # data order (CPU)
        self._views = torch.Generator(device=self.device).manual_seed(seed + 1)  # crops, masks
        self._state = _State()

    # ------------------------------------------------------------------ properties

    @property
    def n_iters(self) -> int:
        return self._state.n_iters

    @property
    def n_epochs(self) -> int:
        return self._state.n_epochs

    @property
    def loss_log(self) -> list[float]:
        """The training loss of every iteration so far."""
        return list(self._state.loss_log)

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        x: np.ndarray | Tensor,
        n_iters: int | None = None,
        n_epochs: int | None = None,
        *,
        trial_ids: Sequence | np.ndarray | None = None,
        patient_ids: Sequence | np.ndarray | None = None,
        verbose: bool = False,
    ) -> list[float]:
        """Train on ``x (n, channels, length)`` for ``n_iters`` more iterations or until
        ``n_epochs`` epochs in all (default: :func:`default_iters`); returns the losses of the
        iterations run. COMET uses ``trial_ids``/``patient_ids`` (one per series) when given.
        """
        data = self._check_input(x, "x")
        ids = {
            "trial": group_codes(trial_ids, len(data), "trial_ids"),
            "patient": group_codes(patient_ids, len(data), "patient_ids"),
        }
        if self.method != "comet" and any(v is not None for v in ids.values()):
            raise ContrastkitError(
                f"trial_ids/patient_ids are used by method='comet' only, not {self.method!r}; "
                "drop them or choose comet."
            )
        if n_iters is None and n_epochs is None:
            n_iters = default_iters(data)
        for name, value in (("n_iters", n_iters), ("n_epochs", n_epochs)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ContrastkitError(f"{name} must be a non-negative integer, got {value!r}.")
        series, ids = self._prepare(data.transpose(0, 2, 1), ids)
        if self.batch_size > len(series):
            raise ContrastkitError(
                f"batch_size={self.batch_size} is larger than the {len(series)} training series; "
                "lower batch_size."
            )
        if series.shape[1] < 2 ** (self.temporal_unit + 1):
            raise ContrastkitError(
                f"Training series of length {series.shape[1]} are too short; TS2Vec's crops need "
                f"at least {2 ** (self.temporal_unit + 1)} time steps."
            )
        tensor = torch.from_numpy(series).to(self.device)
        ids_t = {
            k: None if v is None else torch.from_numpy(v).to(self.device) for k, v in ids.items()
        }
        stop_at = None if n_iters is None else self.n_iters + n_iters
        losses: list[float] = []
        seed = int(torch.randint(2**62, (), generator=self._order))
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)  # dropout
            while n_epochs is None or self.n_epochs < n_epochs:
                started = time.perf_counter()
                for index in self._batches(len(tensor), ids["trial"]):
                    if stop_at is not None and self.n_iters >= stop_at:
                        return losses
                    batch_ids = {k: None if v is None else v[index] for k, v in ids_t.items()}
                    loss = self._step(tensor[index.to(self.device)], batch_ids)
                    losses.append(loss)
                    self._state.loss_log.append(loss)
                    self._state.n_iters += 1
                self._state.n_epochs += 1
                if verbose:
                    print(
                        f"epoch {self.n_epochs}: loss={np.mean(losses[-10:]):.4f} "
                        f"({time.perf_counter() - started:.1f}s)"
                    )
        return losses

    def _check_input(self, x: np.ndarray | Tensor, what: str) -> np.ndarray:
        if isinstance(x, Tensor):
            x = x.detach().cpu().numpy()
        a = np.asarray(x)
        if a.dtype == object or a.dtype.kind not in "fiu" or a.ndim != 3:
            raise ContrastkitError(
                f"{what} must be a numeric (n, channels, length) array, got "
                f"{a.dtype} {a.shape}; add a channel axis for univariate series (x[:, None])."
            )
        if a.shape[1] != self.input_dims:
            raise ContrastkitError(
                f"{what} has {a.shape[1]} channels but the model was built with input_dims="
                f"{self.input_dims}; pass (n, channels, length) arrays with matching channels."
            )
        if len(a) == 0 or a.shape[2] == 0:
            raise ContrastkitError(f"{what} is empty (shape {a.shape}); give at least one series.")
        a = a.astype(np.float32)
        if np.isinf(a).any():
            raise ContrastkitError(
                f"{what} contains infinite values; replace them (NaN marks missing values)."
            )
        return a

    def _prepare(
        self, x: np.ndarray, ids: dict[str, np.ndarray | None]
    ) -> tuple[np.ndarray, dict[str, np.ndarray | None]]:
        """TS2Vec's preprocessing on time-major ``(n, T, F)`` data (code ``ts2vec.py::fit``):
        split series longer than ``2 × max_train_length`` into NaN-padded sections, centre
        series padded at either end, drop all-NaN series (COMET keeps series whole)."""
        if self.method != "comet":
            if self.max_train_length is not None:
                sections = x.shape[1] // self.max_train_length
                if sections >= 2:
                    parts = np.array_split(x, sections, axis=1)
                    width = parts[0].shape[1]
                    x = np.concatenate(
                        [
                            np.pad(
                                p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=np.nan
                            )
                            for p in parts
                        ]
                    )
            missing = np.isnan(x).all(axis=-1).any(axis=0)
            if missing[0] or missing[-1]:
                x = _centerize(x)
        keep = ~np.isnan(x).all(axis=(1, 2))
        x = x[keep]
        if self.method == "autotcl":
            x = np.nan_to_num(x)  # the view g ⊙ h ⊙ x needs finite values (official code)
        return np.ascontiguousarray(x, dtype=np.float32), {
            k: None if v is None else v[keep] for k, v in ids.items()
        }

    def _batches(self, n: int, trial_ids: np.ndarray | None):
        """Index tensors of one epoch: shuffled with ``drop_last`` (TS2Vec, AutoTCL); COMET keeps
        the last partial batch and, with trial ids, groups each trial's series together."""
        bs = self.batch_size
        if self.method == "comet" and trial_ids is not None:
            trials = np.unique(trial_ids)
            order_t = torch.randperm(len(trials), generator=self._order).numpy()
            chunks = []
            for t in trials[order_t]:
                members = np.flatnonzero(trial_ids == t)
                chunks.append(members[torch.randperm(len(members), generator=self._order).numpy()])
            order = torch.from_numpy(np.concatenate(chunks))
        else:
            order = torch.randperm(n, generator=self._order)
        stop = n - n % bs if self.method != "comet" else n
        for start in range(0, stop, bs):
            yield order[start : start + bs]

    # ------------------------------------------------------------------ steps

    def _step(self, x: Tensor, ids: dict[str, Tensor | None]) -> float:
        if self.method == "ts2vec":
            loss = self._ts2vec_loss(x)
        elif self.method == "autotcl":
            loss = self._autotcl_step(x)
        else:
            loss = self._comet_loss(x, ids)
        value = float(loss.detach())
        if not math.isfinite(value):  # stop before the weights are touched
            raise ContrastkitError(
                f"The {self.method} loss became {value} at iteration {self.n_iters}; lower lr "
                "or check the input for extreme values."
            )
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._optimizer.step()
        self.net.update_parameters(self._net)
        return value

    def _window(self, x: Tensor) -> Tensor:
        if self.max_train_length is not None and x.shape[1] > self.max_train_length:
            high = x.shape[1] - self.max_train_length + 1
            offset = int(torch.randint(high, (), generator=self._order))
            x = x[:, offset : offset + self.max_train_length]
        return x

    def _ts2vec_loss(self, x: Tensor) -> Tensor:
        self._net.train()
        crops = random_crops(
            self._window(x), temporal_unit=self.temporal_unit, generator=self._views
        )
        x1, x2 = (
            aligned_views(v, self.augment, generator=self._views) for v in (crops.x1, crops.x2)
        )
        out1 = self._net(x1, generator=self._views)[:, crops.overlap1]
        out2 = self._net(x2, generator=self._views)[:, crops.overlap2]
        return hierarchical_contrastive_loss(out1, out2, self.alpha, self.temporal_unit)

    def _autotcl_step(self, x: Tensor) -> Tensor:
        """One augmentation step (every ``ratio_step`` iterations), then the encoder loss."""
        o, aug = self.autotcl, self.augmenter
        assert aug is not None and self._meta_optimizer is not None
        x = self._window(x)
        if self.n_iters % o.ratio_step == 0:
            self._net.eval()
            aug.train()
            view = aug(x, generator=self._views)
            rx = self._net(x, mask="all_true")
            rv = self._net(view.view, mask="all_true")
            if o.aug_objective == "pri":
                aug_loss = (
                    mmd(rx.amax(dim=1), rv.amax(dim=1))
                    + o.reg_weight * mask_size_penalty(view.h_logit, o.reg_threshold)
                    + o.regular_weight * temporal_consistency(view.h_logit, generator=self._views)
                )
            else:
                aug_loss = -self._autotcl_global(rx, rv)
            params = [p for p in aug.parameters() if p.requires_grad]
            grads = torch.autograd.grad(aug_loss, params, allow_unused=True)
            self._meta_optimizer.zero_grad(set_to_none=True)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            self._meta_optimizer.step()
        self._net.train()
        with torch.no_grad():
            view = aug(x, generator=self._views).view
        rx = self._net(x, generator=self._views)
        rv = self._net(view, generator=self._views)
        local = autotcl_local_loss(
            rx, o.local_segments, o.temperature, normalize=o.local_normalize, generator=self._views
        )
        return self._autotcl_global(rx, rv) + o.local_weight * local

    def _autotcl_global(self, rx: Tensor, rv: Tensor) -> Tensor:
        o = self.autotcl
        return autotcl_global_loss(
            rx, rv, o.temperature, normalize=o.global_normalize, intra_view=o.global_intra_view
        )

    def _comet_loss(self, x: Tensor, ids: dict[str, Tensor | None]) -> Tensor:
        o = self.comet
        self._net.train()
        loss = x.new_zeros(())
        levels = (("patient", 0), ("trial", 1), ("sample", 2), ("observation", 3))
        for level, k in levels:
            factor = o.factors[k]
            if factor == 0 or (level in ids and ids[level] is None):
                continue  # a level the data does not have
            out1, out2 = (
                self._net(
                    aligned_views(x, self.augment, generator=self._views),
                    mask=o.masks[k],
                    generator=self._views,
                )
                for _ in range(2)
            )
            if level in ("patient", "trial"):
                term = id_contrastive_loss(out1, out2, ids[level], o.id_temperature)
                loss = loss + (factor if o.faithful_factors else 1.0) * term
            else:
                loss = loss + factor * comet_level_loss(out1, out2, level)
        return loss

    # ------------------------------------------------------------------ encode

    def encode(
        self,
        x: np.ndarray | Tensor,
        *,
        pooling: Literal["instance", "timestamp"] = "instance",
        batch_size: int | None = None,
        mask: str | None = None,
    ) -> np.ndarray:
        """Representations of ``x (n, channels, length)`` from the averaged encoder in eval mode:
        ``(n, output_dims)`` max-pooled over all time steps (``"instance"``, TS2Vec's
        ``full_series``) or ``(n, length, output_dims)`` per time step (``"timestamp"``)."""
        if pooling not in ("instance", "timestamp"):
            raise unknown_name("pooling", str(pooling), ["instance", "timestamp"])
        data = self._check_input(x, "x").transpose(0, 2, 1)
        if self.method == "autotcl":
            data = np.nan_to_num(data)
        bs = batch_size or self.batch_size
        was_training = self.net.training
        self.net.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(data), bs):
                chunk = torch.from_numpy(np.ascontiguousarray(data[start : start + bs]))
                z = self.net(chunk.to(self.device), mask)
                out.append((instance_pool(z) if pooling == "instance" else z).cpu())
        self.net.train(was_training)
        return torch.cat(out).numpy()

    def state_dict(self) -> dict[str, Any]:
        """Weights of the averaged (inference) encoder and the trained encoder."""
        return {"net": self.net.state_dict(), "_net": self._net.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self._net.load_state_dict(state["_net"])


def _centerize(x: np.ndarray) -> np.ndarray:
    """Shift each series of ``(n, T, F)`` so its observed span sits in the middle (TS2Vec's
    ``centerize_vary_length_series``: a cyclic roll by the prefix/suffix imbalance)."""
    observed = ~np.isnan(x).all(axis=-1)
    prefix = np.argmax(observed, axis=1)
    suffix = np.argmax(observed[:, ::-1], axis=1)
    offset = (prefix + suffix) // 2 - prefix
    return np.stack([np.roll(s, int(o), axis=0) for s, o in zip(x, offset, strict=True)])
