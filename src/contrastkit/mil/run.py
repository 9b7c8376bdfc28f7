"""``contrastkit fit`` for multiple-instance learning: bags of real images, then SC-MIL, attention
MIL or INS, scored on held-out bags (bag AUC, instance accuracy / balanced accuracy / AUC).

The workflow is ``benchmarks/mil.py``'s, driven by a config: ``data.source`` names a labelled
image source of :func:`contrastkit.load_data` (``fashion-mnist``, ``digits``, ...); train bags are
drawn from its train split and test bags from its test split (:func:`~contrastkit.mil.image_bags`,
once, with ``mil.bag_seed``); ``seed`` varies training only. The ``mil:`` section holds the
options of :class:`MILOptions`; each method accepts only the options it uses.

* ``scmil`` — SC-MIL (Juyal et al. 2024): ``α_t · L_out + (1 − α_t) · CE`` on ``views`` augmented
  views of every bag (:class:`~contrastkit.mil.SCMILLoss`, α by ``schedule``).
* ``abmil`` — gated attention MIL (Ilse et al. 2018, eq. 9) with cross-entropy: the same model and
  loop with ``SCMILLoss(schedule="ce")`` and one view.
* ``ins`` — INS (Qu et al. 2023): instance-level weakly supervised contrast with prototype
  pseudo-labels (:func:`~contrastkit.mil.fit_ins`); bag score = mean (or max) instance probability.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from contrastkit.config import Config
from contrastkit.data import ImageData, load_data
from contrastkit.errors import ContrastkitError, unknown_name
from contrastkit.mil.bags import Bags, image_bags
from contrastkit.mil.ins import INSModel, fit_ins, predict_ins
from contrastkit.mil.metrics import bag_auc, mil_metrics
from contrastkit.mil.pooling import POOLING
from contrastkit.mil.scmil import SCHEDULES, MILModel, SCMILLoss, fit_mil, predict_mil
from contrastkit.nn.backbones import build_backbone
from contrastkit.options import check_integer, check_number, check_option_keys, is_integer
from contrastkit.train.loops import LoopResult, refuse_trainer_options
from contrastkit.views.image import RECIPES, build_augmentation

__all__ = ["METHODS", "MILOptions", "check_config", "fit_config", "make_mil_bags"]

METHODS = ("scmil", "abmil", "ins")


@dataclass(frozen=True)
class MILOptions:
    """The config's ``mil:`` section; defaults are ``benchmarks/mil.py``'s.

    Bags (every method): ``target`` is the class (name or index; a list for several) whose
    images make an instance positive; ``train_bags``/``test_bags`` bags of ``bag_size``
    instances (``[lo, hi]``: uniform sizes), ``positive_fraction`` of a positive bag's instances
    of the target class (witness rate), ``positive_bag_rate`` of the bags positive, drawn with
    ``bag_seed``. Encoder (every method): a backbone of :func:`contrastkit.nn.build_backbone`
    with ``encoder_options`` (``None``: width 16 for ``small-cnn``), views by the augmentation
    recipe ``augment`` with ``augment_options``; AdamW for ``epochs`` epochs with ``lr``,
    ``weight_decay``, batches of ``batch_bags`` bags (INS: its warm-up bag loss).

    Bag models (``scmil``, ``abmil``): ``pooling``, ``attention_dim``, ``keep`` (share of a
    bag's instances each view keeps). ``scmil`` only: ``temperature`` (τ of ``L_out``, default
    0.1), ``schedule`` (a name of :data:`~contrastkit.mil.SCHEDULES` or a constant α in [0, 1]),
    ``views``, ``projection_dim``. ``ins`` only: ``batch_instances``, ``queue``, ``low_dim``,
    ``momentum``, ``warmup_epochs``, ``temperature`` (default 0.07), ``loss_weight`` (λ),
    ``bag_weight`` (warm-up bag loss), ``bag_score`` (``"mean"`` or ``"max"`` for ``bag_auc``).
    """

    target: int | str | list = "Pullover"
    train_bags: int = 300
    test_bags: int = 300
    bag_size: int | list = 10
    positive_fraction: float = 0.2
    positive_bag_rate: float = 0.3
    bag_seed: int = 0
    encoder: str = "small-cnn"
    encoder_options: dict | None = None
    augment: str = "small-gray"
    augment_options: dict = field(default_factory=dict)
    epochs: int = 12
    batch_bags: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    pooling: str = "attention"
    attention_dim: int = 64
    keep: float = 1.0
    temperature: float | None = None
    schedule: str | float = "parabolic"
    views: int = 2
    projection_dim: int = 64
    batch_instances: int = 128
    queue: int = 1024
    low_dim: int = 64
    momentum: float = 0.999
    warmup_epochs: int = 1
    loss_weight: float = 0.5
    bag_weight: float = 0.5
    bag_score: str = "mean"

    @classmethod
    def from_dict(cls, raw: dict[str, Any], method: str) -> MILOptions:
        """Validated options of ``method`` from a config's ``mil:`` mapping."""
        if method not in METHODS:
            raise unknown_name("MIL method", method, METHODS)
        check_option_keys("mil", raw, OPTIONS[method], method=method, by_method=OPTIONS)
        options = cls(**raw)
        options._check()
        if options.temperature is None:
            options = dataclasses.replace(options, temperature=0.07 if method == "ins" else 0.1)
        return options

    def _check(self) -> None:
        check_integer("mil.train_bags", self.train_bags, 2)
        check_integer("mil.test_bags", self.test_bags, 2)
        check_integer("mil.bag_seed", self.bag_seed, 0)
        for name in (
            "epochs",
            "batch_bags",
            "attention_dim",
            "views",
            "projection_dim",
            "queue",
            "low_dim",
        ):
            check_integer(f"mil.{name}", getattr(self, name), 1)
        check_integer("mil.batch_instances", self.batch_instances, 2)
        check_integer("mil.warmup_epochs", self.warmup_epochs, 0)
        check_number("mil.positive_fraction", self.positive_fraction, 0, 1, low_open=True)
        check_number(
            "mil.positive_bag_rate", self.positive_bag_rate, 0, 1, low_open=True, high_open=True
        )
        check_number("mil.keep", self.keep, 0, 1, low_open=True)
        check_number("mil.lr", self.lr, 0, math.inf, low_open=True)
        check_number("mil.weight_decay", self.weight_decay, 0, math.inf)
        check_number("mil.momentum", self.momentum, 0, 1)
        check_number("mil.loss_weight", self.loss_weight, 0, math.inf)
        check_number("mil.bag_weight", self.bag_weight, 0, math.inf)
        if self.temperature is not None:
            check_number("mil.temperature", self.temperature, 0, math.inf, low_open=True)
        bag_size = self.bag_size
        if isinstance(bag_size, list) and len(bag_size) == 2:
            lo, hi = bag_size
        else:
            lo = hi = bag_size
        if not (is_integer(lo) and is_integer(hi) and 1 <= lo <= hi):
            raise ContrastkitError(
                f"mil.bag_size must be an integer ≥ 1 or a pair [lo, hi] with 1 ≤ lo ≤ hi, "
                f"got {bag_size!r}."
            )
        targets = self.target if isinstance(self.target, list) else [self.target]
        if not targets or not all(isinstance(t, str) or is_integer(t) for t in targets):
            raise ContrastkitError(
                f"mil.target must be a class name or index (or a list of them), got {self.target!r}."
            )
        for name in ("encoder", "augment", "pooling", "bag_score"):
            if not isinstance(getattr(self, name), str):
                raise ContrastkitError(f"mil.{name} must be a string, got {getattr(self, name)!r}.")
        if self.encoder_options is not None and not isinstance(self.encoder_options, dict):
            raise ContrastkitError(
                f"mil.encoder_options must be a mapping, got {self.encoder_options!r}."
            )
        if not isinstance(self.augment_options, dict):
            raise ContrastkitError(
                f"mil.augment_options must be a mapping, got {self.augment_options!r}."
            )
        if self.augment not in RECIPES:
            raise unknown_name("mil.augment recipe", self.augment, RECIPES)
        if self.pooling not in POOLING:
            raise unknown_name("mil.pooling", self.pooling, POOLING)
        if self.bag_score not in ("mean", "max"):
            raise unknown_name("mil.bag_score", self.bag_score, ("mean", "max"))
        if isinstance(self.schedule, str):
            if self.schedule not in SCHEDULES:
                raise unknown_name("mil.schedule", self.schedule, SCHEDULES)
        elif isinstance(self.schedule, bool) or not isinstance(self.schedule, int | float):
            raise ContrastkitError(
                f"mil.schedule must be a schedule name or a constant α in [0, 1], got "
                f"{self.schedule!r}."
            )
        else:
            check_number("mil.schedule", self.schedule, 0, 1, interval="in [0, 1] (a constant α)")


_BAGS = (
    "target",
    "train_bags",
    "test_bags",
    "bag_size",
    "positive_fraction",
    "positive_bag_rate",
    "bag_seed",
)
_TRAINING = (
    "encoder",
    "encoder_options",
    "augment",
    "augment_options",
    "epochs",
    "batch_bags",
    "lr",
    "weight_decay",
)
_BAG_MODEL = ("pooling", "attention_dim", "keep")
#: method → the ``mil:`` options it uses
OPTIONS: dict[str, tuple[str, ...]] = {
    "scmil": (
        *_BAGS,
        *_TRAINING,
        *_BAG_MODEL,
        "temperature",
        "schedule",
        "views",
        "projection_dim",
    ),
    "abmil": (*_BAGS, *_TRAINING, *_BAG_MODEL),
    "ins": (
        *_BAGS,
        *_TRAINING,
        "batch_instances",
        "queue",
        "low_dim",
        "momentum",
        "warmup_epochs",
        "temperature",
        "loss_weight",
        "bag_weight",
        "bag_score",
    ),
}


# ---------------------------------------------------------------------------------------------
# config → data, bags, model


def _check_run_config(config: Config) -> None:
    batch = "mil.batch_instances" if config.method == "ins" else "mil.batch_bags"
    refuse_trainer_options(config, "mil.epochs", batch)


def _load_images(config: Config) -> ImageData:
    """``config.data.source``'s images."""
    d = config.data
    return load_data(
        d.source,
        seed=d.split_seed,
        test_fraction=d.test_fraction,
        image_size=d.image_size,
        download=d.download,
    )


def _targets(options: MILOptions, data: ImageData) -> list[int]:
    """Class indices of ``mil.target`` (names via ``data.classes``, or indices)."""
    n_classes = data.num_classes or 0
    out = []
    for target in options.target if isinstance(options.target, list) else [options.target]:
        if isinstance(target, str):
            names = list(data.classes or ())
            if target in names:
                out.append(names.index(target))
                continue
            if target.strip().isdigit() and not names:
                target = int(target)
            else:
                raise unknown_name(f"class of {data.name} (mil.target)", target, names)
        if not 0 <= target < n_classes:
            raise ContrastkitError(
                f"mil.target {target} is not a class index of {data.name} (0–{n_classes - 1})."
            )
        out.append(int(target))
    return out


def make_mil_bags(options: MILOptions, data: ImageData) -> tuple[Bags, Bags]:
    """Train bags from ``data``'s train split and test bags from its test split."""
    if not isinstance(data, ImageData):
        raise ContrastkitError(
            f"MIL runs need labelled ImageData (from contrastkit.load_data), got "
            f"{type(data).__name__}."
        )
    if not data.has_labels or data.y_test is None:
        raise ContrastkitError(
            f"{data.name} has no labels; MIL bags need a labelled image source (e.g. digits, "
            "fashion-mnist)."
        )
    targets = _targets(options, data)
    size = tuple(options.bag_size) if isinstance(options.bag_size, list) else options.bag_size
    try:
        return image_bags(
            data,
            targets[0] if len(targets) == 1 else targets,
            n_train_bags=options.train_bags,
            n_test_bags=options.test_bags,
            bag_size=size,
            positive_fraction=options.positive_fraction,
            positive_bag_rate=options.positive_bag_rate,
            seed=options.bag_seed,
        )
    except ContrastkitError as error:  # e.g. too few images: say which options to change
        raise ContrastkitError(
            f"Cannot draw the bags from {data.name}: {str(error).rstrip('.')} (mil.train_bags, "
            "mil.test_bags, mil.bag_size, mil.positive_fraction)."
        ) from None


def _encoder(options: MILOptions, data: ImageData) -> tuple[nn.Module, int]:
    extra = options.encoder_options
    if extra is None:
        extra = {"width": 16} if options.encoder == "small-cnn" else {}
    return build_backbone(
        options.encoder, in_channels=data.channels, image_size=data.image_size, **extra
    )


def _augmentations(options: MILOptions, data: ImageData) -> tuple[nn.Module, nn.Module]:
    """``(views, weak)``: the recipe, and INS's weak query view (crop scale 0.8–1, no jitter)."""
    size, channels = data.image_size, data.channels
    strong = build_augmentation(
        options.augment, image_size=size, channels=channels, **options.augment_options
    )
    if options.augment == "none":
        return strong, strong
    weak_options = {**options.augment_options, "crop_scale": (0.8, 1.0), "jitter_strength": 0}
    weak = build_augmentation(options.augment, image_size=size, channels=channels, **weak_options)
    return strong, weak


def check_config(config: Config, data: ImageData | None = None) -> ImageData:
    """Everything that can reject a MIL config, before a run directory is written: the method,
    the ``mil:`` options, the image source, the target class, whether the bags can be drawn,
    the encoder and the augmentation. Returns the images (loaded unless given) for
    :func:`fit_config`."""
    options = MILOptions.from_dict(dict(config.mil), config.method)
    _check_run_config(config)
    data = _load_images(config) if data is None else data
    make_mil_bags(options, data)
    _encoder(options, data)
    _augmentations(options, data)
    return data


# ---------------------------------------------------------------------------------------------
# training and evaluation


def fit_config(config: Config, data: ImageData | None = None) -> LoopResult:
    """Train ``config.method`` on bags of ``data`` (default: ``config.data.source``) and score it
    on the test bags.

    Metrics: ``bag_auc``, ``instance_accuracy``, ``instance_balanced_accuracy``,
    ``instance_auc`` (:func:`~contrastkit.mil.mil_metrics`; INS also ``bag_auc_mean`` and
    ``bag_auc_max``), ``final_loss``, sizes and seconds. Arrays: bag representations and labels
    of both splits (``{train,test}_features``, ``{train,test}_labels``: pooled ``h`` of the bag
    models, mean-pooled encoder features for INS) and the test scores (``test_bag_scores``,
    ``test_instance_scores``, ``test_instance_labels``, ``test_bag_index``).
    """
    options = MILOptions.from_dict(dict(config.mil), config.method)
    _check_run_config(config)
    if data is None:
        data = _load_images(config)
    train, test = make_mil_bags(options, data)
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    torch.manual_seed(config.seed)
    encoder, feature_dim = _encoder(options, data)
    augment, weak = _augmentations(options, data)
    losses: list[dict[str, float]] = []
    started = time.perf_counter()
    if config.method == "ins":
        model: nn.Module = INSModel(
            encoder,
            feature_dim,
            low_dim=options.low_dim,
            queue_size=options.queue,
            momentum=options.momentum,
        )
        fit_ins(
            model,
            train,
            epochs=options.epochs,
            warmup_epochs=options.warmup_epochs,
            batch_size=options.batch_instances,
            batch_bags=options.batch_bags,
            lr=options.lr,
            weight_decay=options.weight_decay,
            loss_weight=options.loss_weight,
            bag_weight=options.bag_weight,
            temperature=options.temperature,
            weak_augment=weak,
            strong_augment=augment,
            seed=config.seed,
            log=lambda _, sums: losses.append(sums),
        )
        train_seconds = time.perf_counter() - started
        metrics, arrays = _evaluate_ins(model, train, test, options)
        last = losses[-1]
        metrics["final_loss"] = last["cls"] + options.loss_weight * last["cont"]
        metrics["pseudo_positive"] = last["pseudo_positive"]
        steps = _ins_steps(train, options)
    else:
        scmil = config.method == "scmil"
        loss = SCMILLoss(options.temperature, schedule=options.schedule if scmil else "ce")
        model = MILModel(
            encoder,
            feature_dim,
            pooling=options.pooling,
            projection_dim=options.projection_dim,
            attention_dim=options.attention_dim,
        )
        fit_mil(
            model,
            train,
            epochs=options.epochs,
            batch_bags=options.batch_bags,
            lr=options.lr,
            weight_decay=options.weight_decay,
            loss=loss,
            n_views=options.views if scmil else 1,
            keep=options.keep,
            augment=augment,
            seed=config.seed,
            log=lambda _, sums: losses.append(sums),
        )
        train_seconds = time.perf_counter() - started
        metrics, arrays = _evaluate_bag_model(model, train, test)
        metrics["final_loss"] = losses[-1]["loss"]
        steps = options.epochs * math.ceil(train.n_bags / options.batch_bags)
    metrics |= {
        "feature_dim": feature_dim,
        "train_bags": train.n_bags,
        "test_bags": test.n_bags,
        "test_instances": test.n_instances,
        "epochs": options.epochs,
        "steps": steps,
        "train_seconds": round(train_seconds, 1),
    }
    return LoopResult(metrics, model, arrays, steps)


def _ins_steps(train: Bags, options: MILOptions) -> int:
    """Optimiser steps of :func:`fit_ins`: warm-up epochs see the instances of positive bags
    (plus the bag-loss batches), later epochs every instance."""
    positive_rows = int((train.bag_labels[train.bag_index] == 1).sum())
    warmup = min(options.warmup_epochs, options.epochs)
    per_warmup = math.ceil(positive_rows / options.batch_instances)
    if options.bag_weight > 0:
        per_warmup += math.ceil(train.n_bags / options.batch_bags)
    later = math.ceil(train.n_instances / options.batch_instances)
    return warmup * per_warmup + (options.epochs - warmup) * later


@torch.no_grad()
def _bag_representations(model: MILModel, bags: Bags, batch_bags: int = 64) -> Tensor:
    """Pooled bag representations ``h [n_bags, F]`` (eval mode)."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, bags.n_bags, batch_bags):
        batch = bags.batch(torch.arange(start, min(start + batch_bags, bags.n_bags)))
        out.append(model(batch.x, batch.bag_index, batch.n_bags).h)
    model.train(was_training)
    return torch.cat(out)


def _score_arrays(bag_scores: Tensor, instance_scores: Tensor, test: Bags) -> dict[str, Any]:
    return {
        "test_bag_scores": bag_scores.numpy(),
        "test_instance_scores": instance_scores.numpy(),
        "test_instance_labels": test.instance_labels.numpy(),
        "test_bag_index": test.bag_index.numpy(),
    }


def _evaluate_bag_model(
    model: MILModel, train: Bags, test: Bags
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    bag_scores, instance_scores = predict_mil(model, test)
    metrics: dict[str, Any] = mil_metrics(
        bag_scores, test.bag_labels, instance_scores, test.instance_labels
    )
    arrays = {
        "train_features": _bag_representations(model, train).numpy(),
        "train_labels": train.bag_labels.numpy(),
        "test_features": _bag_representations(model, test).numpy(),
        "test_labels": test.bag_labels.numpy(),
        **_score_arrays(bag_scores, instance_scores, test),
    }
    return metrics, arrays


@torch.no_grad()
def _mean_pooled_features(model: INSModel, bags: Bags, batch_size: int = 512) -> Tensor:
    """Mean over each bag of the INS encoder's instance features (eval mode)."""
    was_training = model.training
    model.eval()
    x = bags.images[bags.instance_index]
    features = torch.cat(
        [model.encoder(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    )
    model.train(was_training)
    pooled = features.new_zeros(bags.n_bags, features.shape[1]).index_add(
        0, bags.bag_index, features
    )
    return pooled / bags.sizes[:, None].to(features.dtype)


def _evaluate_ins(
    model: INSModel, train: Bags, test: Bags, options: MILOptions
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    scores = predict_ins(model, test)
    chosen = scores[f"bag_{options.bag_score}"]
    metrics: dict[str, Any] = mil_metrics(
        chosen, test.bag_labels, scores["instance"], test.instance_labels
    )
    for kind in ("mean", "max"):
        metrics[f"bag_auc_{kind}"] = bag_auc(scores[f"bag_{kind}"], test.bag_labels)
    arrays = {
        "train_features": _mean_pooled_features(model, train).numpy(),
        "train_labels": train.bag_labels.numpy(),
        "test_features": _mean_pooled_features(model, test).numpy(),
        "test_labels": test.bag_labels.numpy(),
        **_score_arrays(chosen, scores["instance"], test),
    }
    return metrics, arrays
