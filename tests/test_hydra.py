"""Hydra's arbitrary positive pairs (instance-dense.md §6): gated cosines against the naive
``[N, M, D]`` filter, the multi-positive loss against a naive loop (values and gradients), hand
values, the spec's unit tests (symmetry, scale invariance, hard gates, masks, SupCon-style
reduction, row shifts, warm-up), the limit to the InfoNCE engine, samplers, gate families, the
read-out and plot, label errors and two gloo ranks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from gloo import run_on_ranks

from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, info_nce
from contrastkit.functional.hydra import (
    bernoulli_entropy,
    class_pair_masks,
    gate_statistics,
    gated_cosine,
    hydra_loss,
    multi_positive_loss,
    relatedness,
    sample_partners,
)
from contrastkit.nn.gates import (
    BasicGate,
    ClassPairGate,
    GumbelGate,
    OpenGate,
    StochasticGate,
    build_gate,
)
from contrastkit.objectives import HydraLoss, StepContext
from contrastkit.objectives.supervised import plot_relatedness

Tensor = torch.Tensor


def randn(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def naive_gated_logits(q: Tensor, k: Tensor, gates: Tensor, scale: float) -> Tensor:
    """The official ``Filter``: gate → normalise, each anchor's gate on every key ``[N, M, D]``."""
    gated_q = F.normalize(q * gates, dim=-1)
    gated_k = F.normalize(k[None, :, :] * gates[:, None, :], dim=-1)
    return scale * torch.einsum("nd,nmd->nm", gated_q, gated_k)


def naive_hydra(q, k, gates, labels, partners, key_labels, scale) -> Tensor:
    """One positive pair at a time: its own denominator (itself + the negatives)."""
    logits = naive_gated_logits(q, k, gates, scale)
    terms = []
    for i in range(len(q)):
        negatives = [m for m in range(len(k)) if key_labels[m] not in (labels[i], partners[i])]
        for n in range(len(k)):
            if key_labels[n] == partners[i]:
                row = torch.stack([logits[i, n], *[logits[i, m] for m in negatives]])
                terms.append(torch.logsumexp(row, 0) - logits[i, n])
    return torch.stack(terms).mean() if terms else torch.zeros((), dtype=q.dtype)


LABELS = torch.tensor([0, 1, 2, 0, 1, 3])
PARTNERS = torch.tensor([1, 1, 0, 3, 2, 0])


def test_gated_cosine_equals_the_naive_filter():
    q, k, gates = randn(6, 5), randn(7, 5, seed=1), torch.rand(6, 5, dtype=torch.float64)
    torch.testing.assert_close(gated_cosine(q, k, gates), naive_gated_logits(q, k, gates, 1.0))
    plain = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T
    torch.testing.assert_close(gated_cosine(q, k, None), plain)
    torch.testing.assert_close(gated_cosine(q, k, torch.ones_like(q)), plain)


def test_hand_values():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    keys, y, y2 = torch.tensor([1, 2, 0]), torch.tensor([0]), torch.tensor([1])
    # positive: key 0 (class y'=1); key 2 (class y=0) excluded; key 1 the only negative (logit 0)
    expected = math.log(1 + math.exp(-1))  # 0.313262
    for gate in (None, torch.tensor([[1.0, 0.0]]), torch.tensor([[3.0, 3.0]])):
        loss = hydra_loss(q, k, gate, y, y2, keys, scale=1.0)
        assert loss.item() == pytest.approx(expected, abs=1e-6)
    # a gate that closes q's only dimension: every logit 0, loss log 2
    closed = hydra_loss(q, k, torch.tensor([[0.0, 1.0]]), y, y2, keys, scale=1.0)
    assert closed.item() == pytest.approx(math.log(2), abs=1e-6)


def test_matches_the_naive_loop_with_gradients():
    q, k = randn(6, 4).requires_grad_(True), randn(6, 4, seed=1).requires_grad_(True)
    gates = torch.rand(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    gates.requires_grad_(True)
    fast = hydra_loss(q, k, gates, LABELS, PARTNERS, scale=7.0)
    fast_grads = torch.autograd.grad(fast, (q, k, gates))
    slow = naive_hydra(q, k, gates, LABELS, PARTNERS, LABELS, 7.0)
    slow_grads = torch.autograd.grad(slow, (q, k, gates))
    torch.testing.assert_close(fast, slow)
    for a, b in zip(fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_gate_symmetry_in_eval_mode():
    for fuse in (True, False):
        torch.manual_seed(0)
        gate = BasicGate(5, 8, label_dim=16, hidden_dim=32, fuse=fuse)
        gate(torch.arange(5).repeat(4), torch.randint(0, 5, (20,)))  # move the BN statistics
        gate.eval()
        a, b = torch.tensor([0, 1, 2, 4]), torch.tensor([3, 1, 4, 0])
        torch.testing.assert_close(gate(a, b), gate(b, a))
        pairs = gate.pair_gates()
        torch.testing.assert_close(pairs, pairs.transpose(0, 1))
        assert pairs.shape == (5, 5, 8) and ((pairs > 0) & (pairs < 1)).all()


def test_scale_of_the_gate_and_row_shifts_leave_the_loss_unchanged():
    q, k, gates = randn(6, 5), randn(6, 5, seed=1), torch.rand(6, 5, dtype=torch.float64)
    loss = hydra_loss(q, k, gates, LABELS, PARTNERS, scale=5.0)
    torch.testing.assert_close(hydra_loss(q, k, 3.7 * gates, LABELS, PARTNERS, scale=5.0), loss)
    logits = 5.0 * gated_cosine(q, k, gates)
    positive, excluded = class_pair_masks(LABELS, PARTNERS, LABELS)
    shifted = logits - randn(6, 1, seed=3) * 10
    torch.testing.assert_close(multi_positive_loss(shifted, positive, excluded), loss)


def test_hard_gates_reduce_to_one_dimensional_cosines():
    q, k = randn(6, 5), randn(6, 5, seed=1)
    gates = torch.zeros(6, 5, dtype=torch.float64)
    gates[:, 0] = 1.0
    logits = gated_cosine(q, k, gates)
    torch.testing.assert_close(logits, torch.sign(q[:, :1]) * torch.sign(k[:, 0])[None, :])
    one_dim = hydra_loss(q[:, :1], k[:, :1], None, LABELS, PARTNERS, scale=4.0)
    torch.testing.assert_close(hydra_loss(q, k, gates, LABELS, PARTNERS, scale=4.0), one_dim)


def test_masks():
    keys = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    positive, excluded = class_pair_masks(LABELS, PARTNERS, keys)
    negative = ~excluded
    assert not (positive & negative).any()
    assert not (negative & (LABELS[:, None] == keys[None, :])).any()  # own class never negative
    assert torch.equal(positive, PARTNERS[:, None] == keys[None, :])


def test_open_gate_with_identical_pairs_is_a_supcon_style_loss():
    """OpenGate, y' = y: positives are the same-class keys; each one's denominator is itself and
    the other-class keys (an independent implementation, no Hydra code)."""
    q, k = randn(6, 4), randn(6, 4, seed=1)
    scale = 1 / 0.2
    logits = scale * F.normalize(q, dim=1) @ F.normalize(k, dim=1).T
    terms = []
    for i in range(6):
        other = logits[i, LABELS[i] != LABELS]
        for n in torch.nonzero(LABELS[i] == LABELS).flatten():
            terms.append(-F.log_softmax(torch.cat([logits[i, n : n + 1], other]), 0)[0])
    expected = torch.stack(terms).mean()
    loss = hydra_loss(q, k, OpenGate(4, 4)(LABELS).double(), LABELS, LABELS, scale=scale)
    torch.testing.assert_close(loss, expected)


def test_limit_to_the_engine_with_one_positive_per_anchor():
    q, k = randn(5, 4), randn(5, 4, seed=1)
    unique = torch.arange(5)
    loss = hydra_loss(q, k, None, unique, unique, scale=1 / 0.3)
    torch.testing.assert_close(loss, info_nce(q, Pairs.cross(5), k, temperature=0.3))


def test_no_positive_and_no_negative_stay_finite():
    q, k = randn(3, 4).requires_grad_(True), randn(3, 4, seed=1)
    labels = torch.tensor([0, 0, 0])
    nothing = hydra_loss(q, k, None, labels, torch.tensor([5, 5, 5]), scale=10.0)
    assert nothing.item() == 0.0
    only_positives = hydra_loss(q, k, None, labels, labels, scale=10.0)  # no negatives: 0 each
    assert only_positives.item() == pytest.approx(0.0, abs=1e-12)
    (grad,) = torch.autograd.grad(only_positives + nothing, q)
    assert torch.isfinite(grad).all()


def test_samplers():
    labels = torch.tensor([0, 1, 2, 3, 1, 1, 0])
    assert torch.equal(sample_partners(labels, "identical"), labels)
    torch.manual_seed(0)
    arbitrary = sample_partners(labels, "arbitrary")
    assert torch.equal(arbitrary.sort().values, labels.sort().values)
    distinct = sample_partners(labels.repeat(20), "distinct", num_classes=4)
    assert (distinct != labels.repeat(20)).all() and distinct.min() >= 0 and distinct.max() < 4
    assert len(set(distinct.tolist())) == 4
    with pytest.raises(ContrastkitError, match="num_classes"):
        sample_partners(labels, "distinct")
    with pytest.raises(ContrastkitError, match="Unknown pair sampler"):
        sample_partners(labels, "random")


def test_gate_families():
    torch.manual_seed(0)
    labels, partners = torch.tensor([0, 1, 2, 1]), torch.tensor([2, 1, 0, 0])
    stochastic = StochasticGate(3, 6, label_dim=8, hidden_dim=16, sigma=0.5)
    noisy = stochastic(labels, partners)
    assert ((noisy >= 0) & (noisy <= 1)).all() and "reg" in stochastic.logged
    assert not torch.equal(noisy, stochastic(labels, partners))  # fresh noise each call
    stochastic.eval()
    mean = stochastic.mlp(
        (stochastic.label_embedding(labels) + stochastic.label_embedding(partners)) / 2
    )
    torch.testing.assert_close(stochastic(labels, partners), torch.clamp(mean + 0.5, 0, 1))
    expected_reg = (0.5 * (1 + torch.erf((mean + 0.5) / 0.5 / math.sqrt(2)))).sum(1).mean()
    torch.testing.assert_close(stochastic.logged["reg"], expected_reg)
    gumbel = GumbelGate(3, 6, label_dim=8, hidden_dim=16, tau=2.0).eval()
    logits = gumbel.mlp((gumbel.label_embedding(labels) + gumbel.label_embedding(partners)) / 2)
    torch.testing.assert_close(gumbel(labels, partners), torch.sigmoid(logits / 2.0))
    assert torch.equal(build_gate("open", 3, 6)(labels), torch.ones(4, 6))
    with pytest.raises(ContrastkitError, match="Unknown gate"):
        build_gate("softmax", 3, 6)
    with pytest.raises(ContrastkitError, match="rejected its options"):
        build_gate("basic", 3, 6, sigma=0.5)


class FixedGate(ClassPairGate):
    """Known pair gates for the read-out: g(a, b) open on dimension min(a, b) only."""

    def forward(self, labels: Tensor, partners: Tensor | None = None) -> Tensor:
        partners = labels if partners is None else partners
        gates = torch.full((len(labels), self.dim), 0.1)
        gates[torch.arange(len(labels)), torch.minimum(labels, partners)] = 0.9
        gates[:, -1] = (labels == partners).float()  # a second open dimension on the diagonal
        return gates


def test_relatedness_read_out_and_plot(tmp_path):
    gate = FixedGate(3, 4)
    active = relatedness(gate.pair_gates(), "active")
    expected = torch.tensor([[2, 1, 1], [1, 2, 1], [1, 1, 2]]) / 4
    torch.testing.assert_close(active, expected)
    l1 = relatedness(gate.pair_gates(), "l1")
    torch.testing.assert_close(l1[0, 1], torch.tensor((0.9 + 0.1 + 0.1 + 0.0) / 4))
    cosine = relatedness(gate.single_gates(), "cosine")
    torch.testing.assert_close(cosine.diagonal(), torch.ones(3))
    assert cosine[0, 1] < 1
    with pytest.raises(ContrastkitError, match="pair gates"):
        relatedness(gate.single_gates(), "active")
    torch.manual_seed(0)
    hydra = HydraLoss(dim=8, num_classes=4, gate_options={"label_dim": 8, "hidden_dim": 16})
    matrix = hydra.relatedness("active")
    assert matrix.shape == (4, 4) and torch.equal(matrix, matrix.T) and hydra.training
    path = plot_relatedness(matrix, tmp_path / "related.png", ["a", "b", "c", "d"])
    assert path.read_bytes().startswith(b"\x89PNG")


def test_gate_statistics():
    gates = torch.full((3, 4), 0.5)
    stats = gate_statistics(gates)
    assert stats["activation"].item() == pytest.approx(2.0)
    assert stats["entropy"].item() == pytest.approx(math.log(2))
    assert stats["open"].item() == 0.0
    assert bernoulli_entropy(torch.tensor([0.0, 1.0])).tolist() == [0.0, 0.0]


def hydra_objective(**options) -> HydraLoss:
    torch.manual_seed(0)
    settings = {"gate_options": {"label_dim": 8, "hidden_dim": 16}, **options}
    return HydraLoss(dim=4, num_classes=4, temperature=0.2, **settings)


def test_objective_combines_the_terms():
    labels = torch.tensor([0, 1, 2, 0, 1, 3])
    rows = randn(12, 4).float()
    objective = hydra_objective(instance_weight=1.0, beta=2.0, alpha=0.5, warmup_epochs=0)
    torch.manual_seed(1)
    loss = objective(rows, Pairs.views(6, 2), StepContext(labels=labels, epoch=3))
    logged = objective.logged
    expected = (logged["ins"] + 2.0 * logged["dis"] + 0.5 * logged["cls"]) / 3.5
    torch.testing.assert_close(loss.detach(), expected)
    torch.testing.assert_close(logged["ins"], info_nce(rows, Pairs.views(6, 2), temperature=0.2))
    # the class term is L_dis with y' = y, symmetrised over the two views
    gates = objective.gate(labels, labels).detach()
    q1, q2 = rows.chunk(2)
    cls = (
        hydra_loss(q1, q2, gates, labels, labels, scale=5.0)
        + hydra_loss(q2, q1, gates, labels, labels, scale=5.0)
    ) / 2
    torch.testing.assert_close(logged["cls"], cls)
    assert {"gate_activation", "gate_entropy", "gate_open", "scale"} <= set(logged)


def test_warm_up_detaches_the_encoder():
    labels = torch.tensor([0, 1, 2, 0, 1, 3])
    objective = hydra_objective(instance_weight=0.0, warmup_epochs=2)
    assert objective.may_skip_parameters
    for epoch, encoder_learns in ((0, False), (1, False), (2, True)):
        rows = randn(12, 4).float().requires_grad_(True)
        objective.zero_grad()
        objective(rows, Pairs.views(6, 2), StepContext(labels=labels, epoch=epoch)).backward()
        assert (rows.grad is not None and rows.grad.abs().sum() > 0) == encoder_learns
        gate_grads = [p.grad for p in objective.gate.parameters()]
        assert all(g is not None for g in gate_grads) and sum(g.abs().sum() for g in gate_grads) > 0


def test_momentum_keys_and_learnable_scale():
    labels = torch.tensor([0, 1, 2, 0, 1, 3])
    rows = randn(12, 4).float().requires_grad_(True)
    keys = randn(12, 4, seed=1).float()
    objective = hydra_objective(warmup_epochs=0, learnable_scale=True, scale=20.0)
    loss = objective(rows, Pairs.views(6, 2), StepContext(targets=keys, labels=labels))
    q1, q2 = rows.detach().chunk(2)
    k1, k2 = keys.chunk(2)
    cross = Pairs.cross(6)
    ins = (info_nce(q1, cross, k2, temperature=0.2) + info_nce(q2, cross, k1, temperature=0.2)) / 2
    torch.testing.assert_close(objective.logged["ins"], ins)
    loss.backward()
    assert objective.logged["scale"].item() == pytest.approx(20.0)
    assert objective.log_scale.grad is not None and objective.log_scale.grad != 0


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (None, "needs class labels"),
        (torch.tensor([0.0, 1.0, 2.0]), "integer class ids"),
        (torch.tensor([0, float("nan"), 2.0]), "contain NaN"),
        (torch.tensor([0, 1, 2, 3, 0, 1]), "one label per sample"),
        (torch.tensor([0, 1, 9]), "num_classes=4 but got label 9"),
        (torch.tensor([0, -1, 2]), "got label -1"),
    ],
)
def test_bad_labels(labels, message):
    with pytest.raises(ContrastkitError, match=message):
        hydra_objective()(randn(6, 4).float(), Pairs.views(3, 2), StepContext(labels=labels))


def test_bad_options():
    with pytest.raises(ContrastkitError, match="sampler"):
        hydra_objective(sampler="nearest")
    with pytest.raises(ContrastkitError, match="beta or alpha"):
        hydra_objective(beta=0.0, alpha=0.0)
    with pytest.raises(ContrastkitError, match="two global views"):
        hydra_objective()(randn(3, 4).float(), None, StepContext(labels=torch.tensor([0, 1, 2])))


WORLD, LOCAL = 2, 4
GLOBAL_LABELS = torch.tensor([0, 1, 2, 0, 1, 1, 3, 0])
GLOBAL_PARTNERS = torch.tensor([1, 3, 0, 0, 2, 1, 0, 3])


def gloo_inputs() -> tuple[Tensor, Tensor, Tensor]:
    gates = torch.rand(
        WORLD * LOCAL, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4)
    )
    return randn(WORLD * LOCAL, 5, seed=2), randn(WORLD * LOCAL, 5, seed=3), gates


def hydra_on_rank(rank: int) -> tuple[float, Tensor]:
    q, k, gates = gloo_inputs()
    rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
    q, k = q[rows].clone().requires_grad_(True), k[rows].clone().requires_grad_(True)
    labels, partners = GLOBAL_LABELS[rows], GLOBAL_PARTNERS[rows]
    loss = hydra_loss(q, k, gates[rows], labels, partners, scale=6.0)
    return loss.item(), torch.cat(torch.autograd.grad(loss, (q, k)), dim=1)


def test_two_gloo_ranks_equal_one_process():
    ranks = run_on_ranks(hydra_on_rank, WORLD)
    q, k, gates = gloo_inputs()
    q.requires_grad_(True)
    k.requires_grad_(True)
    loss = hydra_loss(q, k, gates, GLOBAL_LABELS, GLOBAL_PARTNERS, scale=6.0)
    grad = torch.cat(torch.autograd.grad(loss, (q, k)), dim=1)
    assert sum(ranks[r][0] for r in range(WORLD)) / WORLD == pytest.approx(loss.item(), rel=1e-9)
    for r in range(WORLD):
        torch.testing.assert_close(ranks[r][1] / WORLD, grad[r * LOCAL : (r + 1) * LOCAL])
