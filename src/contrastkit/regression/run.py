"""``contrastkit fit`` for continuous targets: plain L1 regression, ConR, SupReMix on a real
long-tailed table, scored under the imbalanced-regression protocol (MAE overall and per
many/medium/few-shot region, Yang et al. 2021).

The workflow is ``benchmarks/regression.py``'s, driven by a config: ``data.source`` names a table
of :data:`~contrastkit.regression.TABLES` (``diamonds``, ``computers``, ``ames``; ``table:NAME``
is accepted too), split once with ``data.split_seed`` (``regression.n_train`` rows for training,
``regression.n_test`` of the rest for testing); ``seed`` varies training only. The
``regression:`` section holds the options of :class:`RegressionOptions`; each method accepts only
the options it uses.

* ``regression`` — an MLP with a linear head trained with L1 on a SCARF-corrupted view.
* ``conr`` — the same plus ``β · L_ConR`` (Keramati et al. 2024, eq. 4) on two more views.
* ``supremix`` — SupReMix pre-training (Wu et al. 2023; SupCon ``L_out`` with mixtures as hard
  positives/negatives); ``max_pos_mix = max_neg_mix = 0`` is SupCon on targets.

Every method is probed by ridge regression on its frozen encoder features
(:func:`~contrastkit.regression.regression_probe`); the methods with a head are also scored by
their own predictions. Windows (ConR's ω, SupReMix's δ) default to one bin of the shot regions,
in standard deviations of the training targets (targets are standardised inside).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from contrastkit.config import Config
from contrastkit.errors import ContrastkitError, unknown_name
from contrastkit.options import check_integer, check_number, check_option_keys
from contrastkit.regression.conr import ConRLoss
from contrastkit.regression.probe import ALPHAS, regression_metrics, regression_probe
from contrastkit.regression.tables import TABLES, RegressionTable, load_table
from contrastkit.regression.train import MLPEncoder, encode, fit_regression, fit_supremix
from contrastkit.train.loops import LoopResult, refuse_trainer_options

__all__ = ["METHODS", "OPTIONS", "RegressionOptions", "check_config", "fit_config", "table_name"]

METHODS = ("regression", "conr", "supremix")
TABLE_PREFIX = "table:"


@dataclass(frozen=True)
class RegressionOptions:
    """The config's ``regression:`` section; defaults are ``benchmarks/regression.py``'s.

    Every method: ``n_train`` training rows (``null``: 80 %), ``n_test`` test rows (``null``:
    every other row); an MLP encoder ``d → hidden_dim → hidden_dim → feature_dim``; AdamW for
    ``epochs`` epochs with ``lr``, ``weight_decay``, batches of ``batch_size`` rows; SCARF views
    (``rate`` of the entries from other rows, plus Gaussian ``noise``).

    ``conr``: ``beta`` (β), ``window`` (ω; ``null``: one bin), ``temperature`` (default 0.07),
    ``push`` (e), ``pushing`` (``"exp"``/``"linear"``), ``denominator``
    (``"reference"``/``"clean"``). ``supremix``: ``temperature`` (default 0.1),
    ``projection_dim``, ``max_pos_mix``/``max_neg_mix`` (mixtures per anchor; ``null``: all, 0:
    none), ``tolerance`` (ε), ``delta`` (δ; ``null``: one bin), ``lambda_max``, ``renormalize``,
    ``denominator`` (``"supcon"``/``"per_positive"``).
    """

    n_train: int | None = 8000
    n_test: int | None = None
    hidden_dim: int = 128
    feature_dim: int = 64
    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    rate: float = 0.3
    noise: float = 0.1
    beta: float = 4.0
    window: float | None = None
    temperature: float | None = None
    push: float = 0.2
    pushing: str = "exp"
    denominator: str | None = None
    projection_dim: int = 32
    max_pos_mix: int | None = 16
    max_neg_mix: int | None = 16
    tolerance: float = 0.0
    delta: float | None = None
    lambda_max: float = 0.9
    renormalize: bool = True

    @classmethod
    def from_dict(cls, raw: dict[str, Any], method: str) -> RegressionOptions:
        """Validated options of ``method`` from a config's ``regression:`` mapping, with the
        method's defaults filled in (``temperature``, ``denominator``)."""
        if method not in METHODS:
            raise unknown_name("continuous-target method", method, METHODS)
        check_option_keys("regression", raw, OPTIONS[method], method=method, by_method=OPTIONS)
        options = cls(**raw)
        options._check(method)
        defaults = _METHOD_DEFAULTS.get(method, {})
        return dataclasses.replace(
            options, **{k: v for k, v in defaults.items() if getattr(options, k) is None}
        )

    def _check(self, method: str) -> None:
        for name, low in (("n_train", 3), ("n_test", 1), ("max_pos_mix", 0), ("max_neg_mix", 0)):
            value = getattr(self, name)
            if value is not None:
                check_integer(f"regression.{name}", value, low)
        for name, low in (
            ("hidden_dim", 1),
            ("feature_dim", 1),
            ("epochs", 1),
            ("batch_size", 2),
            ("projection_dim", 1),
        ):
            check_integer(f"regression.{name}", getattr(self, name), low)
        unit = "[0, 1]"  # this section's wording: "must be a number [0, 1]"
        check_number("regression.lr", self.lr, 0, math.inf, low_open=True)
        check_number("regression.weight_decay", self.weight_decay, 0, math.inf)
        check_number("regression.rate", self.rate, 0, 1, interval=unit)
        check_number("regression.noise", self.noise, 0, math.inf)
        check_number("regression.beta", self.beta, 0, math.inf)
        check_number("regression.push", self.push, 0, math.inf)
        check_number("regression.tolerance", self.tolerance, 0, math.inf)
        check_number("regression.lambda_max", self.lambda_max, 0, 1, interval=unit)
        for name in ("window", "delta", "temperature"):
            if getattr(self, name) is not None:
                check_number(f"regression.{name}", getattr(self, name), 0, math.inf, low_open=True)
        if not isinstance(self.renormalize, bool):
            raise ContrastkitError(
                f"regression.renormalize must be true or false, got {self.renormalize!r}."
            )
        if self.pushing not in ("exp", "linear"):
            raise unknown_name("regression.pushing", str(self.pushing), ("exp", "linear"))
        if self.denominator is not None:
            choices = ("supcon", "per_positive") if method == "supremix" else ("reference", "clean")
            if self.denominator not in choices:
                raise unknown_name(
                    f"regression.denominator of {method}", str(self.denominator), choices
                )


_COMMON = (
    "n_train",
    "n_test",
    "hidden_dim",
    "feature_dim",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "rate",
    "noise",
)
#: method → the ``regression:`` options it uses
OPTIONS: dict[str, tuple[str, ...]] = {
    "regression": _COMMON,
    "conr": (*_COMMON, "beta", "window", "temperature", "push", "pushing", "denominator"),
    "supremix": (
        *_COMMON,
        "temperature",
        "projection_dim",
        "max_pos_mix",
        "max_neg_mix",
        "tolerance",
        "delta",
        "lambda_max",
        "renormalize",
        "denominator",
    ),
}
_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "conr": {"temperature": 0.07, "denominator": "reference"},
    "supremix": {"temperature": 0.1, "denominator": "supcon"},
}


def table_name(source: str) -> str:
    """The table of ``data.source``: ``"diamonds"`` or ``"table:diamonds"``."""
    name = source.strip()
    if name.lower().startswith(TABLE_PREFIX):
        name = name[len(TABLE_PREFIX) :].strip()
    if name not in TABLES:
        raise unknown_name("regression table (data.source)", name, TABLES)
    return name


def _check_run_config(config: Config) -> None:
    refuse_trainer_options(config, "regression.epochs", "regression.batch_size")


def _load(config: Config, options: RegressionOptions) -> RegressionTable:
    return load_table(
        table_name(config.data.source),
        n_train=options.n_train,
        n_test=options.n_test,
        seed=config.data.split_seed,
    )


def check_config(config: Config, data: RegressionTable | None = None) -> RegressionTable:
    """Everything that can reject a continuous-target config, before a run directory is written:
    the method, the ``regression:`` options, the table and its split sizes. Returns the table
    (loaded unless given) for :func:`fit_config`."""
    options = RegressionOptions.from_dict(dict(config.regression), config.method)
    _check_run_config(config)
    return _load(config, options) if data is None else data


def fit_config(config: Config, data: RegressionTable | None = None) -> LoopResult:
    """Train ``config.method`` on ``data`` (default: the table of ``config.data.source``) and
    score it on the test rows.

    Metrics: ``probe_mae``, ``probe_mae_{many,medium,few}`` and ``probe_alpha`` (ridge on frozen
    encoder features), for ``regression``/``conr`` also ``head_mae``, ``head_mae_{many,medium,
    few}`` (the model's own predictions), the test rows per region ``n_{many,medium,few}``,
    ``final_loss`` and seconds; a region without test rows has MAE ``null``. Arrays:
    ``{train,test}_features`` (frozen encoder), ``{train,test}_targets``,
    ``test_probe_predictions`` and, with a head, ``test_predictions``.
    """
    options = RegressionOptions.from_dict(dict(config.regression), config.method)
    _check_run_config(config)
    if data is None:
        data = _load(config, options)
    elif not isinstance(data, RegressionTable):
        raise ContrastkitError(
            f"Continuous-target runs need a RegressionTable (from load_table), got "
            f"{type(data).__name__}."
        )
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    torch.manual_seed(config.seed)
    bin_std = data.bin_width / float(data.y_train.std())  # one bin, in target std units
    encoder = MLPEncoder(data.x_train.shape[1], options.hidden_dim, options.feature_dim)
    common = dict(
        encoder=encoder,
        epochs=options.epochs,
        batch_size=options.batch_size,
        lr=options.lr,
        weight_decay=options.weight_decay,
        rate=options.rate,
        noise=options.noise,
        seed=config.seed,
    )
    losses: list[dict[str, float]] = []
    started = time.perf_counter()
    predictions = None
    if config.method == "supremix":
        fit_supremix(
            data.x_train,
            data.y_train,
            projection_dim=options.projection_dim,
            temperature=options.temperature,
            tolerance=options.tolerance,
            max_pos_mix=options.max_pos_mix,
            max_neg_mix=options.max_neg_mix,
            delta=bin_std if options.delta is None else options.delta,
            lambda_max=options.lambda_max,
            renormalize=options.renormalize,
            denominator=options.denominator,
            log=lambda _, sums: losses.append(sums),
            **common,
        )
        model: nn.Module = encoder
    else:
        conr = None
        if config.method == "conr":
            conr = ConRLoss(
                options.beta,
                window=bin_std if options.window is None else options.window,
                temperature=options.temperature,
                push=options.push,
                pushing=options.pushing,
                denominator=options.denominator,
            )
        model = fit_regression(
            data.x_train, data.y_train, conr=conr, log=lambda _, s: losses.append(s), **common
        )
        predictions = model.predict(data.x_test)
    train_seconds = time.perf_counter() - started
    train_features, test_features = encode(encoder, data.x_train), encode(encoder, data.x_test)
    metrics: dict[str, Any] = {}
    if predictions is not None:
        head = regression_metrics(predictions, data.y_test, data.y_train, data.bin_width)
        metrics |= {f"head_{k}": v for k, v in head.items() if not k.startswith("n_")}
    probe = regression_probe(
        train_features, data.y_train, test_features, data.y_test, bin_width=data.bin_width
    )
    metrics |= {f"probe_{k}": v for k, v in probe.items() if not k.startswith("n_")}
    metrics |= {k: v for k, v in probe.items() if k.startswith("n_")}
    steps = options.epochs * _batches_per_epoch(len(data.x_train), options.batch_size)
    metrics |= {
        "final_loss": sum(losses[-1].values()) if losses else None,
        "feature_dim": options.feature_dim,
        "n_train": len(data.x_train),
        "n_test": len(data.x_test),
        "bin_width": data.bin_width,
        "epochs": options.epochs,
        "steps": steps,
        "train_seconds": round(train_seconds, 1),
    }
    arrays = {
        "train_features": train_features.numpy(),
        "train_targets": data.y_train.numpy(),
        "test_features": test_features.numpy(),
        "test_targets": data.y_test.numpy(),
        "test_probe_predictions": probe_predictions(train_features, data.y_train, test_features),
    }
    if predictions is not None:
        arrays["test_predictions"] = predictions.numpy()
    # NaN (a region without test rows) is not JSON: results.json says null
    metrics = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()}
    return LoopResult(metrics, model, arrays, steps)


def probe_predictions(train_features: Any, train_targets: Any, test_features: Any) -> np.ndarray:
    """The test predictions of :func:`~contrastkit.regression.regression_probe`'s model
    (``StandardScaler`` + ``RidgeCV`` over the same α grid), which returns only its metrics."""
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
    model.fit(np.asarray(train_features, np.float64), np.asarray(train_targets, np.float64))
    return model.predict(np.asarray(test_features, np.float64)).astype(np.float32)


def _batches_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps per epoch of the table loops: a last batch of one row joins the previous
    one (``regression.train._batches``, kept for BatchNorm)."""
    batches = math.ceil(n / batch_size)
    return batches - 1 if batches > 1 and n % batch_size == 1 else batches
