"""SwAV (instance-dense.md §8): Sinkhorn hand values and limits, swapped prediction, invariances,
collapse value, prototype freezing and normalisation, the queue, and two gloo ranks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from gloo import run_on_ranks

from contrastkit.errors import ContrastkitError
from contrastkit.functional.pairs import Pairs
from contrastkit.functional.sinkhorn import sinkhorn
from contrastkit.objectives.context import StepContext
from contrastkit.objectives.swav import SwAVLoss, swapped_prediction

torch.set_num_threads(1)

UNFROZEN = StepContext(n_global=2, step=10**6, epoch=0)


def official_sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """SwAV's ``distributed_sinkhorn`` on one process, literally (exp domain; reference only)."""
    q = torch.exp(scores / epsilon).t()
    q = q / q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q = q / q.sum(dim=1, keepdim=True) / k
        q = q / q.sum(dim=0, keepdim=True) / b
    return (q * b).t()


def reference_loss(
    views: torch.Tensor,
    prototypes: torch.Tensor,
    *,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    iterations: int = 3,
    crops: tuple[int, ...] = (0, 1),
    queues: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """The official training loop's loss with per-view loops; ``views [V, B, D]``."""
    n_views, batch = views.shape[:2]
    z = F.normalize(views, dim=2)
    loss = 0.0
    for i, crop in enumerate(crops):
        with torch.no_grad():
            scores = z[crop] @ prototypes.t()
            if queues is not None:
                scores = torch.cat([queues[i] @ prototypes.t(), scores])
            q = official_sinkhorn(scores, epsilon, iterations)[-batch:]
        subloss = 0.0
        for v in range(n_views):
            if v != crop:
                p = torch.softmax(z[v] @ prototypes.t() / temperature, dim=1)
                subloss = subloss - (q * torch.log(p)).sum(dim=1).mean()
        loss = loss + subloss / (n_views - 1)
    return loss / len(crops)


def make_loss(seed: int = 0, **options) -> SwAVLoss:
    torch.manual_seed(seed)
    options = {"n_prototypes": 7, "freeze_prototypes_steps": 0, **options}
    return SwAVLoss(6, **options).double()


# ---------------------------------------------------------------------------- Sinkhorn


def test_sinkhorn_hand_example():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.7, 0.3, 0.2], [0.6, 0.1, 0.5]])
    codes = sinkhorn(scores, epsilon=0.05, iterations=3)
    expected = torch.tensor(
        [
            [0.9821, 0.0178, 0.0001],
            [0.5015, 0.4952, 0.0033],
            [0.0181, 0.9754, 0.0065],
            [0.0009, 0.0068, 0.9923],
        ]
    )
    torch.testing.assert_close(codes, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(
        codes.sum(0), torch.tensor([1.5027, 1.4951, 1.0023]), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(codes.sum(1), torch.ones(4), atol=1e-6, rtol=0)
    assert codes.dtype == torch.float32 and not codes.requires_grad


def test_sinkhorn_matches_the_official_algorithm_and_survives_where_it_overflows():
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(9, 5, generator=generator, dtype=torch.float64) * 2 - 1
    for epsilon, iterations in ((0.05, 3), (0.3, 1), (0.05, 10)):
        torch.testing.assert_close(
            sinkhorn(scores, epsilon, iterations), official_sinkhorn(scores, epsilon, iterations)
        )
    # ε = 0.01 puts exp(S/ε) past float32's range: the exp-domain algorithm gives NaN there
    assert official_sinkhorn(scores.float(), 0.01, 3).isnan().any()
    codes = sinkhorn(scores.float(), 0.01, 3)
    torch.testing.assert_close(
        codes.double(), official_sinkhorn(scores, 0.01, 3), atol=1e-5, rtol=0
    )
    # the columns approach B/K as the iterations converge
    torch.testing.assert_close(
        sinkhorn(scores, 0.05, 200).sum(0), torch.full((5,), 9 / 5.0, dtype=torch.float64)
    )


def test_sinkhorn_epsilon_limits():
    # the best equipartition (0→1, 1→0, 2→2; total 1.9) is not the row argmax (0 for every row)
    scores = torch.tensor([[0.9, 0.8, 0.0], [0.8, 0.1, 0.0], [0.5, 0.4, 0.3]])
    hard = sinkhorn(scores, epsilon=0.003, iterations=100)
    torch.testing.assert_close(
        hard, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), atol=1e-2, rtol=0
    )
    uniform = sinkhorn(scores, epsilon=1e4, iterations=3)
    torch.testing.assert_close(uniform, torch.full((3, 3), 1 / 3), atol=1e-4, rtol=0)


def test_sinkhorn_is_equivariant_to_permuting_prototypes_and_samples():
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    codes = sinkhorn(scores)
    columns, rows = torch.randperm(5, generator=generator), torch.randperm(6, generator=generator)
    torch.testing.assert_close(sinkhorn(scores[:, columns]), codes[:, columns])
    torch.testing.assert_close(sinkhorn(scores[rows]), codes[rows])


def test_sinkhorn_rejects_bad_arguments():
    with pytest.raises(ContrastkitError):
        sinkhorn(torch.zeros(3))
    with pytest.raises(ContrastkitError):
        sinkhorn(torch.zeros(3, 2), epsilon=0.0)
    with pytest.raises(ContrastkitError):
        sinkhorn(torch.zeros(3, 2), iterations=0)


# ---------------------------------------------------------------------------- the loss


def test_one_hot_codes_reduce_to_cross_entropy():
    generator = torch.Generator().manual_seed(2)
    scores = torch.randn(5, 4, generator=generator)
    labels = torch.tensor([0, 3, 1, 1, 2])
    one_hot = F.one_hot(labels, 4).float()
    torch.testing.assert_close(
        swapped_prediction(one_hot, scores, 0.1), F.cross_entropy(scores / 0.1, labels)
    )


@pytest.mark.parametrize("n_views", [2, 4])
def test_loss_and_gradients_match_the_official_loop(n_views):
    generator = torch.Generator().manual_seed(3)
    views = torch.randn(n_views, 5, 6, generator=generator, dtype=torch.float64)
    loss_fn = make_loss()
    z = views.reshape(-1, 6).clone().requires_grad_(True)
    loss = loss_fn(z, Pairs.views(5, n_views), UNFROZEN)
    loss.backward()

    prototypes = F.normalize(loss_fn.prototypes.weight.detach(), dim=1).requires_grad_(True)
    reference_views = views.clone().requires_grad_(True)
    reference = reference_loss(reference_views, prototypes)
    reference.backward()
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(z.grad, reference_views.grad.reshape(-1, 6))
    torch.testing.assert_close(loss_fn.prototypes.weight.grad, prototypes.grad)
    assert z.grad.abs().sum() > 0
    assert set(loss_fn.logged) == {"code_max"} and 1 / 7 <= loss_fn.logged["code_max"] <= 1


def test_permuting_prototypes_leaves_the_loss_unchanged():
    generator = torch.Generator().manual_seed(4)
    z = torch.randn(3 * 5, 6, generator=generator, dtype=torch.float64)
    loss_fn = make_loss()
    loss = loss_fn(z, Pairs.views(5, 3), UNFROZEN)
    with torch.no_grad():
        loss_fn.prototypes.weight.copy_(
            loss_fn.prototypes.weight[torch.tensor([3, 1, 6, 0, 2, 5, 4])]
        )
    torch.testing.assert_close(loss_fn(z, Pairs.views(5, 3), UNFROZEN), loss)


def test_collapse_gives_uniform_codes_and_log_k():
    k, d = 3000, 8
    loss_fn = SwAVLoss(d, n_prototypes=k)
    with torch.no_grad():
        loss_fn.prototypes.weight[:, 0] = 0  # every prototype orthogonal to the features below
    z = torch.zeros(2 * 4, d)
    z[:, 0] = 2.0  # identical features for every sample and view
    loss = loss_fn(z, Pairs.views(4, 2), UNFROZEN)
    assert loss.item() == pytest.approx(8.006368, abs=1e-5)
    assert math.log(k) == pytest.approx(8.006368, abs=1e-6)
    assert loss_fn.logged["code_max"].item() == pytest.approx(1 / k, rel=1e-4)

    # identical features but unequal scores: still uniform codes, so the loss is log K + KL(u‖p)
    loss_fn = SwAVLoss(d, n_prototypes=k)
    z = torch.ones(2 * 4, d)
    loss = loss_fn(z, Pairs.views(4, 2), UNFROZEN)
    scores = F.normalize(z[:1], dim=1) @ loss_fn.prototypes.weight.detach().t()
    torch.testing.assert_close(sinkhorn(scores.repeat(4, 1)), torch.full((4, k), 1 / k))
    log_p = torch.log_softmax(scores / 0.1, dim=1)
    kl = (-math.log(k) - log_p).mean()
    assert loss.item() == pytest.approx(math.log(k) + kl.item(), rel=1e-5)
    assert loss.item() > math.log(k) + 1e-3


def test_prototypes_are_renormalised_in_training_only():
    loss_fn = make_loss()
    with torch.no_grad():
        loss_fn.prototypes.weight.copy_(3.0 * F.normalize(loss_fn.prototypes.weight, dim=1))
    z = torch.randn(10, 6, dtype=torch.float64)
    loss_fn.eval()
    eval_loss = loss_fn(z, Pairs.views(5), UNFROZEN)
    assert loss_fn.prototypes.weight.norm(dim=1).sub(3.0).abs().max() < 1e-6  # untouched
    loss_fn.train()
    train_loss = loss_fn(z, Pairs.views(5), UNFROZEN)
    torch.testing.assert_close(
        loss_fn.prototypes.weight.norm(dim=1), torch.ones(7, dtype=torch.float64)
    )
    torch.testing.assert_close(train_loss, eval_loss)  # both use the normalised prototypes


def test_prototypes_get_no_gradient_while_frozen():
    z0 = torch.randn(3 * 4, 6, dtype=torch.float64)
    grads = {}
    for step in (0, 312, 313):
        loss_fn = make_loss(freeze_prototypes_steps=313)
        z = z0.clone().requires_grad_(True)
        loss_fn(z, Pairs.views(4, 3), StepContext(n_global=2, step=step)).backward()
        grads[step] = (loss_fn.prototypes.weight.grad, z.grad)
    assert grads[0][0] is None and grads[312][0] is None
    assert grads[313][0] is not None and grads[313][0].abs().sum() > 0
    # freezing only drops the prototype gradient, as zeroing it after backward does
    torch.testing.assert_close(grads[0][1], grads[313][1])


def test_queue_is_used_only_when_full_and_from_the_start_epoch():
    batch, n_views = 3, 3
    generator = torch.Generator().manual_seed(5)
    steps = [
        torch.randn(n_views, batch, 6, generator=generator, dtype=torch.float64) for _ in range(4)
    ]
    loss_fn = make_loss(queue_size=2 * batch, queue_start_epoch=1)
    prototypes = F.normalize(loss_fn.prototypes.weight.detach(), dim=1)
    pairs = Pairs.views(batch, n_views)

    def run(views: torch.Tensor, epoch: int) -> torch.Tensor:
        context = StepContext(n_global=2, step=10**6, epoch=epoch)
        return loss_fn(views.reshape(-1, 6), pairs, context)

    torch.testing.assert_close(run(steps[0], epoch=0), reference_loss(steps[0], prototypes))
    assert len(loss_fn.queues) == 0  # nothing queued before the start epoch
    torch.testing.assert_close(run(steps[1], epoch=1), reference_loss(steps[1], prototypes))
    torch.testing.assert_close(run(steps[2], epoch=1), reference_loss(steps[2], prototypes))
    assert all(queue.full for queue in loss_fn.queues)
    # the queue holds z of the two previous steps (newest first) for crops 0 and 1
    queues = [F.normalize(torch.cat([steps[2][c], steps[1][c]]), dim=1) for c in (0, 1)]
    for queue, expected in zip(loss_fn.queues, queues, strict=True):
        torch.testing.assert_close(queue(), expected)
    loss = run(steps[3], epoch=1)
    torch.testing.assert_close(loss, reference_loss(steps[3], prototypes, queues=queues))
    assert (loss - reference_loss(steps[3], prototypes)).abs() > 1e-6  # the queue changed codes

    # eval forwards do not fill it; a checkpoint restores it into a fresh module
    loss_fn.eval()
    before = [queue().clone() for queue in loss_fn.queues]
    run(steps[0], epoch=1)
    for queue, rows in zip(loss_fn.queues, before, strict=True):
        torch.testing.assert_close(queue(), rows)
    restored = make_loss(seed=9, queue_size=2 * batch, queue_start_epoch=1)
    restored.load_state_dict(loss_fn.state_dict())
    for queue, rows in zip(restored.queues, before, strict=True):
        torch.testing.assert_close(queue(), rows)
        assert queue.full


def test_autocast_leaves_the_loss_in_float32():
    generator = torch.Generator().manual_seed(6)
    z = torch.randn(3 * 5, 6, generator=generator)
    loss_fn = make_loss().float()
    loss = loss_fn(z, Pairs.views(5, 3), UNFROZEN)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast_loss = loss_fn(z, Pairs.views(5, 3), UNFROZEN)
    assert autocast_loss.dtype == torch.float32
    torch.testing.assert_close(autocast_loss, loss)


def test_bad_inputs_raise():
    loss_fn = make_loss()
    with pytest.raises(ContrastkitError, match="embedding_dim"):
        loss_fn(torch.randn(10, 5, dtype=torch.float64), Pairs.views(5), UNFROZEN)
    with pytest.raises(ContrastkitError, match="two view-major"):
        loss_fn(torch.randn(5, 6, dtype=torch.float64), Pairs.cross(5), UNFROZEN)
    with pytest.raises(ContrastkitError, match="crops_for_assign"):
        loss_fn(torch.randn(12, 6, dtype=torch.float64), Pairs.views(4, 3), StepContext(n_global=1))
    with pytest.raises(ContrastkitError):
        SwAVLoss(6, crops_for_assign=(0, 0))
    with pytest.raises(ContrastkitError):
        SwAVLoss(6, temperature=0.0)


# ---------------------------------------------------------------------------- two gloo ranks

WORLD, LOCAL, VIEWS = 2, 4, 3


def global_views(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(VIEWS, WORLD * LOCAL, 6, generator=generator, dtype=torch.float64)


def local_rows(views: torch.Tensor, rank: int) -> torch.Tensor:
    return views[:, rank * LOCAL : (rank + 1) * LOCAL].reshape(-1, 6)


def worker(rank: int) -> dict:
    """What one rank computes (run in a gloo process group by ``run_on_ranks``)."""
    out = {}
    scores = global_views(10)[0, :, :5]
    out["codes"] = sinkhorn(scores[rank * LOCAL : (rank + 1) * LOCAL])

    loss_fn = make_loss()
    z = local_rows(global_views(11), rank).clone().requires_grad_(True)
    loss = loss_fn(z, Pairs.views(LOCAL, VIEWS), UNFROZEN)
    loss.backward()
    out["loss"] = (loss.item(), z.grad.clone(), loss_fn.prototypes.weight.grad.clone())

    loss_fn = make_loss(queue_size=2 * WORLD * LOCAL, queue_start_epoch=0)  # 2 batches per rank
    for seed in (12, 13, 14):
        z = local_rows(global_views(seed), rank).clone().requires_grad_(True)
        loss = loss_fn(z, Pairs.views(LOCAL, VIEWS), UNFROZEN)
    loss.backward()
    out["queue"] = (loss.item(), z.grad.clone(), loss_fn.prototypes.weight.grad.clone())
    return out


@pytest.fixture(scope="module")
def ranks() -> dict:
    return run_on_ranks(worker, WORLD)


def test_two_ranks_sinkhorn_equals_one_process(ranks):
    codes = sinkhorn(global_views(10)[0, :, :5])
    for rank in range(WORLD):
        torch.testing.assert_close(ranks[rank]["codes"], codes[rank * LOCAL : (rank + 1) * LOCAL])


@pytest.mark.parametrize("case", ["loss", "queue"])
def test_two_ranks_loss_and_gradients_equal_one_process(ranks, case):
    if case == "loss":
        loss_fn = make_loss()
        seeds = (11,)
    else:
        loss_fn = make_loss(queue_size=2 * WORLD * LOCAL, queue_start_epoch=0)
        seeds = (12, 13, 14)
    for seed in seeds:
        views = global_views(seed)
        z = views.reshape(-1, 6).clone().requires_grad_(True)
        loss = loss_fn(z, Pairs.views(WORLD * LOCAL, VIEWS), UNFROZEN)
    loss.backward()
    if case == "queue":  # the queue is in use at the third step
        no_queue = make_loss()(views.reshape(-1, 6), Pairs.views(WORLD * LOCAL, VIEWS), UNFROZEN)
        assert (loss - no_queue).abs() > 1e-6
    assert sum(ranks[r][case][0] for r in range(WORLD)) / WORLD == pytest.approx(
        loss.item(), rel=1e-9
    )
    grad = z.grad.reshape(VIEWS, WORLD * LOCAL, 6)
    for rank in range(WORLD):
        # each rank's gradient is that of its own mean loss; DDP averages over the WORLD ranks
        expected = grad[:, rank * LOCAL : (rank + 1) * LOCAL].reshape(-1, 6)
        torch.testing.assert_close(ranks[rank][case][1] / WORLD, expected)
    prototype_grad = sum(ranks[r][case][2] for r in range(WORLD)) / WORLD
    torch.testing.assert_close(prototype_grad, loss_fn.prototypes.weight.grad)
