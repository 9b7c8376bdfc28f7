"""A FIFO queue of past embeddings, shared by every rank (MoCo's dictionary, He et al. 2020, §3.2;
SwAV's feature queue, Caron et al. 2020, §4).

:meth:`Queue.push` gathers the new rows from all ranks (rank order, without gradient), so every
rank holds the same queue — the "filled from all ranks" semantics of MoCo's
``_dequeue_and_enqueue``. The buffer is *replaced*, never written in place, so a loss that used
the previous queue can still back-propagate after the push.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional.distributed import gather


class Queue(nn.Module):
    """``size`` rows of dimension ``dim``, newest first.

    Args:
        size: number of rows kept.
        dim: row dimension.
        init: ``"random"`` fills it with random unit vectors (MoCo), ``"zeros"`` starts empty
            (SwAV; :attr:`full` tells when every row has been written).
        shared: push the rows of every rank (one global queue, MoCo); ``False`` keeps only this
            rank's rows (SwAV's per-rank queue, whose rows meet in the distributed Sinkhorn).
    """

    def __init__(self, size: int, dim: int, init: str = "random", shared: bool = True) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ContrastkitError(f"A queue needs size ≥ 1 and dim ≥ 1, got {size} and {dim}.")
        if init not in ("random", "zeros"):
            raise ContrastkitError(f"Queue init must be 'random' or 'zeros', got {init!r}.")
        rows = torch.randn(size, dim) if init == "random" else torch.zeros(size, dim)
        if init == "random":
            rows = nn.functional.normalize(rows, dim=1)
        self.shared = shared
        self.register_buffer("rows", rows)
        self.register_buffer("written", torch.tensor(size if init == "random" else 0))

    @property
    def full(self) -> bool:
        return int(self.written) >= len(self.rows)

    @torch.no_grad()
    def push(self, new: Tensor) -> None:
        """Insert ``new [b, dim]`` from this rank (and, when shared, the rows of every other rank
        in rank order) at the front, dropping the oldest rows."""
        new = new.detach().to(self.rows.dtype)
        if self.shared:
            new = gather(new)
        if new.ndim != 2 or new.shape[1] != self.rows.shape[1]:
            raise ContrastkitError(
                f"Queue rows have dimension {self.rows.shape[1]}; got a push of shape {tuple(new.shape)}."
            )
        size = len(self.rows)
        self.rows = torch.cat([new[:size], self.rows[: max(size - len(new), 0)]])
        self.written = (self.written + len(new)).clamp(max=size)

    def forward(self) -> Tensor:
        """The current rows ``[size, dim]`` (a constant for autograd)."""
        return self.rows
