"""GroCo (instance-dense.md §7): hand values, the soft permutation, invariances, limits, stop-grad,
agreement with a naive loop over a hand-written sorting network, and two gloo ranks."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from gloo import run_on_ranks

from contrastkit.errors import ContrastkitError
from contrastkit.functional.pairs import Pairs
from contrastkit.functional.sorting import (
    groco_loss,
    soft_sort,
    sorting_bce_terms,
    sorting_network,
)
from contrastkit.objectives.context import StepContext
from contrastkit.objectives.groco import GroCoLoss, groco_similarities

torch.set_num_threads(1)


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# ---------------------------------------------------------------------------- hand values


def test_closed_form_for_one_negative_and_one_positive():
    assert groco_loss(t([0.1]), t([0.9])).item() == pytest.approx(0.335785, abs=1e-6)
    generator = torch.Generator().manual_seed(0)
    pos, neg = torch.rand(2, 8, 1, generator=generator, dtype=torch.float64) * 2 - 1
    for beta in (0.5, 1.0, 7.0):
        closed = -torch.log(0.5 + torch.atan(beta * (pos - neg)) / math.pi).mean()
        torch.testing.assert_close(groco_loss(neg, pos, beta), closed)


def test_values_from_the_numpy_port_of_the_official_algorithm():
    assert groco_loss(t([0.1, 0.3]), t([0.9])).item() == pytest.approx(0.234652, abs=1e-6)
    negatives, positives = t([0.1, 0.3, -0.2]), t([0.9, 0.5])
    assert groco_loss(negatives, positives, 1.0).item() == pytest.approx(0.385128, abs=1e-6)
    assert groco_loss(negatives, positives, 100.0).item() == pytest.approx(0.018922, abs=1e-6)


def test_permutation_is_doubly_stochastic_and_the_two_terms_agree():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, 11, generator=generator, dtype=torch.float64)
    ranked, perm = soft_sort(x, 1.0)
    ones = torch.ones(6, 11, dtype=torch.float64)
    torch.testing.assert_close(perm.sum(dim=2), ones, atol=1e-6, rtol=0)
    torch.testing.assert_close(perm.sum(dim=1), ones, atol=1e-6, rtol=0)
    torch.testing.assert_close(ranked, (x.unsqueeze(1) @ perm).squeeze(1))  # sort(x) ≈ x @ P
    # steep comparators: P[b, i, j] = 1 where input i has ascending rank j
    _, hard = soft_sort(x, 1e6)
    expected = F.one_hot(x.argsort(dim=1).argsort(dim=1), 11).double()
    torch.testing.assert_close(hard, expected, atol=1e-3, rtol=0)
    positive_term, negative_term = sorting_bce_terms(x[:, :9], x[:, 9:])
    torch.testing.assert_close(positive_term, negative_term, atol=1e-6, rtol=0)
    assert len(sorting_network(11, 1.0).sorting_network) == 11  # odd-even: n layers
    assert sorting_network(11, 1.0, "cpu") is sorting_network(11, 1.0, torch.device("cpu"))


def test_loss_ignores_the_order_within_each_group():
    generator = torch.Generator().manual_seed(2)
    negatives = torch.rand(5, 4, generator=generator, dtype=torch.float64)
    positives = torch.rand(5, 3, generator=generator, dtype=torch.float64)
    loss = groco_loss(negatives, positives)
    torch.testing.assert_close(
        groco_loss(negatives[:, [2, 0, 3, 1]], positives[:, [1, 2, 0]]), loss
    )


def test_loss_falls_as_the_positive_rises_and_vanishes_under_separation():
    negatives = t([0.1, 0.3, -0.2])
    values = [groco_loss(negatives, t([p, 0.5])).item() for p in (-0.5, 0.0, 0.4, 0.8, 1.0)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert groco_loss(negatives, t([0.9, 0.8]), 1e5).item() < 1e-4
    assert groco_loss(negatives, t([0.9, 0.8]), 1.0).item() > 0.1


def test_stop_grad_leaves_positives_and_negatives_constant():
    generator = torch.Generator().manual_seed(3)
    for stop_grad in (True, False):
        anchors, positives = torch.randn(2, 4, 5, generator=generator, dtype=torch.float64)
        candidates = torch.cat(
            [anchors, torch.randn(3, 5, generator=generator, dtype=torch.float64)]
        )
        leaves = [x.clone().requires_grad_(True) for x in (anchors, positives, candidates)]
        negative, positive = groco_similarities(
            leaves[0], [leaves[1]], leaves[2], top_k=3, self_offset=0, stop_grad=stop_grad
        )
        groco_loss(negative, positive).backward()
        assert leaves[0].grad.abs().sum() > 0
        for leaf in leaves[1:]:
            if stop_grad:
                assert leaf.grad is None
            else:
                assert leaf.grad.abs().sum() > 0


def test_similarities_skip_the_anchor_and_keep_the_hardest_negatives():
    anchors = t([1.0, 0.0], [0.0, 1.0])
    candidates = t([1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.2], [0.6, -0.8])
    negative, positive = groco_similarities(
        anchors, [t([1.0, 0.0], [1.0, 0.0])], candidates, top_k=2
    )
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(negative, t([s, 0.6], [s, 0.2 / math.sqrt(1.04)]))
    torch.testing.assert_close(positive, t([1.0], [0.0]))


# ---------------------------------------------------------------------------- the objective


def naive_permutation(values: list[torch.Tensor], beta: float) -> torch.Tensor:
    """Odd-even transposition network with Cauchy comparators, one comparator at a time."""
    n = len(values)
    x = list(values)
    perm = [torch.eye(n, dtype=torch.float64)[:, j] for j in range(n)]  # column j: wire j
    for layer in range(n):
        for i in range(layer % 2, n - 1, 2):
            alpha = 0.5 + torch.atan(beta * (x[i + 1] - x[i])) / math.pi
            x[i], x[i + 1] = (
                alpha * x[i] + (1 - alpha) * x[i + 1],
                (1 - alpha) * x[i] + alpha * x[i + 1],
            )
            perm[i], perm[i + 1] = (
                alpha * perm[i] + (1 - alpha) * perm[i + 1],
                (1 - alpha) * perm[i] + alpha * perm[i + 1],
            )
    return torch.stack(perm, dim=1)  # [input, rank]


def naive_groco(
    views: torch.Tensor, n_global: int, top_k: int, beta: float, stop_grad: bool
) -> torch.Tensor:
    """GroCo anchor by anchor from the official description; ``views [V, B, D]``."""
    n_views, batch = views.shape[:2]
    z = F.normalize(views, dim=2)
    other = z.detach() if stop_grad else z
    total = 0.0
    for v in range(n_views):
        view_loss = 0.0
        for b in range(batch):
            positives = sorted(
                (z[v, b] @ other[u, b] for u in range(n_global) if u != v),
                key=lambda s: s.detach().item(),
            )
            candidates = [z[v, b] @ other[v, j] for j in range(batch) if j != b]
            negatives = sorted(
                sorted(candidates, key=lambda s: s.detach().item(), reverse=True)[:top_k],
                key=lambda s: s.detach().item(),
            )
            perm = naive_permutation(negatives + positives, beta)
            n = len(negatives) + len(positives)
            for i in range(n):
                rho = perm[i, :top_k].sum().clamp(0, 1)
                target = 1.0 if i < top_k else 0.0
                bce = -(
                    target * torch.log(rho).clamp(min=-100)
                    + (1 - target) * torch.log(1 - rho).clamp(min=-100)
                )
                view_loss = view_loss + bce / (batch * n)
        total = total + view_loss
    return total / n_views


@pytest.mark.parametrize(
    ("n_views", "n_global", "stop_grad"), [(2, 2, True), (4, 2, True), (3, 3, False), (4, 2, False)]
)
def test_objective_matches_a_naive_loop(n_views, n_global, stop_grad):
    generator = torch.Generator().manual_seed(4)
    views = torch.randn(n_views, 6, 5, generator=generator, dtype=torch.float64)
    loss_fn = GroCoLoss(top_k=3, steepness=2.0, stop_grad=stop_grad)
    z = views.reshape(-1, 5).clone().requires_grad_(True)
    loss = loss_fn(z, Pairs.views(6, n_views), StepContext(n_global=n_global))
    loss.backward()
    reference_views = views.clone().requires_grad_(True)
    reference = naive_groco(reference_views, n_global, 3, 2.0, stop_grad)
    reference.backward()
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(z.grad, reference_views.grad.reshape(-1, 5))
    assert z.grad.abs().sum() > 0
    assert set(loss_fn.logged) == {"pos_min", "neg_max", "pos_neg_gap"}


def test_stop_grad_changes_the_embedding_gradient():
    generator = torch.Generator().manual_seed(5)
    z0 = torch.randn(2 * 6, 5, generator=generator, dtype=torch.float64)
    grads = []
    for stop_grad in (True, False):
        z = z0.clone().requires_grad_(True)
        GroCoLoss(top_k=3, stop_grad=stop_grad)(z, Pairs.views(6)).backward()
        grads.append(z.grad)
    assert (grads[0] - grads[1]).abs().max() > 1e-6


def test_objective_is_invariant_to_permuting_the_batch():
    generator = torch.Generator().manual_seed(6)
    views = torch.randn(3, 8, 4, generator=generator, dtype=torch.float64)
    loss_fn = GroCoLoss(top_k=4)
    context = StepContext(n_global=2)
    loss = loss_fn(views.reshape(-1, 4), Pairs.views(8, 3), context)
    order = torch.randperm(8, generator=generator)
    torch.testing.assert_close(
        loss_fn(views[:, order].reshape(-1, 4), Pairs.views(8, 3), context), loss
    )


def test_autocast_leaves_the_loss_in_float32():
    generator = torch.Generator().manual_seed(8)
    z = torch.randn(2 * 6, 5, generator=generator)
    loss = GroCoLoss(top_k=3)(z, Pairs.views(6))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast_loss = GroCoLoss(top_k=3)(z, Pairs.views(6))
    assert autocast_loss.dtype == torch.float32
    torch.testing.assert_close(autocast_loss, loss)


def test_bad_inputs_raise():
    z = torch.randn(12, 4)
    with pytest.raises(ContrastkitError, match="top_k"):
        GroCoLoss(top_k=6)(z, Pairs.views(6))  # 5 other samples
    with pytest.raises(ContrastkitError, match="view-major"):
        GroCoLoss(top_k=2)(z, Pairs.cross(12))
    with pytest.raises(ContrastkitError, match="n_global"):
        GroCoLoss(top_k=2)(z, Pairs.views(4, 3), StepContext(n_global=1))
    with pytest.raises(ContrastkitError):
        GroCoLoss(steepness=0.0)
    with pytest.raises(ContrastkitError):
        groco_loss(torch.zeros(3, 0), torch.zeros(3, 1))


# ---------------------------------------------------------------------------- two gloo ranks

WORLD, LOCAL, VIEWS = 2, 4, 3
CONTEXT = StepContext(n_global=2)


def global_views() -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.randn(VIEWS, WORLD * LOCAL, 5, generator=generator, dtype=torch.float64)


def worker(rank: int) -> dict:
    """What one rank computes (run in a gloo process group by ``run_on_ranks``)."""
    out = {}
    for stop_grad in (True, False):
        local = global_views()[:, rank * LOCAL : (rank + 1) * LOCAL].reshape(-1, 5)
        z = local.clone().requires_grad_(True)
        loss = GroCoLoss(top_k=5, stop_grad=stop_grad)(z, Pairs.views(LOCAL, VIEWS), CONTEXT)
        loss.backward()
        out[stop_grad] = (loss.item(), z.grad.clone())
    return out


@pytest.fixture(scope="module")
def ranks() -> dict:
    return run_on_ranks(worker, WORLD)


@pytest.mark.parametrize("stop_grad", [True, False])
def test_two_ranks_equal_one_process_on_the_whole_batch(ranks, stop_grad):
    views = global_views()
    z = views.reshape(-1, 5).clone().requires_grad_(True)
    # top_k = 5 > LOCAL − 1: each rank needs the other rank's negatives
    loss = GroCoLoss(top_k=5, stop_grad=stop_grad)(z, Pairs.views(WORLD * LOCAL, VIEWS), CONTEXT)
    loss.backward()
    assert sum(ranks[r][stop_grad][0] for r in range(WORLD)) / WORLD == pytest.approx(
        loss.item(), rel=1e-9
    )
    grad = z.grad.reshape(VIEWS, WORLD * LOCAL, 5)
    for rank in range(WORLD):
        # each rank's gradient is d(sum of the ranks' losses)/d(its rows); DDP divides by WORLD
        expected = grad[:, rank * LOCAL : (rank + 1) * LOCAL].reshape(-1, 5)
        torch.testing.assert_close(ranks[rank][stop_grad][1] / WORLD, expected)
