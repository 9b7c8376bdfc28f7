"""Lightning wrapper of a :class:`~contrastkit.methods.ContrastiveMethod`: optimiser, schedule,
logging and the non-finite-loss guard. The only place (with ``run.py``) that imports Lightning."""

from __future__ import annotations

import math
import os
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from contrastkit.config import OptimConfig
from contrastkit.errors import ContrastkitError
from contrastkit.methods import ContrastiveMethod
from contrastkit.train.optim import build_optimizer, cosine_with_warmup


class LitMethod(L.LightningModule):
    """Trains ``method`` with the optimiser and warm-up + cosine schedule of ``optim``.

    With ``grad_cache_chunk`` the step back-propagates chunk by chunk (GradCache) under manual
    optimisation, so a batch of any size trains with one chunk's activation memory.
    """

    def __init__(
        self, method: ContrastiveMethod, optim: OptimConfig, grad_cache_chunk: int | None = None
    ) -> None:
        super().__init__()
        self.method = method
        self.optim = optim
        self.grad_cache_chunk = grad_cache_chunk
        self.automatic_optimization = grad_cache_chunk is None

    def on_fit_start(self) -> None:
        if self.grad_cache_chunk is None:
            return
        if str(self.trainer.precision).startswith("16"):
            raise ContrastkitError(
                "train.grad_cache_chunk needs fp32 or bf16 (it back-propagates without a loss scaler); "
                "set train.precision to 32-true or bf16-mixed."
            )

    def on_train_batch_start(self, batch: list[Tensor], batch_idx: int) -> None:
        # GradCache back-propagates chunk by chunk inside the step, which DDP's reducer (one
        # backward per forward) cannot follow: keep it from syncing over the whole wrapped
        # forward and average the gradients ourselves before the optimiser step
        self._no_sync = None
        if not self.automatic_optimization and self.trainer.world_size > 1:
            self._no_sync = self.trainer.strategy.model.no_sync()
            self._no_sync.__enter__()

    def on_train_batch_end(self, outputs, batch: list[Tensor], batch_idx: int) -> None:
        if getattr(self, "_no_sync", None) is not None:
            self._no_sync.__exit__(None, None, None)
            self._no_sync = None

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        x, labels = batch[0], (batch[1] if len(batch) > 1 else None)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        schedule = {
            "step": self.global_step,
            "epoch": self.current_epoch,
            "progress": min(self.global_step / total, 1.0),
        }
        if self.automatic_optimization:
            loss = self.method.training_loss(x, labels, **schedule)
        else:
            optimizer = self.optimizers()
            optimizer.zero_grad()
            loss = self.method.backward_in_chunks(x, labels, self.grad_cache_chunk, **schedule)
        if not torch.isfinite(loss):
            raise ContrastkitError(
                f"The training loss became {loss.item()} at epoch {self.current_epoch}, step "
                f"{self.global_step}; lower optim.lr or raise objective.temperature "
                "(the last good checkpoint is kept and the run is marked failed)."
            )
        self.log(
            "train_loss",
            loss,
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=len(x),
            sync_dist=True,
        )
        self.log(
            "lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False
        )
        for name, value in getattr(self.method.objective, "logged", {}).items():
            self.log(f"train/{name}", value.detach().float(), on_step=True, on_epoch=True)
        if not self.automatic_optimization:
            if self.trainer.world_size > 1:
                average_gradients(self.method.parameters(), self.trainer.world_size)
            optimizer.step()
            self.lr_schedulers().step()
        return loss

    def configure_optimizers(self):
        optimizer = build_optimizer(
            self.optim.name,
            self.method,
            lr=self.optim.lr,
            weight_decay=self.optim.weight_decay,
            momentum=self.optim.momentum,
        )
        # steps per rank, after the distributed sampler and gradient accumulation (Lightning's count)
        total_steps = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup_steps = min(
            round(self.optim.warmup_epochs * total_steps / self.trainer.max_epochs), total_steps
        )
        schedule = cosine_with_warmup(
            optimizer,
            warmup_steps=warmup_steps,
            total_steps=total_steps,
            min_lr_ratio=self.optim.min_lr_ratio,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


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
