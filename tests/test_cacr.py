"""CACR (instance-dense.md §3): hand value, t limits, V = 2, invariances, agreement with loops
written from the official code, momentum = 2T × MoCo-v3 InfoNCE, weight gradients, and two gloo
processes equal to one process on the whole batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from gloo import run_on_ranks

from contrastkit.errors import ContrastkitError
from contrastkit.functional.cacr import (
    cacr_momentum_loss,
    contrastive_attraction,
    contrastive_repulsion,
)
from contrastkit.functional.infonce import info_nce
from contrastkit.functional.pairs import Pairs
from contrastkit.objectives.cacr import CACRLoss
from contrastkit.objectives.context import StepContext

torch.set_num_threads(1)


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=generator, dtype=torch.float64), dim=-1)


# --- naive references, one sample at a time, following the official loops -----------------------


def naive_small_scale(
    views: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 1.0,
    tau_pos: float = 1.0,
    tau_neg: float = 0.9,
    w1: bool = True,
    w2: bool = True,
    debiased: bool = False,
    tau_plus: float = 0.1,
    rbf_t: float | None = None,
) -> torch.Tensor:
    """``our_loss1 + our_loss2`` of CACR-SSL, per sample, with plain exp/sum/log."""
    n_views, batch, _ = views.shape
    attraction = 0.0
    for v in range(n_views):
        rows = []
        for b in range(batch):
            d = torch.stack(
                [(views[v, b] - views[u, b]).pow(2).sum() for u in range(n_views) if u != v]
            )
            w = torch.exp(tau_pos * d) / torch.exp(tau_pos * d).sum() if w1 else 1 / len(d)
            rows.append((w * alpha * d).sum())
        attraction = attraction + torch.stack(rows).mean()
    attraction = attraction / n_views
    repulsion, count = 0.0, 0
    for v in range(n_views):
        for u in range(v + 1, n_views):
            rows = []
            for b in range(batch):
                d = torch.stack(
                    [(views[v, b] - views[u, j]).pow(2).sum() for j in range(batch) if j != b]
                )
                w = torch.exp(-tau_neg * d) / torch.exp(-tau_neg * d).sum() if w2 else 1 / len(d)
                if rbf_t is not None:
                    rows.append((w * torch.exp(-rbf_t * d)).sum())
                    continue
                row = (w * -beta * d).sum()
                if debiased:
                    positive = (views[v, b] - views[u, b]).pow(2).sum()
                    row = (-tau_plus * positive + row) / (1 - tau_plus)
                rows.append(row)
            rows = torch.stack(rows)
            repulsion = repulsion + (beta * torch.log(rows.mean()) if rbf_t else rows.mean())
            count += 1
    return attraction + repulsion / count


def naive_momentum(
    views: torch.Tensor, keys: torch.Tensor, temperature: float, cost: str, detach: bool = True
) -> torch.Tensor:
    """``cacr_rbfloss`` / ``cacr_euclideanloss`` of CACR-SSL's builder, averaged over key views."""
    q, k = F.normalize(views, dim=-1), F.normalize(keys, dim=-1)
    n_views, batch, _ = q.shape
    total = 0.0
    for i in range(len(k)):
        queries = [q[v] for v in range(n_views) if v != i]
        with torch.set_grad_enabled(not detach):
            d = torch.stack([(qv - k[i]).pow(2).sum(-1) for qv in queries]) / temperature
            p = torch.exp(d) / torch.exp(d).sum(0)
        loss = 0.0
        for vi, qv in enumerate(queries):
            for b in range(batch):
                sims = k[i] @ qv[b]
                if cost == "rbf":
                    ce = -torch.log(
                        torch.exp(sims[b] / temperature) / torch.exp(sims / temperature).sum()
                    )
                    loss = loss + p[vi, b] * ce * 2 * temperature / batch
                else:
                    nc = torch.stack([-(1 - sims[j]) for j in range(batch) if j != b])
                    with torch.set_grad_enabled(not detach):
                        pcr = torch.exp(nc / temperature) / torch.exp(nc / temperature).sum()
                    loss = loss + ((1 - sims[b]) + (pcr * nc).sum()) * p[vi, b]
        total = total + loss
    return total / len(k)


# --- §3(d) 1: hand example; 2: limits ------------------------------------------------------------


def test_attraction_hand_example():
    query = torch.tensor([[1.0, 0.0]])
    positives = torch.tensor([[[0.6, 0.8], [0.0, 1.0]]])
    assert contrastive_attraction(query, positives, tau_pos=1.0).item() == pytest.approx(
        1.722230, abs=1e-6
    )
    assert contrastive_attraction(query, positives, alpha=2.0).item() == pytest.approx(
        2 * 1.722230, abs=2e-6
    )
    # π⁺ = [0.231475, 0.768525] is what gives 1.722230: the uniform ablation gives the mean 1.4
    assert contrastive_attraction(query, positives, weighted=False).item() == pytest.approx(1.4)


def test_attraction_limits():
    query, positives = unit(7, 4, seed=1), unit(7, 5, 4, seed=2)
    d = (query[:, None] - positives).pow(2).sum(-1)
    mean = contrastive_attraction(query, positives, tau_pos=0.0, reduction="none")
    torch.testing.assert_close(mean, d.mean(1))
    hardest = contrastive_attraction(query, positives, tau_pos=1e4, reduction="none")
    torch.testing.assert_close(hardest, d.max(1).values)


def test_repulsion_limits():
    anchors, candidates = unit(6, 4, seed=3), unit(6, 4, seed=4)
    d = torch.cdist(anchors, candidates).pow(2)
    negatives = d[~torch.eye(6, dtype=torch.bool)].reshape(6, 5)
    mean = contrastive_repulsion(anchors, candidates, tau_neg=0.0, reduction="none")
    torch.testing.assert_close(mean, -negatives.mean(1))
    closest = contrastive_repulsion(anchors, candidates, tau_neg=1e4, reduction="none")
    torch.testing.assert_close(closest, -negatives.min(1).values)
    beta = contrastive_repulsion(anchors, candidates, tau_neg=0.0, beta=3.0, reduction="none")
    torch.testing.assert_close(beta, -3 * negatives.mean(1))


# --- §3(d) 3, 4 ----------------------------------------------------------------------------------


def test_two_views_attraction_is_alpha_times_squared_distance():
    views = unit(2, 5, 3, seed=5)
    loss = CACRLoss(alpha=1.7)
    total = loss(views.reshape(10, 3), Pairs.views(5, 2))
    expected = 1.7 * (views[0] - views[1]).pow(2).sum(1).mean()
    torch.testing.assert_close(loss.logged["attraction"], expected)
    torch.testing.assert_close(total, naive_small_scale(views, alpha=1.7))


def test_permuting_positives_negatives_and_samples_leaves_the_loss_unchanged():
    query, positives = unit(5, 3, seed=6), unit(5, 4, 3, seed=7)
    base = contrastive_attraction(query, positives, tau_pos=2.0)
    permuted = contrastive_attraction(query, positives[:, torch.randperm(4)], tau_pos=2.0)
    torch.testing.assert_close(permuted, base)
    anchors, candidates = unit(5, 3, seed=8), unit(9, 3, seed=9)
    base = contrastive_repulsion(anchors, candidates, self_offset=None, tau_neg=2.0)
    permuted = contrastive_repulsion(
        anchors, candidates[torch.randperm(9)], self_offset=None, tau_neg=2.0
    )
    torch.testing.assert_close(permuted, base)
    views = unit(3, 6, 4, seed=10)
    loss, order = CACRLoss(), torch.randperm(6)
    torch.testing.assert_close(
        loss(views[:, order].reshape(18, 4), Pairs.views(6, 3)),
        loss(views.reshape(18, 4), Pairs.views(6, 3)),
    )


# --- agreement with the official loops (values and gradients) -----------------------------------

SMALL_CASES = {
    "default": ({}, {}),
    "scaled": (
        dict(alpha=1.3, beta=0.7, tau_pos=2.0, tau_neg=1.5),
        dict(alpha=1.3, beta=0.7, tau_pos=2.0, tau_neg=1.5),
    ),
    "without_w1": (dict(without_w1=True), dict(w1=False)),
    "without_w2": (dict(without_w2=True), dict(w2=False)),
    "debiased": (dict(debiased=True, tau_plus=0.2), dict(debiased=True, tau_plus=0.2)),
    "rbf": (dict(cost="rbf", beta=0.8), dict(rbf_t=2.0, beta=0.8)),
    "rbf-without_w2": (dict(cost="rbf", without_w2=True), dict(rbf_t=2.0, w2=False)),
}


@pytest.mark.parametrize("name", SMALL_CASES)
def test_small_scale_matches_the_official_loops(name):
    options, naive_options = SMALL_CASES[name]
    raw = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    z = raw.reshape(20, 3).clone().requires_grad_(True)
    loss = CACRLoss(**options)(z, Pairs.views(5, 4))
    loss.backward()
    z_naive = raw.clone().requires_grad_(True)
    expected = naive_small_scale(F.normalize(z_naive, dim=-1), **naive_options)
    expected.backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(z.grad, z_naive.grad.reshape(20, 3))


@pytest.mark.parametrize("cost", ["rbf", "euclidean"])
def test_momentum_matches_the_official_loops(cost):
    generator = torch.Generator().manual_seed(12)
    views = torch.randn(4, 5, 3, generator=generator, dtype=torch.float64)
    keys = torch.randn(2, 5, 3, generator=generator, dtype=torch.float64)
    z = views.reshape(20, 3).clone().requires_grad_(True)
    context = StepContext(targets=keys.reshape(10, 3))
    loss = CACRLoss("momentum", cost=cost, temperature=0.4)(z, Pairs.views(5, 4), context)
    loss.backward()
    z_naive = views.clone().requires_grad_(True)
    expected = naive_momentum(z_naive, keys, 0.4, cost)
    expected.backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(z.grad, z_naive.grad.reshape(20, 3))


# --- §3(d) 5: momentum RBF with one query view --------------------------------------------------


def test_momentum_rbf_with_one_query_view_is_2t_times_moco_v3_infonce():
    q, k = unit(8, 6, seed=13), unit(8, 6, seed=14)
    for temperature in (0.2, 1.0):
        moco_v3 = info_nce(q, Pairs.cross(8), k, temperature=temperature, distributed=False)
        loss = cacr_momentum_loss(q[None], k, temperature=temperature)
        torch.testing.assert_close(loss, 2 * temperature * moco_v3)
    # two views: each key view has one query view, so CACR is MoCo v3's symmetric loss / 2
    views, keys = unit(2, 8, 6, seed=15), unit(2, 8, 6, seed=16)
    loss = CACRLoss("momentum", temperature=0.2, distributed=False)(
        views.reshape(16, 6), Pairs.views(8), StepContext(targets=keys.reshape(16, 6))
    )
    ctr = [
        2 * 0.2 * info_nce(views[1 - i], Pairs.cross(8), keys[i], temperature=0.2) for i in (0, 1)
    ]
    torch.testing.assert_close(loss, (ctr[0] + ctr[1]) / 2)


# --- §3(d) 6: gradients through the weights ------------------------------------------------------


def test_small_scale_gradients_flow_through_the_weights():
    raw = unit(3, 6, 4, seed=17).reshape(18, 4)
    grads = {}
    for detach in (False, True):
        z = raw.clone().requires_grad_(True)
        CACRLoss(detach_weights=detach)(z, Pairs.views(6, 3)).backward()
        grads[detach] = z.grad
    assert (grads[False] - grads[True]).abs().max() > 1e-3  # the weights carry gradient
    # and detaching is exactly "weights as constants"
    query, positives = unit(4, 3, seed=18), unit(4, 3, 3, seed=19).requires_grad_(True)
    contrastive_attraction(
        query, positives, tau_pos=2.0, detach_weights=True, normalize=False
    ).backward()
    d = (query[:, None] - positives).pow(2).sum(-1)
    w = torch.softmax(2.0 * d, 1).detach()
    expected = torch.autograd.grad((w * d).sum(1).mean(), positives)[0]
    torch.testing.assert_close(positives.grad, expected)


def test_momentum_weights_carry_no_gradient_by_default():
    views, keys = unit(3, 6, 4, seed=20), unit(2, 6, 4, seed=21)
    grads = {}
    for detach in (True, False):
        z = views.reshape(18, 4).clone().requires_grad_(True)
        loss = CACRLoss("momentum", detach_weights=detach)
        loss(z, Pairs.views(6, 3), StepContext(targets=keys.reshape(12, 4))).backward()
        grads[detach] = z.grad
    z_naive = views.clone().requires_grad_(True)
    naive_momentum(z_naive, keys, 1.0, "rbf", detach=False).backward()
    torch.testing.assert_close(grads[False], z_naive.grad.reshape(18, 4))
    assert (grads[False] - grads[True]).abs().max() > 1e-4
    assert CACRLoss("momentum").detach_weights and not CACRLoss().detach_weights


# --- errors --------------------------------------------------------------------------------------


def test_bad_inputs_raise_contrastkit_errors():
    z = unit(12, 4, seed=22)
    with pytest.raises(ContrastkitError, match="variant"):
        CACRLoss("imagenet")
    with pytest.raises(ContrastkitError, match=r"Pairs\.views"):
        CACRLoss()(z, Pairs.cross(12))
    with pytest.raises(ContrastkitError, match="targets"):
        CACRLoss("momentum")(z, Pairs.views(6))
    with pytest.raises(ContrastkitError, match="key views"):
        CACRLoss("momentum")(z, Pairs.views(6), StepContext(targets=unit(5, 4)))
    with pytest.raises(ContrastkitError, match="two samples"):
        CACRLoss(distributed=False)(unit(2, 4), Pairs.views(1))
    with pytest.raises(ContrastkitError, match="debiased"):
        contrastive_repulsion(z, z, self_offset=None, debiased=True)
    with pytest.raises(ContrastkitError, match="positives"):
        contrastive_attraction(z, z)


# --- two gloo processes vs one process on the whole batch ---------------------------------------

WORLD, LOCAL, VIEWS, KEYS, DIM = 2, 3, 3, 2, 5
DIST_CASES = {
    "small": dict(),
    "small-debiased": dict(debiased=True, tau_pos=2.0),
    "small-rbf": dict(cost="rbf"),
    "momentum-rbf": dict(variant="momentum", temperature=0.5),
    "momentum-euclidean": dict(variant="momentum", cost="euclidean", temperature=0.5),
}


def dist_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(23)
    views = torch.randn(VIEWS, WORLD * LOCAL, DIM, generator=generator, dtype=torch.float64)
    keys = torch.randn(KEYS, WORLD * LOCAL, DIM, generator=generator, dtype=torch.float64)
    return views, keys


def run_case(name: str, views: torch.Tensor, keys: torch.Tensor, **options):
    z = views.reshape(-1, DIM).clone().requires_grad_(True)
    batch = views.shape[1]
    context = StepContext(targets=keys.reshape(-1, DIM))
    loss = CACRLoss(**DIST_CASES[name], **options)(z, Pairs.views(batch, VIEWS), context)
    loss.backward()
    return loss.item(), z.grad.reshape(VIEWS, batch, DIM)


def worker(rank: int) -> dict:
    """What one rank computes (run in a gloo process group by ``run_on_ranks``)."""
    views, keys = dist_batch()
    rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
    return {name: run_case(name, views[:, rows], keys[:, rows]) for name in DIST_CASES}


@pytest.fixture(scope="module")
def ranks() -> dict:
    return run_on_ranks(worker, WORLD)


@pytest.mark.parametrize("name", DIST_CASES)
def test_two_ranks_equal_one_process_on_the_whole_batch(ranks, name):
    views, keys = dist_batch()
    reference_loss, reference_grad = run_case(name, views, keys, distributed=False)
    # the Euclidean momentum cost sums over the batch (official), the others average
    scale = 1 if name == "momentum-euclidean" else WORLD
    assert sum(ranks[r][name][0] for r in range(WORLD)) / scale == pytest.approx(
        reference_loss, rel=1e-9
    )
    for rank in range(WORLD):
        rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
        torch.testing.assert_close(ranks[rank][name][1] / scale, reference_grad[:, rows])
