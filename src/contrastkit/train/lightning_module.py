"""The one Lightning module: trains any :class:`~contrastkit.tasks.Task` with the optimiser and
warm-up + cosine schedule of ``optim``, rank-sharded seeded batches, GradCache, the objective's
per-step scalars in the log, exact resume (random states in the checkpoint) and the
non-finite-loss guard. Only this module and ``run.py`` import Lightning."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler

from contrastkit.config import Config
from contrastkit.errors import ContrastkitError
from contrastkit.tasks import Step, Task
from contrastkit.train.optim import build_optimizer, cosine_with_warmup

RNG_KEY = "contrastkit_rng"


class LitTask(L.LightningModule):
    """Trains ``model`` as ``task`` says, with ``config.optim`` and ``config.train``.

    With ``train.grad_cache_chunk`` the step back-propagates chunk by chunk (GradCache) under
    manual optimisation, so a batch of any size trains with one chunk's activation memory; a
    task with several optimisers (:attr:`Task.manual_optimization`) steps them itself.
    """

    def __init__(self, task: Task, model: nn.Module, data: Any, config: Config) -> None:
        super().__init__()
        self.task, self.model, self.config = task, model, config
        self._data = data
        self.grad_cache_chunk = config.train.grad_cache_chunk
        if self.grad_cache_chunk is not None and task.grad_cache_refusal is not None:
            raise ContrastkitError(
                f"train.grad_cache_chunk does not apply to {config.method}: "
                f"{task.grad_cache_refusal}; unset it."
            )
        self.automatic_optimization = self.grad_cache_chunk is None and not task.manual_optimization
        self._no_sync = None
        self._train_dataset: Any = None

    # -- data ----------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """The task's samples, sharded over processes by one seeded permutation per epoch
        (the same order for any number of processes, so an epoch's global batches are the
        same; Lightning sets the epoch, so a resumed run replays the same order)."""
        dataset = self._dataset()
        world, rank = self.trainer.world_size, self.trainer.global_rank
        batch_size = self.config.train.batch_size  # per process; fit checked it fits the data
        sampler = DistributedSampler(
            dataset,
            num_replicas=world,
            rank=rank,
            shuffle=True,
            seed=self.config.seed,
            drop_last=self.task.drop_last,
        )
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=self.task.drop_last,
            collate_fn=self.task.collate,
        )

    def _dataset(self) -> Any:
        if self._train_dataset is None:
            self._train_dataset = self.task.train_dataset(self._data)
        return self._train_dataset

    def batches_per_epoch(self) -> int:
        """Batches each process trains per epoch (known before Lightning sets up the loader)."""
        world = self.trainer.world_size
        return max(len(self._dataset()) // world // self.config.train.batch_size, 1)

    # -- steps ---------------------------------------------------------------------------------
    def step_info(self) -> Step:
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        return Step(self.global_step, self.current_epoch, min(self.global_step / total, 1.0))

    def on_fit_start(self) -> None:
        if self.automatic_optimization:
            return
        if str(self.trainer.precision).startswith("16"):
            raise ContrastkitError(
                "train.grad_cache_chunk and methods with several optimisers need fp32 or bf16 "
                "(they back-propagate without a loss scaler); set train.precision to 32-true or "
                "bf16-mixed."
            )

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # GradCache back-propagates chunk by chunk inside the step, which DDP's reducer (one
        # backward per forward) cannot follow: keep it from syncing over the whole wrapped
        # forward and average the gradients ourselves before the optimiser step
        self._no_sync = None
        if self.grad_cache_chunk is not None and self.trainer.world_size > 1:
            self._no_sync = self.trainer.strategy.model.no_sync()
            self._no_sync.__enter__()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._no_sync is not None:
            self._no_sync.__exit__(None, None, None)
            self._no_sync = None
        if self.automatic_optimization:  # the optimiser has stepped (manual steps call it)
            self.task.after_optimizer_step(self.model, self.step_info())

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        step = self.step_info()
        if self.automatic_optimization:
            loss = self.task.training_loss(self.model, batch, step)
        elif self.grad_cache_chunk is not None:
            optimizer = self.optimizers()
            optimizer.zero_grad()
            loss = self.task.backward_in_chunks(self.model, batch, self.grad_cache_chunk, step)
        else:
            loss = self.task.manual_step(
                self.model, batch, step, _as_list(self.optimizers()), self.manual_backward
            )
        if not torch.isfinite(loss):
            raise ContrastkitError(
                f"The training loss became {loss.item()} at epoch {self.current_epoch}, step "
                f"{self.global_step}; lower optim.lr or raise objective.temperature "
                "(the last good checkpoint is kept and the run is marked failed)."
            )
        self.log(
            "train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True,
            batch_size=self.config.train.batch_size,
        )
        self.log(
            "lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False
        )
        for name, value in self.task.logged(self.model).items():
            value = torch.as_tensor(value).detach().float()
            self.log(f"train/{name}", value, on_step=True, on_epoch=True)
        if self.grad_cache_chunk is not None:
            if self.trainer.world_size > 1:
                average_gradients(self.model.parameters(), self.trainer.world_size)
            optimizer.step()
        if not self.automatic_optimization:
            for schedule in _as_list(self.lr_schedulers()):
                schedule.step()
            if self.grad_cache_chunk is not None:
                self.task.after_optimizer_step(self.model, step)
        return loss

    def configure_optimizers(self) -> Any:
        optim = self.config.optim

        def build(params: Any, **overrides: Any) -> torch.optim.Optimizer:
            name = overrides.pop("name", optim.name)
            options = {"lr": optim.lr, "weight_decay": optim.weight_decay, "momentum": optim.momentum}
            return build_optimizer(name, params, **(options | overrides))

        optimizers = self.task.optimizers(self.model, build)
        # steps per rank, after the distributed sampler and gradient accumulation (Lightning's count)
        total_steps = max(int(self.trainer.estimated_stepping_batches), 1)
        if optim.warmup_steps is not None:
            warmup_steps = min(optim.warmup_steps, total_steps)
        else:
            warmup_steps = min(round(optim.warmup_epochs * self.batches_per_epoch()), total_steps)
        schedules = [
            {
                "scheduler": cosine_with_warmup(
                    optimizer,
                    warmup_steps=warmup_steps,
                    total_steps=total_steps,
                    min_lr_ratio=optim.min_lr_ratio,
                ),
                "interval": "step",
            }
            for optimizer in optimizers
        ]
        return optimizers, schedules

    # -- exact resume --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the random states (views, crops, dropout are drawn from them), so a resumed run
        continues exactly as the uninterrupted one would."""
        checkpoint[RNG_KEY] = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state(),
            "python": list(random.getstate()[1]),
            **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_initialized() else {}),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get(RNG_KEY)
        if states is None:
            return
        torch.set_rng_state(states["torch"])
        keys, position = states["numpy"]
        np.random.set_state(("MT19937", np.asarray(keys, dtype=np.uint32), int(position)))
        random.setstate((3, tuple(int(v) for v in states["python"]), None))
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


def _numpy_state() -> tuple[torch.Tensor, int]:
    """numpy's global MT19937 state as tensors (the checkpoint is loaded weights-only)."""
    _, keys, position, *_ = np.random.get_state()
    return torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(position)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


@torch.no_grad()
def average_gradients(parameters, world_size: int) -> None:
    """All-reduce and average the gradients across processes, as DDP's reducer would."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


class AtomicLastCheckpoint(L.Callback):
    """Writes ``last.ckpt`` at the end of every epoch through a temporary file and a rename, so a
    crash mid-write never leaves a truncated checkpoint behind. The metrics logged so far are
    flushed first, so a run killed later still has every epoch up to its checkpoint on disk."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not math.isfinite(float(trainer.callback_metrics.get("train_loss_epoch", 0.0))):
            return
        if trainer.logger is not None:
            trainer.logger.save()
        tmp = self.path.with_suffix(".ckpt.tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # full state, to resume
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
