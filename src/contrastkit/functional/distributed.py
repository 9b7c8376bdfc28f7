"""Exact cross-process negatives: local anchors × global candidates gathered with gradient
(open_clip's "local loss + gather with grad"), the default under ``torch.distributed``.

Each rank computes the loss of its own anchors against every rank's candidates. The gather's
backward sums the candidate gradients over ranks, so after DDP averages parameter gradients over
the ``W`` ranks, they equal the gradient of the mean loss over the whole global batch.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
from torch import Tensor

from contrastkit.functional.pairs import Pairs


def world() -> tuple[int, int]:
    """``(rank, world_size)``, or ``(0, 1)`` outside an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous()


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank (rank order); gradients flow back to each rank's slice."""
    if world()[1] == 1:
        return x
    import torch.distributed.nn.functional as dist_nn

    with warnings.catch_warnings():  # deprecated in favour of a private API; it works (NOTES.md)
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated.*")
        gathered = torch.cat(dist_nn.all_gather(x.contiguous()))
    # under gloo the all-gather's backward returns wrong gradients when the gradient reaching it
    # is a strided view (e.g. the gathered tensor was transposed afterwards): make it contiguous
    return _ContiguousGrad.apply(gathered)


def gather(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank, without gradient (ids, labels)."""
    size = world()[1]
    if size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def global_pairs(pairs: Pairs, n_local_candidates: int) -> Pairs:
    """``pairs`` of this rank's anchors against the candidates gathered from all ranks."""
    rank, _ = world()
    # per-batch sample ids lie in [0, n_local_candidates): shifting by the rank keeps them unique
    # without a collective or a host sync (every rank has the same number of candidates)
    shift = rank * n_local_candidates if pairs.batch_local else 0
    self_offset = (
        None if pairs.self_offset is None else rank * n_local_candidates + pairs.self_offset
    )
    return Pairs(
        pairs.anchor_ids + shift,
        gather(pairs.candidate_ids + shift),
        self_offset,
        batch_local=False,
    )
