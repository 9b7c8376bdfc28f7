"""MoCo v2, MoCHi, Feature Transformation and the Hallucinator (spec: instance-dense.md §4, §9,
§10): hand values, limits, naive references and what must (not) receive gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, info_nce
from contrastkit.functional.mixing import (
    extrapolate,
    feature_transform,
    hardest_negatives,
    interpolate,
    mochi_negatives,
    score_record,
)
from contrastkit.nn.momentum import MomentumEncoder, momentum_at
from contrastkit.nn.queue import Queue
from contrastkit.objectives import HallucinatedNTXent, MoCoLoss, NTXentLoss, StepContext

TAU = 0.2


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def naive_moco(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, extra=None) -> torch.Tensor:
    """MoCo's logits [q·k, q·Queueᵀ (, q·Hᵀ)]/τ and CE with target 0, written out per query."""
    losses = []
    for i in range(len(q)):
        logits = [q[i] @ k[i], *list(queue @ q[i])]
        if extra is not None:
            logits += list(extra[i] @ q[i])
        logits = torch.stack(logits) / TAU
        losses.append(-logits[0] + torch.logsumexp(logits, 0))
    return torch.stack(losses).mean()


def moco_loss(q, k, queue, **kw):
    m = len(k)
    weight = torch.cat([q.new_zeros(m), q.new_ones(len(queue))])
    return info_nce(
        q,
        Pairs.cross(m),
        k,
        temperature=TAU,
        negative_weight=weight,
        extra_negatives=queue,
        distributed=False,
        **kw,
    )


# --- the engine with MoCo's structure -----------------------------------------------------------


def test_engine_with_zero_weights_on_other_keys_is_moco():
    q, k, queue = unit(5, 8, seed=1), unit(5, 8, seed=2), unit(12, 8, seed=3)
    assert torch.allclose(moco_loss(q, k, queue), naive_moco(q, k, queue), atol=1e-12)


def test_anchor_negatives_join_only_their_own_anchor():
    q, k, queue, extra = unit(4, 6, seed=1), unit(4, 6, seed=2), unit(7, 6, seed=3), unit(4, 3, 6)
    got = moco_loss(q, k, queue, anchor_negatives=extra)
    assert torch.allclose(got, naive_moco(q, k, queue, extra), atol=1e-12)
    with pytest.raises(ContrastkitError, match="dense"):
        moco_loss(q, k, queue, anchor_negatives=extra, backend="tiled")
    with pytest.raises(ContrastkitError, match=r"\[N, S, D\]"):
        moco_loss(q, k, queue, anchor_negatives=extra[:2])


# --- MoCHi (§4) ----------------------------------------------------------------------------------


def test_mochi_type2_hand_example():
    q, n = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    h = F.normalize(interpolate(q, n, 0.25), dim=0)
    assert torch.allclose(h, torch.tensor([0.316228, 0.948683]), atol=1e-6)
    assert float(q @ h) > float(q @ n)


def test_mixing_limits():
    a, b = unit(3, 4, seed=1), unit(3, 4, seed=2)
    assert torch.equal(interpolate(a, b, 1.0), a) and torch.equal(interpolate(a, b, 0.0), b)
    assert torch.equal(extrapolate(a, b, 0.0), a)


def test_mochi_points_are_unit_mixtures_of_the_hardest_negatives():
    q, queue = unit(6, 8, seed=1), unit(40, 8, seed=2)
    n_hardest, s, s2 = 5, 7, 3
    synthetic = mochi_negatives(
        q,
        queue,
        n_hardest=n_hardest,
        n_pairs=s,
        n_self=s2,
        generator=torch.Generator().manual_seed(0),
    )
    assert synthetic.shape == (6, s + s2, 8) and not synthetic.requires_grad
    assert torch.allclose(synthetic.norm(dim=2), torch.ones(6, s + s2, dtype=synthetic.dtype))
    hardest = hardest_negatives(q, queue, n_hardest)
    assert torch.equal(hardest, (q @ queue.T).topk(n_hardest, dim=1).indices)
    for i in range(6):  # each type-1 point lies in the span of two of its query's hardest rows
        basis = queue[hardest[i]].T  # [D, N]
        for h in synthetic[i, :s]:
            coeff = torch.linalg.lstsq(basis, h[:, None]).solution
            assert torch.allclose(basis @ coeff, h[:, None], atol=1e-5)
            assert (coeff.abs() > 1e-6).sum() <= 2
        for h in synthetic[i, s:]:  # type 2: the query weighs less than the negative
            basis2 = torch.cat([q[i][:, None], basis], dim=1)
            coeff = torch.linalg.lstsq(basis2, h[:, None]).solution.squeeze(1)
            neg = coeff[1:][coeff[1:].abs() > 1e-6]
            assert len(neg) == 1 and 0 <= coeff[0] < neg[0]


def test_synthetic_negatives_never_lower_the_loss_and_only_q_gets_gradient():
    q = unit(4, 8, seed=1).requires_grad_()
    k, queue = unit(4, 8, seed=2), unit(16, 8, seed=3)
    synthetic = mochi_negatives(q.detach(), queue, n_hardest=4, n_pairs=3, n_self=2)
    plain = moco_loss(q, k, queue, normalize=False)
    mixed = moco_loss(q, k, queue, anchor_negatives=synthetic, normalize=False)
    assert mixed > plain
    mixed.backward()
    assert q.grad is not None and synthetic.grad is None and queue.grad is None
    # closed form of ∂L/∂q for one query: (Σ_j p_j c_j − k)/(τ·B) over all candidates c
    cands = torch.cat([k[:1], queue, synthetic[0]])
    p = torch.softmax(cands @ q[0].detach() / TAU, 0)
    assert torch.allclose(q.grad[0], (p @ cands - k[0]) / (TAU * 4), atol=1e-10)


# --- Feature Transformation (§9) ----------------------------------------------------------------


def test_ft_hand_example_and_closed_form():
    q, k = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.6, 0.8]])
    q_hat, k_hat, _ = feature_transform(q, k, q, 0.5, 1.0, torch.tensor([0]))
    assert torch.allclose(q_hat, torch.tensor([[1.2, -0.4]]))
    assert torch.allclose(k_hat, torch.tensor([[0.4, 1.2]]))
    c, delta = 0.6, 0.5
    assert math.isclose(float(q_hat @ k_hat.T), c - 2 * delta * (1 + delta) * (1 - c), abs_tol=1e-6)


def test_ft_limits_and_segment():
    q, k, queue = unit(3, 5, seed=1), unit(3, 5, seed=2), unit(9, 5, seed=3)
    identity = torch.arange(9)
    q1, k1, n1 = feature_transform(q, k, queue, 0.0, 1.0, torch.randperm(9))
    assert torch.equal(q1, q) and torch.equal(k1, k) and torch.equal(n1, queue)
    assert torch.allclose(feature_transform(q, k, queue, 0.3, 0.4, identity)[2], queue)
    order = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    mixed = feature_transform(q, k, queue, 0.3, 0.4, order)[2]
    assert torch.allclose(mixed, 0.4 * queue + 0.6 * queue[order])


def test_score_record():
    q, k, queue = unit(4, 6, seed=1), unit(4, 6, seed=2), unit(10, 6, seed=3)
    record = score_record(q, k, queue, TAU)
    scores = q @ queue.T
    assert record.shape == (4, 5) and (record[:, 1] >= 0).all()
    assert torch.allclose(record[:, 0], scores.mean(1).float())
    assert torch.allclose(record[:, 1], scores.var(1, unbiased=False).float())
    assert torch.allclose(record[:, 2], (q * k).sum(1).float())
    assert torch.allclose(record[:, 3], torch.exp(scores / TAU).mean(1).float())


# --- the Hallucinator (§10) ----------------------------------------------------------------------


def test_hallucinator_extrapolation_hand_example():
    q, k = torch.tensor([1.0, 0.0]), torch.tensor([0.6, 0.8])
    e = extrapolate(q, k, 0.1)
    assert torch.allclose(e, 1.1 * q - 0.1 * k)
    assert math.isclose(float(k @ e), 0.56, abs_tol=1e-6) and float(k @ e) < float(k @ q)


def test_hallucinated_ntxent_is_ntxent_over_four_blocks():
    torch.manual_seed(0)
    loss = HallucinatedNTXent(dim=8, temperature=0.3)
    z = torch.randn(10, 8, requires_grad=True)
    q, k = z.detach().chunk(2)
    torch.manual_seed(1)
    got = loss(z, Pairs.views(5, 2))
    torch.manual_seed(1)
    h = loss.hallucinator(q, k)
    four = torch.cat([q, h, k, k])
    assert torch.allclose(got, NTXentLoss(0.3)(four, Pairs.views(10, 2)), atol=1e-6)
    got.backward()
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in loss.hallucinator.parameters()
    )


# --- the MoCo objective --------------------------------------------------------------------------


def context_for(keys: torch.Tensor, step: int = 0) -> StepContext:
    return StepContext(targets=keys, n_global=2, step=step)


@pytest.mark.parametrize("symmetric", [False, True])
def test_moco_objective_equals_the_written_out_loss_and_enqueues_the_keys(symmetric):
    torch.manual_seed(0)
    loss_fn = MoCoLoss(dim=6, temperature=TAU, queue_size=8, symmetric=symmetric).double()
    queue = loss_fn.queue().clone()
    z = unit(6, 6, seed=1).requires_grad_()  # two views of 3 samples
    keys = unit(6, 6, seed=2)
    got = loss_fn(z, Pairs.views(3, 2), context_for(keys))
    q0, q1 = z.detach().chunk(2)
    k0, k1 = keys.chunk(2)
    want = naive_moco(q0, k1, queue)
    if symmetric:
        want = (want + naive_moco(q1, k0, queue)) / 2
    assert torch.allclose(got, want, atol=1e-10)
    pushed = torch.cat([k1, k0]) if symmetric else k1
    assert torch.allclose(loss_fn.queue()[: len(pushed)], pushed)
    assert torch.equal(loss_fn.queue()[len(pushed) :], queue[: 8 - len(pushed)])
    got.backward()  # the push replaced the buffer, so the graph still back-propagates
    assert z.grad is not None and keys.grad is None
    assert set(loss_fn.logged) >= {"pos_score", "neg_score_mean", "neg_score_var"}


def test_mochi_option_zero_points_is_moco_and_warmup_is_respected():
    z, keys = unit(8, 6, seed=1), unit(8, 6, seed=2)
    torch.manual_seed(0)
    plain = MoCoLoss(dim=6, queue_size=16).double()
    torch.manual_seed(0)
    zero = MoCoLoss(dim=6, queue_size=16, mochi=(4, 0, 0)).double()
    torch.manual_seed(0)
    late = MoCoLoss(dim=6, queue_size=16, mochi=(4, 5, 5), mochi_start_step=10).double()
    ctx = context_for(keys, step=3)
    value = plain(z, Pairs.views(4, 2), ctx)
    assert torch.allclose(zero(z, Pairs.views(4, 2), ctx), value)
    assert torch.allclose(late(z, Pairs.views(4, 2), ctx), value)  # before its start step
    assert late(z, Pairs.views(4, 2), context_for(keys, step=10)) > plain(z, Pairs.views(4, 2), ctx)


def test_ft_enqueues_the_original_keys_and_reduces_the_positive_score():
    torch.manual_seed(0)
    loss_fn = MoCoLoss(dim=6, queue_size=12, symmetric=False, transform=True).double()
    z, keys = unit(8, 6, seed=1), unit(8, 6, seed=2)
    loss_fn(z, Pairs.views(4, 2), context_for(keys))
    assert torch.allclose(loss_fn.queue()[:4], keys[4:])
    plain_pos = (z[:4] * keys[4:]).sum(1).mean()
    assert loss_fn.logged["pos_score"] <= plain_pos + 1e-9  # q̂·k̂ ≤ q·k (λ ≥ 1)


def test_hallucinator_moco_doubles_the_anchors_and_the_enqueued_keys():
    torch.manual_seed(0)
    loss_fn = MoCoLoss(dim=6, queue_size=32, symmetric=True, hallucinate=True)
    z = torch.randn(8, 6, requires_grad=True)
    keys = F.normalize(torch.randn(8, 6), dim=1)
    before = loss_fn.queue().clone()
    loss_fn(z, Pairs.views(4, 2), context_for(keys)).backward()
    k0, k1 = keys.chunk(2)
    assert torch.allclose(loss_fn.queue()[:16], torch.cat([k1, k1, k0, k0]))  # 2·B per direction
    assert torch.equal(loss_fn.queue()[16:], before[:16])
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in loss_fn.hallucinator.parameters()
    )


def test_moco_needs_keys():
    with pytest.raises(ContrastkitError, match=r"model\.momentum"):
        MoCoLoss(dim=4)(torch.randn(4, 4), Pairs.views(2, 2), StepContext())
    with pytest.raises(ContrastkitError, match="mochi"):
        MoCoLoss(dim=4, queue_size=8, mochi=(16, 1, 1))


# --- momentum encoder and queue ------------------------------------------------------------------


def test_momentum_schedule():
    assert momentum_at(0.99, 0.7, "constant") == 0.99
    assert math.isclose(momentum_at(0.99, 0.0, "cosine"), 0.99)
    assert math.isclose(momentum_at(0.99, 0.5, "cosine"), 0.995)
    assert math.isclose(momentum_at(0.99, 1.0, "cosine"), 1.0)
    with pytest.raises(ContrastkitError, match="schedule"):
        momentum_at(0.9, 0.1, "linear")


def test_momentum_update_and_key_order():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(4, 3))
    key = MomentumEncoder(online, base=0.9, bn_groups=3)
    before = key.encoder[0].weight.clone()
    with torch.no_grad():
        online[0].weight.add_(1.0)
    key.update(online)
    assert torch.allclose(key.encoder[0].weight, 0.9 * before + 0.1 * online[0].weight)
    assert not any(p.requires_grad for p in key.parameters())
    x = torch.randn(12, 4)  # no batch statistics: grouped keys equal plain keys, in input order
    assert torch.allclose(key(x), key.encoder(x))


def test_key_bn_groups_use_other_samples_statistics():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    key = MomentumEncoder(online, bn_groups=2)
    x = torch.randn(16, 4)
    assert not torch.allclose(key(x), key.encoder(x))  # per-group statistics


def test_queue_without_sharing_keeps_its_order():
    queue = Queue(5, 2, init="zeros", shared=False)
    assert not queue.full
    queue.push(torch.ones(3, 2))
    queue.push(2 * torch.ones(3, 2))
    assert queue.full
    assert torch.equal(queue()[:, 0], torch.tensor([2.0, 2, 2, 1, 1]))
