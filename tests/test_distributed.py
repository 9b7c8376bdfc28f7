"""Two gloo processes on CPU: local anchors × gathered candidates give the single-process loss on
the whole batch, and gradients that DDP's averaging turns into the single-process gradients."""

from __future__ import annotations

import pytest
import torch
from gloo import run_on_ranks

from contrastkit.functional import Pairs, info_nce
from contrastkit.objectives import MoCoLoss, StepContext

WORLD, LOCAL = 2, 4  # ranks, samples per rank
LABELS = torch.tensor([0, 1, 2, 0, 1, 1, 3, 0])  # one class per global sample


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of 8 samples, laid out rank by rank: [rank 0: view0, view1 | rank 1: ...]."""
    generator = torch.Generator().manual_seed(0)
    views = torch.randn(2, WORLD * LOCAL, 5, generator=generator, dtype=torch.float64)
    rows = [views[v, r * LOCAL : (r + 1) * LOCAL] for r in range(WORLD) for v in range(2)]
    keys = torch.randn(WORLD * LOCAL, 5, generator=generator, dtype=torch.float64)
    return torch.cat(rows), keys


def local_rows(rank: int) -> slice:
    return slice(rank * 2 * LOCAL, (rank + 1) * 2 * LOCAL)


CASES = {
    "views": lambda z, rank, **kw: info_nce(z, Pairs.views(LOCAL), temperature=0.3, **kw),
    "labels": lambda z, rank, **kw: info_nce(
        z, Pairs.labels(LABELS[rank * LOCAL : (rank + 1) * LOCAL], 2), temperature=0.3, **kw
    ),
    "views-tiled": lambda z, rank, **kw: info_nce(
        z, Pairs.views(LOCAL), temperature=0.3, backend="tiled", tile_size=3, **kw
    ),
    "dcl": lambda z, rank, **kw: info_nce(
        z, Pairs.views(LOCAL), temperature=0.3, exclude_positives=True, **kw
    ),
}


def worker(rank: int) -> dict:
    """What one rank computes (run in a gloo process group by ``run_on_ranks``)."""
    z_all, keys = global_batch()
    out = {}
    for name, loss_fn in CASES.items():
        z = z_all[local_rows(rank)].clone().requires_grad_(True)
        loss = loss_fn(z, rank)
        loss.backward()
        out[name] = (loss.item(), z.grad.clone())
    # cross pairs (queries × keys of every rank, MoCo/CLIP style)
    q = z_all[local_rows(rank)][:LOCAL].clone().requires_grad_(True)
    k = keys[rank * LOCAL : (rank + 1) * LOCAL].clone().requires_grad_(True)
    loss = info_nce(q, Pairs.cross(LOCAL), k, temperature=0.2)
    loss.backward()
    out["cross"] = (loss.item(), torch.cat([q.grad, k.grad]))
    # MoCo: local queries × local keys + the shared queue, filled with the keys of every rank
    z = z_all[local_rows(rank)].clone().requires_grad_(True)
    moco, targets = moco_objective(), key_views(keys)[local_rows(rank)]
    loss = moco(z, Pairs.views(LOCAL), StepContext(targets=targets))
    loss.backward()
    out["moco"] = (loss.item(), z.grad.clone())
    out["queue"] = moco.queue().clone()
    return out


def moco_objective() -> MoCoLoss:
    torch.manual_seed(0)  # the same initial queue on every rank
    return MoCoLoss(dim=5, temperature=0.2, queue_size=24, symmetric=True).double()


def key_views(keys: torch.Tensor) -> torch.Tensor:
    """Momentum keys of both views, laid out like ``global_batch`` (two views per rank)."""
    flipped = keys.flip(0)
    rows = [k[r * LOCAL : (r + 1) * LOCAL] for r in range(WORLD) for k in (keys, flipped)]
    return torch.cat(rows)


@pytest.fixture(scope="module")
def ranks() -> dict:
    return run_on_ranks(worker, WORLD)


def single_process() -> dict:
    z_all, keys = global_batch()
    ids = torch.arange(WORLD * LOCAL).reshape(WORLD, LOCAL).repeat_interleave(2, 0).reshape(-1)
    labels = LABELS.reshape(WORLD, LOCAL).repeat_interleave(2, 0).reshape(-1)
    out = {}
    for name, pairs, options in (
        ("views", Pairs(ids, ids, 0), {}),
        ("labels", Pairs(labels, labels, 0), {}),
        ("views-tiled", Pairs(ids, ids, 0), {}),
        ("dcl", Pairs(ids, ids, 0), {"exclude_positives": True}),
    ):
        z = z_all.clone().requires_grad_(True)
        loss = info_nce(z, pairs, temperature=0.3, **options)
        loss.backward()
        out[name] = (loss.item(), z.grad)
    queries = torch.cat([z_all[local_rows(r)][:LOCAL] for r in range(WORLD)]).requires_grad_(True)
    k = keys.clone().requires_grad_(True)
    loss = info_nce(queries, Pairs.cross(WORLD * LOCAL), k, temperature=0.2)
    loss.backward()
    out["cross"] = (loss.item(), (queries.grad, k.grad))
    z = z_all.clone().requires_grad_(True)
    # one process: the rows of both ranks re-laid out view-major over the whole batch
    moco, targets = moco_objective(), key_views(keys)
    q0 = torch.cat([z[local_rows(r)][:LOCAL] for r in range(WORLD)])
    q1 = torch.cat([z[local_rows(r)][LOCAL:] for r in range(WORLD)])
    k0 = torch.cat([targets[local_rows(r)][:LOCAL] for r in range(WORLD)])
    k1 = torch.cat([targets[local_rows(r)][LOCAL:] for r in range(WORLD)])
    loss = moco(
        torch.cat([q0, q1]), Pairs.views(WORLD * LOCAL), StepContext(targets=torch.cat([k0, k1]))
    )
    loss.backward()
    out["moco"] = (loss.item(), z.grad)
    return out


def test_moco_queue_is_filled_from_every_rank(ranks):
    _, keys = global_batch()
    views = key_views(keys)
    # symmetric: each rank enqueues [k1; k0] of its samples; the gather puts rank 0 first
    local = [
        torch.cat([views[local_rows(r)][LOCAL:], views[local_rows(r)][:LOCAL]])
        for r in range(WORLD)
    ]
    expected = torch.nn.functional.normalize(torch.cat(local), dim=1)
    for rank in range(WORLD):
        torch.testing.assert_close(ranks[rank]["queue"][: len(expected)], expected)


@pytest.mark.parametrize("name", [*CASES, "cross", "moco"])
def test_two_ranks_equal_one_process_on_the_whole_batch(ranks, name):
    reference_loss, reference_grad = single_process()[name]
    assert sum(ranks[r][name][0] for r in range(WORLD)) / WORLD == pytest.approx(
        reference_loss, rel=1e-9
    )
    for rank in range(WORLD):
        # each rank's gradient is d(sum of the ranks' losses)/d(its rows); DDP divides by WORLD
        grad = ranks[rank][name][1] / WORLD
        if name == "cross":
            q_grad, k_grad = reference_grad
            rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
            expected = torch.cat([q_grad[rows], k_grad[rows]])
        else:
            expected = reference_grad[local_rows(rank)]
        torch.testing.assert_close(grad, expected)
