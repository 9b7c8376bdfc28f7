"""Fit, evaluate and embed: the run-directory workflow behind the CLI and the Python API.

One path for every method: :func:`fit` builds the :class:`~contrastkit.tasks.Task` of
``config.method`` and trains it with :class:`~contrastkit.train.lightning_module.LitTask` under a
Lightning ``Trainer`` (devices, DDP, precision, progress, ``metrics.csv``, resumable checkpoints),
then evaluates it on the held-out split and writes the report.
"""

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
from torch import nn

from contrastkit.config import Config, load_config
from contrastkit.errors import ContrastkitError
from contrastkit.tasks import IN_MEMORY, Task, build_task
from contrastkit.train.callbacks import SCORES_NAME, ScoreStatistics
from contrastkit.train.lightning_module import AtomicLastCheckpoint, LitTask
from contrastkit.train.loops import own_loop
from contrastkit.train.rundir import RunDir, load_weights

# Lightning's advice about loader workers does not apply (in-memory data, views made on the
# training device); the CSV logger writes into the run directory, which is never empty.
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
    """What :func:`fit` returns: the run directory, its held-out metrics (empty on ranks other
    than 0), the trained model and the task that trained it."""

    run_dir: Path
    metrics: dict[str, Any]
    model: nn.Module
    task: Task

    def embed(self, x: Any) -> np.ndarray:
        """Frozen features of raw inputs as the task takes them (images ``[N, C, H, W]`` in
        [0, 1], series ``(n, channels, length)``, bags, rows of a table, texts …)."""
        if self.task is None:  # transitional: a family still in its own loop
            return self.model.encode(np.asarray(x))
        return self.task.encode(self.model, x)


def fit(
    config: Config | None = None,
    *,
    data: Any | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
) -> FitResult:
    """Train ``config`` into a run directory, evaluate it on the held-out split, return the result.

    ``data`` replaces ``config.data.source`` with data already in memory (of the type the task
    takes); ``resume`` continues an unfinished run from its last checkpoint (its own config is
    used); without ``config`` and ``resume``, the bundled ``simclr`` recipe runs.
    """
    checkpoint = None
    if resume is not None:
        run = RunDir(resume)
        config = run.load_config()
        if run.status().get("state") == "complete":
            raise ContrastkitError(
                f"Run {run.root} is already complete; evaluate it with `contrastkit eval {run.root}`."
            )
        if run.checkpoint_path.is_file():
            checkpoint = run.checkpoint_path
            load_weights(checkpoint, what="checkpoint")  # a corrupt file fails here, clearly
    elif config is None:
        config = load_config("simclr")
    _check_train_config(config)
    loop = own_loop(config.method)
    if loop is not None:  # a family not yet on the task path
        return _fit_own_loop(config, data, out, loop, resume)
    task = build_task(config)
    given = data is not None
    data = task.load_data(data)
    if given and resume is None:
        name = task.data_name(data) or "arrays"
        if name != config.data.source:  # the run directory must not claim a source it did not train on
            config = dataclasses.replace(
                config, data=dataclasses.replace(config.data, source=IN_MEMORY + name)
            )
            task.config = config
    if resume is None:
        run = RunDir(out if out is not None else default_run_dir(config))

    L.seed_everything(config.seed, workers=True, verbose=False)
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    model = task.build_model(data)
    lit = LitTask(task, model, data, config)
    train = config.train
    samples = len(task.train_dataset(data))
    batches = samples // (train.batch_size * _processes(config))
    if batches == 0:
        raise ContrastkitError(
            f"train.batch_size={train.batch_size} × {_processes(config)} process(es) is larger "
            f"than the {samples} training samples; set a smaller batch size."
        )
    trainer = L.Trainer(
        max_epochs=train.epochs if train.epochs is not None else -1,
        max_steps=train.max_steps if train.max_steps is not None else -1,
        accelerator=train.accelerator,
        devices=train.devices,
        strategy=ddp_strategy(train.strategy, task.may_skip_parameters(model)),
        num_nodes=train.num_nodes,
        precision=train.precision,
        sync_batchnorm=train.sync_batchnorm,
        logger=CSVLogger(run.root, name="logs"),  # one version_N folder per (re)start
        callbacks=[
            AtomicLastCheckpoint(run.checkpoint_path),
            ScoreStatistics(run.root / SCORES_NAME),
        ],
        enable_checkpointing=False,
        enable_progress_bar=train.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=max(1, min(50, batches, train.max_steps or batches)),
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # LitTask shards the data itself (seeded, same for resume)
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
            trainer.fit(lit, ckpt_path=checkpoint, weights_only=True)
    except SystemExit:  # Lightning turns Ctrl-C into sys.exit(1) after a graceful shutdown
        _restore_sigint()
        run.merge_metrics()
        run.set_status("interrupted", epoch=trainer.current_epoch, step=trainer.global_step)
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
    if not _budget_reached(config, trainer):
        run.set_status("interrupted", epoch=trainer.current_epoch, step=trainer.global_step)
        raise ContrastkitError(
            f"Training stopped at epoch {trainer.current_epoch}; resume with --resume {run.root}."
        )
    train_seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return FitResult(run.root, {}, model, task)
    run.merge_metrics()
    run.save_model(model.state_dict())
    results = evaluate_into(run, task, model, data)
    results["train_seconds"] = round(train_seconds, 1)
    run.save_results(results)
    run.set_status("complete", epochs=trainer.current_epoch, steps=trainer.global_step)
    if config.eval.report:
        write_report_safely(run, task, model, data)
    return FitResult(run.root, results, model, task)


def _budget_reached(config: Config, trainer: L.Trainer) -> bool:
    epochs, steps = config.train.epochs, config.train.max_steps
    return (epochs is not None and trainer.current_epoch >= epochs) or (
        steps is not None and trainer.global_step >= steps
    )


def ddp_strategy(strategy: str, may_skip_parameters: bool) -> str:
    """``strategy``, with DDP's search for unused parameters switched on when the model leaves
    some parameters out of the graph on some steps (SwAV's frozen prototypes)."""
    if strategy in ("ddp", "ddp_spawn") and may_skip_parameters:
        return f"{strategy}_find_unused_parameters_true"
    return strategy


def write_report_safely(run: RunDir, task: Task, model: nn.Module, data: Any) -> None:
    """Write ``report.html`` into a finished run; a failure only warns (the run stays complete)."""
    try:
        from contrastkit.report import write_report

        write_report(run.root, method=model, data=data, sections=task.report_sections(model, data))
    except Exception as error:
        warnings.warn(
            f"Run {run.root} is complete but its report could not be written "
            f"({type(error).__name__}: {error}); retry with `contrastkit report {run.root}`.",
            stacklevel=2,
        )


def _fit_own_loop(
    config: Config, data: Any, out: str | Path | None, loop: Any, resume: Any
) -> FitResult:
    """Transitional: a family that still trains in its own loop (:mod:`contrastkit.train.loops`)."""
    if resume is not None:
        raise ContrastkitError(
            f"{config.method} runs train in one go and cannot be resumed; start {resume} again."
        )
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
    return FitResult(run.root, result.metrics, result.model, None)  # type: ignore[arg-type]


def load_run(run_dir: str | Path) -> tuple[RunDir, Task, nn.Module, Any]:
    """A finished run, its task, its trained model (weights loaded safely) and its data."""
    run = RunDir(run_dir)
    config = run.load_config()
    if own_loop(config.method) is not None:  # transitional: a family not yet on the task path
        raise ContrastkitError(
            f"Run {run.root} is a {config.method} run: its test metrics are in results.json and "
            "its test embeddings in embeddings.npz (re-evaluation is for methods on the task path)."
        )
    _check_complete(run)
    task = build_task(config)
    if config.data.source.startswith(IN_MEMORY):
        raise ContrastkitError(
            f"Run {run.root} was trained on in-memory data ({config.data.source}); load its "
            "model with the Python API and pass the same data."
        )
    data = task.load_data()
    return run, task, load_model(run, task, data), data


def load_model(run: RunDir, task: Task, data: Any) -> nn.Module:
    """The task's model for ``data`` with the run's trained weights."""
    model = task.build_model(data)
    try:
        model.load_state_dict(run.load_model_state())
    except RuntimeError:
        raise ContrastkitError(
            f"The weights in {run.model_path} do not match the run's config; the run directory "
            "was altered."
        ) from None
    model.eval()
    return model


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
    if loop is not None and hasattr(loop, "embed_config"):  # transitional, as in load_run
        _check_complete(run)
        return loop.embed_config(config, run.load_model_state(), source)
    _, task, model, _ = load_run(run_dir)
    return task.embed(model, source)


def evaluate_into(run: RunDir, task: Task, model: nn.Module, data: Any) -> dict[str, Any]:
    """The task's held-out metrics of ``model``; its arrays go to ``embeddings.npz``."""
    results, arrays = task.evaluate(model, data)
    run.save_embeddings(**arrays)
    return results


def default_run_dir(config: Config) -> Path:
    source = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.data.source.split("/")[-1]).strip("-")
    return Path("runs") / f"{config.method}-{source}-{time.strftime('%Y%m%d-%H%M%S')}"


def _processes(config: Config) -> int:
    """How many training processes share each epoch's batches (for the logging interval)."""
    devices = config.train.devices if isinstance(config.train.devices, int) else 1
    return max(devices, 1) * max(config.train.num_nodes, 1)


def _check_train_config(config: Config) -> None:
    """The options of ``train`` every task shares (a task checks its own section)."""
    train = config.train
    checks = [
        (
            train.epochs is not None or train.max_steps is not None,
            "set train.epochs or train.max_steps (both are null, so training would never stop)",
        ),
        (train.epochs is None or train.epochs >= 1, f"train.epochs must be at least 1, got {train.epochs}"),
        (
            train.max_steps is None or train.max_steps >= 1,
            f"train.max_steps must be at least 1, got {train.max_steps}",
        ),
        (train.batch_size >= 2, f"train.batch_size must be at least 2, got {train.batch_size}"),
        (
            train.num_threads is None or train.num_threads >= 1,
            "train.num_threads must be at least 1",
        ),
        (
            train.grad_cache_chunk is None or train.grad_cache_chunk >= 1,
            "train.grad_cache_chunk must be at least 1",
        ),
        (
            not train.sync_batchnorm
            or (torch.cuda.is_available() and train.accelerator in ("auto", "gpu", "cuda")),
            "train.sync_batchnorm needs GPUs (torch's SyncBatchNorm has no CPU implementation); "
            "unset it on CPU",
        ),
        (
            config.optim.warmup_steps is None or config.optim.warmup_steps >= 0,
            f"optim.warmup_steps must be at least 0, got {config.optim.warmup_steps}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ContrastkitError(message + ".")


def _restore_sigint() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
