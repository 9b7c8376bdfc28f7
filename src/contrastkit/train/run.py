"""Fit, evaluate and embed: the run-directory workflow behind the CLI and the Python API."""

from __future__ import annotations

import dataclasses
import logging
import re
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, TensorDataset

from contrastkit.config import Config, EvalConfig, load_config
from contrastkit.data import ImageData, load_data
from contrastkit.errors import ContrastkitError
from contrastkit.eval import knn_accuracy, linear_probe
from contrastkit.methods import ContrastiveMethod, build_method
from contrastkit.train.callbacks import SCORES_NAME, ScoreStatistics
from contrastkit.train.lightning_module import AtomicLastCheckpoint, LitMethod
from contrastkit.train.loops import OWN_LOOPS, own_loop
from contrastkit.train.rundir import RunDir, load_weights

# Lightning's advice about loader workers does not apply (the data is in memory and views are made
# on the training device); the CSV logger writes into the run directory, which is never empty.
IN_MEMORY = "in-memory:"
IGNORED_WARNINGS = (
    ".*does not have many workers.*",
    ".*Experiment logs directory.*exists and is not empty.*",
    ".*isinstance.treespec, LeafSpec.*",
)


def quiet_lightning() -> None:
    """Keep Lightning's start-up banner (accelerators, tips) out of the CLI's output."""
    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass
class FitResult:
    """What :func:`fit` returns: the run directory, its evaluation numbers and the trained method."""

    run_dir: Path
    metrics: dict[str, Any]
    method: Any  # a ContrastiveMethod, or a timeseries.TS2Vec for time-series methods

    def embed(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Frozen backbone features of images ``[N, C, H, W]`` in [0, 1] (instance
        representations of series ``(n, channels, length)`` for time-series methods)."""
        if not isinstance(self.method, ContrastiveMethod):
            return self.method.encode(np.asarray(x))
        return self.method.embed(torch.as_tensor(np.asarray(x), dtype=torch.float32)).numpy()


def fit(
    config: Config | None = None,
    *,
    data: ImageData | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
) -> FitResult:
    """Train ``config`` into a run directory, evaluate it on the held-out split, return the result.

    ``resume`` continues an unfinished run from its last checkpoint (its own config is used);
    without ``config`` and ``resume``, the bundled ``simclr`` recipe runs.
    """
    if resume is not None:
        run = RunDir(resume)
        config = run.load_config()
        if run.status().get("state") == "complete":
            raise ContrastkitError(
                f"Run {run.root} is already complete; evaluate it with `contrastkit eval {run.root}`."
            )
        checkpoint = run.checkpoint_path if run.checkpoint_path.is_file() else None
        if checkpoint is not None:
            load_weights(checkpoint, what="checkpoint")  # a corrupt file fails here, clearly
    elif config is None:
        config = load_config("simclr")
    loop = own_loop(config.method)
    if loop is not None:
        if resume is not None:
            raise ContrastkitError(
                f"{config.method} runs train in one go and cannot be resumed; start {resume} again."
            )
        return _fit_own_loop(config, data, out, loop)
    if data is not None and resume is None and data.name != config.data.source:
        # the run directory must not claim a source it was not trained on
        config = dataclasses.replace(
            config, data=dataclasses.replace(config.data, source=IN_MEMORY + data.name)
        )
    _check_train_config(config)
    data = data if data is not None else load_source(config)
    if len(data.x_train) < config.train.batch_size:
        raise ContrastkitError(
            f"train.batch_size={config.train.batch_size} is larger than the {len(data.x_train)} "
            f"training samples of {data.name}; set a smaller batch size."
        )
    if resume is None:
        run, checkpoint = RunDir(out if out is not None else default_run_dir(config)), None

    L.seed_everything(config.seed, workers=True, verbose=False)
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    method = build_method(config, channels=data.channels, image_size=data.image_size)
    loader = _train_loader(data, config)
    lit = LitMethod(method, config.optim, config.train.grad_cache_chunk)
    trainer = L.Trainer(
        max_epochs=config.train.epochs,
        accelerator=config.train.accelerator,
        devices=config.train.devices,
        strategy=ddp_strategy(config.train.strategy, method),
        num_nodes=config.train.num_nodes,
        precision=config.train.precision,
        logger=CSVLogger(run.root, name="logs"),  # one version_N folder per (re)start
        callbacks=[
            AtomicLastCheckpoint(run.checkpoint_path),
            ScoreStatistics(run.root / SCORES_NAME),
        ],
        enable_checkpointing=False,
        enable_progress_bar=config.train.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=max(1, min(50, len(loader) // _processes(config))),
        num_sanity_val_steps=0,
    )
    # everything that can reject the config has run: only now is the run directory written, and
    # only by the main process (under torchrun / Lightning's DDP launcher every rank runs this)
    main_process = rank_zero_only.rank == 0
    if main_process and resume is None:
        run.create(config)
    elif main_process:
        run.set_status("running", resumed_from=str(checkpoint) if checkpoint else None)
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            for pattern in IGNORED_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            trainer.fit(lit, loader, ckpt_path=checkpoint, weights_only=True)
    except SystemExit:  # Lightning turns Ctrl-C into sys.exit(1) after a graceful shutdown
        _restore_sigint()
        run.merge_metrics()
        run.set_status("interrupted", epoch=trainer.current_epoch)
        raise ContrastkitError(
            f"Training was interrupted; resume it with `contrastkit fit --resume {run.root}`."
        ) from None
    except ContrastkitError as error:
        run.merge_metrics()
        run.set_status("failed", message=str(error))
        raise
    except BaseException as error:
        run.set_status("failed", message=f"{type(error).__name__}: {error}")
        raise
    if trainer.current_epoch < config.train.epochs:
        run.set_status("interrupted", epoch=trainer.current_epoch)
        raise ContrastkitError(
            f"Training stopped at epoch {trainer.current_epoch}; resume with --resume {run.root}."
        )
    train_seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return FitResult(run.root, {}, method)
    run.merge_metrics()
    run.save_model(method.state_dict())
    results = evaluate_into(run, method, data, config.eval)
    results["train_seconds"] = round(train_seconds, 1)
    run.save_results(results)
    run.set_status("complete", epochs=config.train.epochs)
    if config.eval.report:
        write_report_safely(run, method, data)
    return FitResult(run.root, results, method)


def ddp_strategy(strategy: str, method: ContrastiveMethod) -> str:
    """``strategy``, with DDP's search for unused parameters switched on when the objective
    leaves some out of the graph on some steps (SwAV's frozen prototypes)."""
    if strategy in ("ddp", "ddp_spawn") and getattr(method.objective, "may_skip_parameters", False):
        return f"{strategy}_find_unused_parameters_true"
    return strategy


def write_report_safely(run: RunDir, method: ContrastiveMethod, data: ImageData) -> None:
    """Write ``report.html`` into a finished run; a failure only warns (the run stays complete)."""
    try:
        from contrastkit.report import write_report

        write_report(run.root, method=method, data=data)
    except Exception as error:
        warnings.warn(
            f"Run {run.root} is complete but its report could not be written "
            f"({type(error).__name__}: {error}); retry with `contrastkit report {run.root}`.",
            stacklevel=2,
        )


def _fit_own_loop(config: Config, data: Any, out: str | Path | None, loop: Any) -> FitResult:
    """A method that trains in its own loop (:mod:`contrastkit.train.loops`) into a run
    directory: the config, the trained model, its arrays and its test metrics."""
    data = loop.check_config(config, data)  # all that can reject the config, before any write
    run = RunDir(out if out is not None else default_run_dir(config))
    run.create(config)
    try:
        result = loop.fit_config(config, data)
    except BaseException as error:
        run.set_status("failed", message=f"{type(error).__name__}: {error}")
        raise
    run.save_model(result.model.state_dict())
    run.save_embeddings(**result.arrays)
    run.save_results(result.metrics)
    run.set_status("complete", steps=result.steps)
    return FitResult(run.root, result.metrics, result.model)


def load_source(config: Config) -> ImageData:
    if config.data.source.startswith(IN_MEMORY):
        raise ContrastkitError(
            f"This run was trained on in-memory arrays ({config.data.source}); pass the same data "
            "through the Python API (fit(resume=..., data=...)) instead of the CLI."
        )
    return load_data(
        config.data.source,
        seed=config.data.split_seed,
        test_fraction=config.data.test_fraction,
        image_size=config.data.image_size,
        download=config.data.download,
    )


def load_run(run_dir: str | Path) -> tuple[RunDir, Config, ContrastiveMethod, ImageData]:
    """A finished run's config, trained method (weights loaded safely) and its data."""
    run = RunDir(run_dir)
    config = run.load_config()
    if config.method in OWN_LOOPS:
        raise ContrastkitError(
            f"Run {run.root} is a {config.method} run: its test metrics are in results.json and its "
            "test embeddings in embeddings.npz (re-evaluation is for image runs)."
        )
    _check_complete(run)
    data = load_source(config)
    method = build_method(config, channels=data.channels, image_size=data.image_size)
    try:
        method.load_state_dict(run.load_model_state())
    except RuntimeError:
        raise ContrastkitError(
            f"The weights in {run.model_path} do not match the run's config; the run directory was altered."
        ) from None
    return run, config, method, data


def _check_complete(run: RunDir) -> None:
    if run.status().get("state") != "complete":
        raise ContrastkitError(
            f"Run {run.root} is not complete (state {run.status().get('state')!r}); resume it with --resume."
        )


def embed_run(run_dir: str | Path, source: str) -> dict[str, np.ndarray]:
    """A finished run's frozen features of both splits of ``source`` (and its labels)."""
    run = RunDir(run_dir)
    config = run.load_config()
    loop = own_loop(config.method)
    if loop is not None:
        if not hasattr(loop, "embed_config"):
            raise ContrastkitError(
                f"Run {run.root} is a {config.method} run, which `embed` does not apply to new "
                "data yet; its own test embeddings are in embeddings.npz."
            )
        _check_complete(run)
        return loop.embed_config(config, run.load_model_state(), source)
    _, config, method, _ = load_run(run_dir)
    data = load_data(
        source,
        seed=config.data.split_seed,
        test_fraction=config.data.test_fraction,
        image_size=config.data.image_size,
    )
    arrays = {
        "train_features": method.embed(data.x_train).numpy(),
        "test_features": method.embed(data.x_test).numpy(),
    }
    if data.has_labels:
        arrays |= {"train_labels": data.y_train.numpy(), "test_labels": data.y_test.numpy()}
    return arrays


def evaluate(
    method: ContrastiveMethod, data: ImageData, config: EvalConfig
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """kNN (InstDisc protocol) and linear probe on frozen pre-projection features, test split."""
    train_features, test_features = method.embed(data.x_train), method.embed(data.x_test)
    arrays = {"train_features": train_features.numpy(), "test_features": test_features.numpy()}
    results: dict[str, Any] = {"feature_dim": int(train_features.shape[1])}
    if not data.has_labels:
        return results, arrays
    arrays |= {"train_labels": data.y_train.numpy(), "test_labels": data.y_test.numpy()}
    results["knn_accuracy"] = knn_accuracy(
        train_features,
        data.y_train,
        test_features,
        data.y_test,
        k=config.knn_k,
        temperature=config.knn_temperature,
    )
    if config.linear_probe:
        probe = linear_probe(train_features, data.y_train, test_features, data.y_test)
        results["linear_probe_accuracy"] = probe["accuracy"]
        results["linear_probe_C"] = probe["C"]
    return results, arrays


def evaluate_into(
    run: RunDir, method: ContrastiveMethod, data: ImageData, config: EvalConfig
) -> dict[str, Any]:
    results, arrays = evaluate(method, data, config)
    run.save_embeddings(**arrays)
    return results


def default_run_dir(config: Config) -> Path:
    source = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.data.source.split("/")[-1]).strip("-")
    return Path("runs") / f"{config.method}-{source}-{time.strftime('%Y%m%d-%H%M%S')}"


def _train_loader(data: ImageData, config: Config) -> DataLoader:
    tensors = (data.x_train,) if data.y_train is None else (data.x_train, data.y_train)
    generator = torch.Generator().manual_seed(config.seed)
    return DataLoader(
        TensorDataset(*tensors),
        batch_size=config.train.batch_size,
        shuffle=True,
        drop_last=True,
        generator=generator,
    )


def _processes(config: Config) -> int:
    """How many training processes share each epoch's batches (for the logging interval)."""
    devices = config.train.devices if isinstance(config.train.devices, int) else 1
    return max(devices, 1) * max(config.train.num_nodes, 1)


def _check_train_config(config: Config) -> None:
    checks = [
        (config.train.epochs >= 1, f"train.epochs must be at least 1, got {config.train.epochs}"),
        (
            config.train.batch_size >= 2,
            f"train.batch_size must be at least 2, got {config.train.batch_size}",
        ),
        (
            config.views.n_views >= 2,
            f"views.n_views must be at least 2, got {config.views.n_views}",
        ),
        (
            config.train.num_threads is None or config.train.num_threads >= 1,
            "train.num_threads must be at least 1",
        ),
        (config.eval.knn_k >= 1, f"eval.knn_k must be at least 1, got {config.eval.knn_k}"),
        (
            config.train.grad_cache_chunk is None or config.train.grad_cache_chunk >= 1,
            "train.grad_cache_chunk must be at least 1",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ContrastkitError(message + ".")


def _restore_sigint() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
