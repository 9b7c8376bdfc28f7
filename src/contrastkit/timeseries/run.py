"""One call from data to test accuracy: train a method, encode both splits, run the SVM protocol.

This is the entry point for the CLI and the benchmark: ``fit_evaluate(load_timeseries(spec),
method=..., seed=..., n_iters=...)``.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from contrastkit.errors import ContrastkitError, unknown_name
from contrastkit.timeseries.data import TimeSeriesData
from contrastkit.timeseries.eval import svm_accuracy
from contrastkit.timeseries.model import TS2Vec, default_iters
from contrastkit.train.loops import LoopResult, refuse_trainer_options

__all__ = ["MODEL_OPTIONS", "TimeSeriesResult", "embed_config", "fit_evaluate"]

#: keyword options ``fit_evaluate`` passes on to :class:`TS2Vec` (a config's ``timeseries:`` keys)
MODEL_OPTIONS = tuple(
    name
    for name in inspect.signature(TS2Vec.__init__).parameters
    if name not in ("self", "input_dims", "method", "seed")
)


@dataclass(frozen=True, eq=False)
class TimeSeriesResult:
    """What :func:`fit_evaluate` returns: SVM test accuracy (``None`` without labels), the
    trained model, both splits' instance representations, losses and wall-clock seconds."""

    accuracy: float | None
    model: TS2Vec
    train_repr: np.ndarray
    test_repr: np.ndarray
    loss_log: list[float]
    n_iters: int
    train_seconds: float
    eval_seconds: float

    def metrics(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        return {
            "method": self.model.method,
            "seed": self.model.seed,
            "svm_accuracy": self.accuracy,
            "n_iters": self.n_iters,
            "final_loss": self.loss_log[-1] if self.loss_log else None,
            "train_seconds": round(self.train_seconds, 2),
            "eval_seconds": round(self.eval_seconds, 2),
        }


def fit_evaluate(
    data: TimeSeriesData,
    *,
    method: str = "ts2vec",
    seed: int = 0,
    n_iters: int | None = None,
    num_threads: int | None = None,
    trial_ids: np.ndarray | None = None,
    patient_ids: np.ndarray | None = None,
    verbose: bool = False,
    **options: Any,
) -> TimeSeriesResult:
    """Train ``TS2Vec(data.channels, method=method, seed=seed, **options)`` on the training
    split for ``n_iters`` iterations (default: TS2Vec's 200/600 rule), then report the SVM
    protocol's test accuracy on its max-pooled representations."""
    if not isinstance(data, TimeSeriesData):
        raise ContrastkitError(
            f"fit_evaluate needs TimeSeriesData (from load_timeseries), got {type(data).__name__}."
        )
    for name in options:
        if name not in MODEL_OPTIONS:
            raise unknown_name("time-series model option", name, MODEL_OPTIONS)
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    model = TS2Vec(data.channels, method=method, seed=seed, **options)  # type: ignore[arg-type]
    iters = default_iters(data.x_train) if n_iters is None else n_iters
    started = time.perf_counter()
    model.fit(
        data.x_train, n_iters=iters, trial_ids=trial_ids, patient_ids=patient_ids, verbose=verbose
    )
    trained = time.perf_counter()
    train_repr, test_repr = model.encode(data.x_train), model.encode(data.x_test)
    accuracy = None
    if data.y_train is not None and data.y_test is not None:
        accuracy = svm_accuracy(train_repr, data.y_train, test_repr, data.y_test)
    return TimeSeriesResult(
        accuracy,
        model,
        train_repr,
        test_repr,
        model.loss_log,
        model.n_iters,
        trained - started,
        time.perf_counter() - trained,
    )


def check_config(config: Any, data: TimeSeriesData | None = None) -> TimeSeriesData:
    """Reject unknown ``timeseries:`` options, trainer flags these runs do not read and a bad
    data source, before a run directory is written; returns the data (loaded unless given)."""
    for name in config.timeseries:
        if name not in (*MODEL_OPTIONS, "n_iters"):
            raise unknown_name("timeseries option", name, MODEL_OPTIONS)
    refuse_trainer_options(config, "timeseries.n_iters", "timeseries.batch_size")
    if data is None:
        data = _load_source(config, config.data.source)
    _model(config, data.channels)  # checks every option's value
    return data


def _model(config: Any, channels: int) -> TS2Vec:
    options = {k: v for k, v in config.timeseries.items() if k != "n_iters"}
    return TS2Vec(channels, method=config.method, seed=config.seed, **options)


def _load_source(config: Any, source: str) -> TimeSeriesData:
    from contrastkit.timeseries.data import load_timeseries

    return load_timeseries(
        source,
        seed=config.data.split_seed,
        test_fraction=config.data.test_fraction,
        download=config.data.download,
    )


def fit_config(config: Any, data: TimeSeriesData | None = None) -> LoopResult:
    """``contrastkit fit`` for TS2Vec / AutoTCL / COMET: the weight-averaged encoder, both
    splits' instance representations (and labels) and the SVM protocol's test accuracy. COMET
    trains its trial and patient levels on the data's ``trial_ids``/``patient_ids`` (from an
    ``.npz`` source) and skips them when there are none."""
    data = check_config(config, data)
    options = dict(config.timeseries)
    n_iters = options.pop("n_iters", None)
    if config.method == "comet":  # its trial and patient levels read the data's group ids
        options.update(trial_ids=data.trial_ids, patient_ids=data.patient_ids)
    result = fit_evaluate(
        data,
        method=config.method,
        seed=config.seed,
        n_iters=n_iters,
        num_threads=config.train.num_threads,
        **options,
    )
    arrays = _arrays(result.train_repr, result.test_repr, data)
    metrics = {
        "feature_dim": int(result.train_repr.shape[1]),
        **{k: v for k, v in result.metrics().items() if k not in ("method", "seed")},
    }
    return LoopResult(metrics, result.model, arrays, result.n_iters)


def embed_config(config: Any, state: dict[str, Any], source: str) -> dict[str, np.ndarray]:
    """``contrastkit embed`` for a finished TS2Vec / AutoTCL / COMET run: the weight-averaged
    encoder's instance representations of both splits of ``source`` (and their labels)."""
    data = _load_source(config, source)
    try:
        trained = int(state["net"]["module.input_fc.weight"].shape[1])
        model = _model(config, trained)
        model.load_state_dict(state)
    except (KeyError, TypeError, IndexError, RuntimeError):
        raise ContrastkitError(
            "The run's model.pt does not match its config; the run directory was altered."
        ) from None
    if data.channels != trained:
        raise ContrastkitError(
            f"{source!r} has {data.channels} channel(s) but the run was trained on {trained}; "
            "embed series with the training data's variables."
        )
    return _arrays(model.encode(data.x_train), model.encode(data.x_test), data)


def _arrays(train: np.ndarray, test: np.ndarray, data: TimeSeriesData) -> dict[str, np.ndarray]:
    """``embeddings.npz``'s arrays: both splits' features and the labels there are."""
    arrays = {"train_features": train, "test_features": test}
    for split in ("train", "test"):
        labels = getattr(data, f"y_{split}")
        if labels is not None:
            arrays[f"{split}_labels"] = np.asarray(labels)
    return arrays
