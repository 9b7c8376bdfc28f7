"""What an objective sees besides the embeddings and the pair structure.

Every objective is called as ``objective(embeddings, pairs, context)``:

* ``embeddings`` — ``[V·B, ...]`` online embeddings, view-major (global views first, then any
  small multi-crop views); AMCL's multi-head projector gives ``[V·B, C, D]``.
* ``pairs`` — :class:`~contrastkit.functional.Pairs` over those rows.
* ``context`` — a :class:`StepContext` (``None`` when an objective is used on its own).

An objective may expose scalars to log for the last step in ``self.logged`` (a ``dict`` of
0-d tensors, e.g. mean adaptive temperatures or positive/negative score statistics); the trainer
logs them as ``train/<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class StepContext:
    """Per-step information for objectives that need more than ``(embeddings, pairs)``.

    Attributes:
        targets: momentum-encoder embeddings of the ``n_global`` global views, view-major
            ``[n_global·B, D]``, without gradient (MoCo's keys); ``None`` without a momentum
            encoder.
        labels: ``[B]`` labels of the batch, when the data has them.
        n_global: how many of the views are global (full-resolution) crops; the rest are small
            multi-crop views (SwAV, Caron et al. 2020, §3.3).
        step: optimiser steps taken so far (SwAV's prototype freezing).
        epoch: the current epoch (SwAV's queue start).
        progress: fraction of training done, in ``[0, 1]`` (cosine momentum schedules).
    """

    targets: Tensor | None = None
    labels: Tensor | None = None
    n_global: int = 2
    step: int = 0
    epoch: int = 0
    progress: float = 0.0
