"""Training callbacks: the positive/negative score record of Zhu et al. (2021, "Improving
Contrastive Learning by Visualizing Feature Transformation", §3; instance-dense.md §9 b)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from contrastkit.diagnostics.scores import score_statistics, summarize_scores
from contrastkit.train.rundir import atomic_write

__all__ = ["HISTOGRAM_BINS", "SCORES_NAME", "ScoreStatistics", "load_score_histograms"]

#: File name of the per-step score histograms inside a run directory.
SCORES_NAME = "scores.npz"

#: Bins of the per-step score histograms, equal-width over the cosine range [−1, 1].
HISTOGRAM_BINS = 40


class ScoreStatistics(L.Callback):
    """After every training step, reads ``pl_module.model.last_step`` (the step's detached
    embeddings ``[V·B, D]``, or ``[V·B, C, D]`` of which head 0 is used, and its
    :class:`~contrastkit.functional.pairs.Pairs`) and

    - logs :data:`~contrastkit.diagnostics.scores.SCORE_KEYS` (batch mean and variance of the
      positive cosine, batch means of the negative cosines' mean and variance) through
      ``pl_module.log``, so they land in ``metrics.csv``;
    - with ``path``, keeps per-step histograms of the anchors' positive score and negative mean
      (:data:`HISTOGRAM_BINS` bins over [−1, 1]) and writes them at the end of every epoch to
      ``path`` (``.npz``: ``step [S]``, ``positive [S, bins]``, ``negative_mean [S, bins]``,
      ``edges [bins + 1]``), the data of the paper's 2-D histograms.

    Negatives are summed from the Gram matrix of the embeddings (O(N·D²), no N×N matrix); nothing
    waits for the device until the epoch's histograms are written. A step without ``last_step``
    or with embeddings that do not match its pairs logs nothing.
    """

    def __init__(self, path: str | Path | None = None, *, every_n_steps: int = 1) -> None:
        self.path = None if path is None else Path(path)
        self.every_n_steps = max(int(every_n_steps), 1)
        self._steps: list[int] = []
        self._histograms: list[torch.Tensor] = []
        self._saved: dict[str, np.ndarray] | None = None
        self._warned = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a resumed run keeps the histograms of the steps before its checkpoint
        self._steps, self._histograms, self._saved = [], [], None
        if self.path is not None and self.path.is_file():
            try:
                saved = load_score_histograms(self.path)
            except (OSError, ValueError, KeyError):
                return  # unreadable: start over, the next save replaces it
            keep = saved["step"] <= trainer.global_step  # steps done before the checkpoint
            self._saved = {k: (v[keep] if k != "edges" else v) for k, v in saved.items()}

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step
        if step % self.every_n_steps:
            return
        last = getattr(getattr(pl_module, "model", None), "last_step", None)
        if last is None:
            return
        embeddings, pairs = last
        if embeddings.ndim == 3:  # a multi-head projector: head 0
            embeddings = embeddings[:, 0]
        if (
            embeddings.ndim != 2
            or len(embeddings) != pairs.n_anchors
            or pairs.n_candidates != len(embeddings)
        ):
            if not self._warned:
                warnings.warn(
                    f"score statistics skipped: embeddings {tuple(embeddings.shape)} do not match "
                    f"pairs of {pairs.n_anchors} anchors × {pairs.n_candidates} candidates.",
                    stacklevel=2,
                )
                self._warned = True
            return
        stats = score_statistics(embeddings, pairs)
        for key, value in summarize_scores(stats).items():
            pl_module.log(
                key, value.float(), on_step=True, on_epoch=False, batch_size=len(embeddings)
            )
        if self.path is not None:
            self._steps.append(step)
            self._histograms.append(
                torch.stack(
                    [
                        _histogram(stats["positive"]),
                        _histogram(stats["negative_mean"]),
                    ]
                )
            )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.path is None or not trainer.is_global_zero:
            return
        if not self._histograms and self._saved is None:
            return
        new = (
            torch.stack(self._histograms).cpu().numpy()
            if self._histograms
            else np.zeros((0, 2, HISTOGRAM_BINS))
        )
        step = np.asarray(self._steps, dtype=np.int64)
        positive, negative = new[:, 0], new[:, 1]
        if self._saved is not None:
            step = np.concatenate([self._saved["step"], step])
            positive = np.concatenate([self._saved["positive"], positive])
            negative = np.concatenate([self._saved["negative_mean"], negative])
        arrays = {
            "step": step,
            "positive": positive.astype(np.int64),
            "negative_mean": negative.astype(np.int64),
            "edges": np.linspace(-1.0, 1.0, HISTOGRAM_BINS + 1),
        }
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write(self.path, lambda f: f.write(buffer.getvalue()))


def _histogram(values: torch.Tensor) -> torch.Tensor:
    """Counts of the finite ``values`` in :data:`HISTOGRAM_BINS` equal bins over [−1, 1]."""
    values = values.float().clamp(-1.0, 1.0)  # round-off can give 1 + 1e-7
    values = values.masked_fill(values.isnan(), 2.0)  # out of range: not counted
    return torch.histc(values, bins=HISTOGRAM_BINS, min=-1.0, max=1.0)


def load_score_histograms(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays :class:`ScoreStatistics` wrote (``step``, ``positive``, ``negative_mean``,
    ``edges``)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in ("step", "positive", "negative_mean", "edges")}
