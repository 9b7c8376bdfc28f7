"""The time-series tasks: TS2Vec, AutoTCL and COMET on TS2Vec's encoder
(:class:`~contrastkit.timeseries.TS2Vec`), evaluated by TS2Vec's protocol: an RBF SVM on the
weight-averaged encoder's max-pooled representations (Yue et al. 2022, §4.1).

``data.source`` is ``ucr:NAME``, ``npz:PATH`` or ``csv:PATH``
(:func:`~contrastkit.timeseries.load_timeseries`); one training sample is one prepared series
(TS2Vec's sections, centring; :func:`~contrastkit.timeseries.model.prepare_series`), and for
COMET with trial ids one whole trial, so a batch is ``train.batch_size`` series (trials).
The budget is ``train.max_steps`` — TS2Vec's scripts train 200 iterations, 600 above 100,000
training values (:func:`~contrastkit.timeseries.default_iters`, which the UCR benchmark applies)
— and the AdamW of all three official codes is ``optim`` at a constant learning rate.

The random draws of a step (crops, timestamp masks, views, AutoTCL's mask sampling) come from a
generator seeded by ``(seed, step)``: the same in every process and after a resume, and made
for every process's rows of the global batch (:class:`~contrastkit.timeseries.views.Shard`), so
``W`` processes × ``B`` series draw what one process draws for ``W·B``. Dropout uses torch's
random state (which the path keeps in its checkpoints). The encoder has no BatchNorm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from contrastkit.config import AutoTCLConfig, COMETConfig, Config
from contrastkit.errors import ContrastkitError, unknown_name
from contrastkit.options import check_integer, check_number, is_integer
from contrastkit.tasks.base import IN_MEMORY, Step, Task
from contrastkit.timeseries.data import TimeSeriesData, load_timeseries
from contrastkit.timeseries.encoder import MASK_MODES
from contrastkit.timeseries.eval import one_nn_accuracy, svm_accuracy
from contrastkit.timeseries.model import (
    COMET_LEVELS,
    SeriesGroups,
    TS2Vec,
    augment_strengths,
    collate_groups,
    prepare_series,
)

__all__ = ["AutoTCLTask", "COMETTask", "TS2VecTask", "TimeSeriesTask"]

AUG_OBJECTIVES = ("pri", "adversarial")


class TimeSeriesTask(Task):
    """What TS2Vec, AutoTCL and COMET share: data, encoder, weight average, evaluation."""

    grad_cache_refusal = (
        "the time-series losses contrast the time steps of each series' two crops or passes, "
        "which chunks of whole-series embeddings do not cover"
    )

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        check_options(config)
        self._prepared: tuple[TimeSeriesData, Dataset] | None = None

    # -- data ----------------------------------------------------------------------------------
    def load_data(self, data: TimeSeriesData | None = None) -> TimeSeriesData:
        if data is None:
            data = load_source(self.config)
        elif not isinstance(data, TimeSeriesData):
            raise ContrastkitError(
                f"{self.config.method} trains on time series; pass a TimeSeriesData "
                f"(load_timeseries or timeseries_from_arrays), not {type(data).__name__}."
            )
        self.train_dataset(data)  # rejects series too short for the crops before any write
        return data

    def train_dataset(self, data: TimeSeriesData) -> Dataset:
        if self._prepared is None or self._prepared[0] is not data:
            o = self.config.timeseries
            series, keep = prepare_series(data.x_train, self.config.method, o.max_train_length)
            if series.shape[1] < 2 ** (o.temporal_unit + 1):
                raise ContrastkitError(
                    f"Training series of length {series.shape[1]} are too short; TS2Vec's crops "
                    f"need at least {2 ** (o.temporal_unit + 1)} time steps (lower "
                    "timeseries.temporal_unit)."
                )
            self._prepared = (data, self._dataset(torch.from_numpy(series), data, keep))
        return self._prepared[1]

    def _dataset(self, series: Tensor, data: TimeSeriesData, keep: np.ndarray) -> Dataset:
        return TensorDataset(series)

    # -- model and training step ---------------------------------------------------------------
    def build_model(self, data: TimeSeriesData) -> TS2Vec:
        return TS2Vec(data.channels, self.config.method, self.config.timeseries)

    def parameter_groups(self, model: nn.Module) -> Any:
        return model.encoder.parameters()  # the weight average `net` is not trained

    def after_optimizer_step(self, model: nn.Module, step: Step) -> None:
        model.update_average()

    def generator(self, step: Step, device: torch.device) -> torch.Generator:
        """The random draws of ``step``: seeded by ``(seed, step)``, alike in every process."""
        state = np.random.SeedSequence([self.config.seed, step.step]).generate_state(1)[0]
        return torch.Generator(device=device).manual_seed(int(state))

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(
        self, model: nn.Module, data: TimeSeriesData
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """TS2Vec's protocol: an RBF SVM on the training split's representations, scored on the
        test split (without labels: the representations only)."""
        arrays = _arrays(model.encode(data.x_train), model.encode(data.x_test), data)
        results: dict[str, Any] = {"feature_dim": int(arrays["train_features"].shape[1])}
        if data.y_train is not None and data.y_test is not None:
            results["svm_accuracy"] = svm_accuracy(
                arrays["train_features"], data.y_train, arrays["test_features"], data.y_test
            )
        return results, arrays

    def encode(self, model: nn.Module, x: Any) -> np.ndarray:
        return model.encode(np.asarray(x))

    def embed(self, model: nn.Module, source: str) -> dict[str, np.ndarray]:
        data = load_timeseries(
            source,
            seed=self.config.data.split_seed,
            test_fraction=self.config.data.test_fraction,
            download=self.config.data.download,
        )
        if data.channels != model.input_dims:
            raise ContrastkitError(
                f"{source!r} has {data.channels} channel(s) but the run was trained on "
                f"{model.input_dims}; embed series with the training data's variables."
            )
        return _arrays(model.encode(data.x_train), model.encode(data.x_test), data)

    def report_sections(self, model: nn.Module | None, data: Any | None) -> list[Any]:
        """The raw-input baseline of the UCR/UEA archives: 1-NN with Euclidean distance."""
        if not isinstance(data, TimeSeriesData) or data.y_train is None or data.y_test is None:
            return []
        from contrastkit.report.html import Section

        splits = (data.x_train, data.y_train, data.x_test, data.y_test)
        rows = [
            ["1-NN ED, per-series z-normalised", f"{one_nn_accuracy(*splits):.3f}"],
            ["1-NN ED, model input", f"{one_nn_accuracy(*splits, znormalize=False):.3f}"],
        ]
        section = Section("timeseries-baseline", "Time-series baseline")
        caption = "held-out test accuracy of raw-input 1-NN"
        section.tables.append((caption, ["baseline", "accuracy"], rows))
        section.paragraphs.append(
            "Compare with svm_accuracy in the evaluation: an RBF SVM on the frozen encoder's "
            "max-pooled representations (TS2Vec's protocol)."
        )
        return [section]


class TS2VecTask(TimeSeriesTask):
    """TS2Vec (Yue et al. 2022): hierarchical contrast of two overlapping random crops."""

    methods = ("ts2vec",)

    def training_loss(self, model: nn.Module, batch: list[Tensor], step: Step) -> Tensor:
        generator = self.generator(step, batch[0].device)
        return model.ts2vec_loss(model.window(batch[0], generator), generator)


class AutoTCLTask(TimeSeriesTask):
    """AutoTCL (Zheng et al. 2024): two optimisers — the encoder's (``optim.*``) and the
    augmentation network's (``optim.*`` at ``timeseries.autotcl.meta_lr``)."""

    methods = ("autotcl",)
    manual_optimization = True

    def optimizers(self, model: nn.Module, build: Callable[..., Any]) -> list[Any]:
        meta_lr = self.config.timeseries.autotcl.meta_lr
        return [build(model.encoder.parameters()), build(model.augmenter.parameters(), lr=meta_lr)]

    def manual_step(
        self,
        model: nn.Module,
        batch: list[Tensor],
        step: Step,
        optimizers: Sequence[Any],
        backward: Callable[[Tensor], None],
    ) -> Tensor:
        """Every ``ratio_step`` steps one augmentation step, then one encoder step on the same
        window of the batch (code ``AutoTCL_CoST.py::fit``). The augmentation network's
        optimiser is stepped unwrapped, so that Lightning's ``global_step`` (and
        ``train.max_steps``) counts training steps, one per encoder step."""
        encoder_optimizer, augmenter_optimizer = optimizers
        generator = self.generator(step, batch[0].device)
        x = model.window(batch[0], generator)
        model.logged = {}
        if step.step % self.config.timeseries.autotcl.ratio_step == 0:
            augmenter_optimizer.zero_grad()
            loss = model.autotcl_augmentation_loss(x, generator)
            if not torch.isfinite(loss):  # the path stops the run with its message
                return loss.detach()
            backward(loss)
            getattr(augmenter_optimizer, "optimizer", augmenter_optimizer).step()
        encoder_optimizer.zero_grad()  # drops what the augmentation loss left on the encoder
        loss = model.autotcl_encoder_loss(x, generator)
        if not torch.isfinite(loss):
            return loss.detach()
        backward(loss)
        encoder_optimizer.step()
        self.after_optimizer_step(model, step)  # the path calls it for automatic steps only
        return loss.detach()

    def may_skip_parameters(self, model: nn.Module) -> bool:
        return True  # each of the two backward passes leaves the other network out


class COMETTask(TimeSeriesTask):
    """COMET (Wang et al. 2023): observation, sample, trial and patient levels; with trial ids a
    training sample is a whole trial (:class:`~contrastkit.timeseries.model.SeriesGroups`). The
    last partial batch of an epoch is kept, as COMET's code does."""

    methods = ("comet",)
    drop_last = False

    def _dataset(self, series: Tensor, data: TimeSeriesData, keep: np.ndarray) -> Dataset:
        ids = (data.trial_ids, data.patient_ids)
        trial, patient = (None if v is None else torch.from_numpy(v[keep]) for v in ids)
        return SeriesGroups(series, trial, patient)

    def collate(self, samples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        return collate_groups(samples)

    def training_loss(self, model: nn.Module, batch: dict[str, Tensor], step: Step) -> Tensor:
        x = batch["x"]
        ids = {k: v for k, v in batch.items() if k != "x"}
        return model.comet_loss(x, ids, self.generator(step, x.device))


def load_source(config: Config) -> TimeSeriesData:
    """The time-series source ``config.data`` names, split as it says."""
    if config.data.source.startswith(IN_MEMORY):
        raise ContrastkitError(
            f"This run was trained on in-memory series ({config.data.source}); pass the same data "
            "through the Python API (fit(resume=..., data=...)) instead of the CLI."
        )
    return load_timeseries(
        config.data.source,
        seed=config.data.split_seed,
        test_fraction=config.data.test_fraction,
        download=config.data.download,
    )


def check_options(config: Config) -> None:
    """Every value of ``config.timeseries`` (and the seed), before any data is read."""
    o, method = config.timeseries, config.method
    if not is_integer(config.seed) or not 0 <= config.seed < 2**32:
        raise ContrastkitError(f"seed must be an integer in [0, 2**32), got {config.seed!r}.")
    check_integer("timeseries.output_dims", o.output_dims, 1)
    check_integer("timeseries.hidden_dims", o.hidden_dims, 1)
    check_integer("timeseries.depth", o.depth, 0)
    check_number("timeseries.dropout", o.dropout, 0.0, 1.0, high_open=True)
    if o.max_train_length is not None:
        check_integer("timeseries.max_train_length", o.max_train_length, 2)
    check_integer("timeseries.temporal_unit", o.temporal_unit, 0)
    check_number("timeseries.alpha", o.alpha, 0.0, 1.0)
    augment_strengths(o.augment, method)
    for owner, default in (("autotcl", AutoTCLConfig()), ("comet", COMETConfig())):
        if method != owner and getattr(o, owner) != default:
            raise ContrastkitError(
                f"timeseries.{owner} applies to {owner} runs only, not {method}; remove it or "
                f"set method={owner}."
            )
    if method == "autotcl":
        _check_autotcl(o.autotcl)
    if method == "comet":
        _check_comet(o.comet)


def _check_autotcl(a: AutoTCLConfig) -> None:
    key = "timeseries.autotcl."
    check_integer(key + "aug_dim", a.aug_dim, 1)
    check_integer(key + "aug_depth", a.aug_depth, 0)
    if a.aug_mask_mode not in MASK_MODES:
        raise unknown_name(f"{key}aug_mask_mode", a.aug_mask_mode, MASK_MODES)
    check_number(key + "meta_lr", a.meta_lr, 0.0, math.inf, low_open=True)
    for name in ("local_weight", "reg_weight", "regular_weight", "gamma_zeta"):
        check_number(key + name, getattr(a, name), 0.0, math.inf)
    check_number(key + "reg_threshold", a.reg_threshold, -math.inf, math.inf)
    check_number(key + "gumbel_bias", a.gumbel_bias, 0.0, 0.5, high_open=True)
    check_integer(key + "ratio_step", a.ratio_step, 1)
    if a.aug_objective not in AUG_OBJECTIVES:
        raise unknown_name(f"{key}aug_objective", a.aug_objective, AUG_OBJECTIVES)
    check_number(key + "temperature", a.temperature, 0.0, math.inf, low_open=True)
    check_integer(key + "local_segments", a.local_segments, 3)
    if a.mask_channels is not None:
        check_integer(key + "mask_channels", a.mask_channels, 1)


def _check_comet(c: COMETConfig) -> None:
    key = "timeseries.comet."
    for name, values in (("factors", c.factors), ("masks", c.masks)):
        if len(values) != len(COMET_LEVELS):
            raise ContrastkitError(
                f"{key}{name} needs one entry per level ({', '.join(COMET_LEVELS)}), got {values!r}."
            )
    for level, factor in zip(COMET_LEVELS, c.factors, strict=True):
        check_number(f"{key}factors ({level})", factor, 0.0, math.inf)
    for mode in c.masks:
        if mode not in MASK_MODES:
            raise unknown_name(f"{key}masks entry", str(mode), MASK_MODES)
    check_number(key + "id_temperature", c.id_temperature, 0.0, math.inf, low_open=True)


def _arrays(train: np.ndarray, test: np.ndarray, data: TimeSeriesData) -> dict[str, np.ndarray]:
    """``embeddings.npz``'s arrays: both splits' features and the labels there are."""
    arrays = {"train_features": train, "test_features": test}
    for split in ("train", "test"):
        labels = getattr(data, f"y_{split}")
        if labels is not None:
            arrays[f"{split}_labels"] = np.asarray(labels)
    return arrays
