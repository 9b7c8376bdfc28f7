"""AMCL (instance-dense.md §5): the NT-Xent bound, Ω's minimiser by grid search, temperature
range and gradients, head permutation and independence, the hardest negative by raw similarity,
agreement with a per-anchor loop, and two gloo processes equal to one process."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from gloo import run_on_ranks

from contrastkit.errors import ContrastkitError
from contrastkit.functional.amcl import amcl_loss, amcl_objective, temperature_regulariser
from contrastkit.functional.infonce import info_nce
from contrastkit.functional.pairs import Pairs
from contrastkit.nn.multihead import MultiHeadProjection, TemperatureNet
from contrastkit.objectives.amcl import AMCLLoss

torch.set_num_threads(1)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def amcl(dim: int, heads: int = 3, seed: int = 0, **options) -> AMCLLoss:
    torch.manual_seed(seed)
    options.setdefault("distributed", False)
    return AMCLLoss(dim, heads, **options).double()


def naive_amcl(z: torch.Tensor, net: TemperatureNet, beta: float, form: str, pick: str = "raw"):
    """ℓ‡ anchor by anchor and head by head, from Table 2 (mean over anchors, sum over heads)."""
    n, heads, dim = z.shape
    batch = n // 2
    total = 0.0
    for i in range(n):
        positive = (i + batch) % n
        candidates = [j for j in range(n) if j not in (i, positive)]
        if form == "infonce":
            candidates.append(positive)
        for c in range(heads):

            def sim(j: int, c: int = c, i: int = i) -> torch.Tensor:
                return F.cosine_similarity(z[i, c], z[j, c], dim=0)

            def tau(j: int, c: int = c, i: int = i) -> torch.Tensor:
                return net(z[i][None], z[j][None])[0, c]

            def omega(t: torch.Tensor) -> torch.Tensor:
                return dim / 2 * torch.log(t) + 1 / t

            score = (lambda j: sim(j)) if pick == "raw" else (lambda j: sim(j) / tau(j))
            hard = max(candidates, key=lambda j: score(j).item())
            total = total + (
                -sim(positive) / tau(positive)
                + sim(hard) / tau(hard)
                + beta * (omega(tau(positive)) - omega(tau(hard)))
            )
    return total / n


# --- §5(d) 1: the NT-Xent bound ------------------------------------------------------------------


def test_constant_temperature_single_head_is_within_log_n_of_ntxent_without_positive():
    batch, tau = 6, 0.3
    z = randn(2 * batch, 5, seed=1)
    heads = z[:, None, :]  # C = 1
    pairs = Pairs.views(batch)
    positive, is_self = pairs.masks()
    terms = amcl_loss(
        heads,
        heads.roll(batch, 0),
        heads,
        ~(positive | is_self),
        lambda a, b: torch.full(a.shape[:2], tau, dtype=a.dtype),
        beta=0.0,
        reduction="none",
    )
    # ℓ‡ = (−s⁺ + max_n s_n)/τ exactly
    s = F.normalize(z, dim=1) @ F.normalize(z, dim=1).T
    s_pos = s[torch.arange(2 * batch), torch.arange(2 * batch).roll(batch)]
    s_max = s.masked_fill(positive | is_self, -2).max(1).values
    torch.testing.assert_close(terms.loss, (-s_pos + s_max) / tau)
    # NT-Xent without the positive in the denominator is DCL: −s⁺/τ + logsumexp_n(s_n/τ)
    without_positive = info_nce(
        z, pairs, temperature=tau, exclude_positives=True, reduction="none", distributed=False
    )
    gap = without_positive - terms.loss
    assert bool((gap >= -1e-12).all()) and bool((gap <= math.log(2 * batch - 2) + 1e-12).all())


def test_module_with_a_constant_temperature_net_matches_the_hand_formula():
    batch, tau = 5, 0.5
    loss = amcl(4, heads=1, beta=0.0)
    last = loss.temperature.phi[0][2]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, math.log((tau - 1e-5) / (2.0 - tau)))  # sigmoid⁻¹
    z = randn(2 * batch, 1, 4, seed=2)
    s = F.normalize(z[:, 0], dim=1) @ F.normalize(z[:, 0], dim=1).T
    rows = torch.arange(2 * batch)
    excluded = torch.eye(2 * batch, dtype=torch.bool) | torch.eye(2 * batch, dtype=torch.bool).roll(
        batch, 1
    )
    expected = (
        (-s[rows, rows.roll(batch)] + s.masked_fill(excluded, -2).max(1).values) / tau
    ).mean()
    torch.testing.assert_close(loss(z, Pairs.views(batch)), expected)
    torch.testing.assert_close(loss.logged["tau_pos"], torch.tensor(tau, dtype=torch.float64))


# --- §5(d) 2: the regulariser ---------------------------------------------------------------------


def test_regulariser_derivative_and_minimiser_by_grid_search():
    tau = torch.tensor([0.01, 0.3, 1.7], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(temperature_regulariser(tau, 128).sum(), tau)
    torch.testing.assert_close(grad, 128 / (2 * tau.detach()) - 1 / tau.detach() ** 2)
    grid = torch.linspace(1e-4, 0.05, 49_901, dtype=torch.float64)  # step 1e-6
    one = torch.ones_like(grid)
    # the positive term −s/τ + βΩ(τ) with β = 1; the hardest-negative term held fixed
    objective = amcl_objective(0.5 * one, grid, 0.2 * one, 0.7 * one, beta=1.0, dim=128)
    assert grid[objective.argmin()].item() == pytest.approx(0.0078125, abs=2e-6)


# --- §5(d) 3: temperature range, gradients reach φ ----------------------------------------------


@pytest.mark.parametrize("shared", [False, True])
def test_temperatures_stay_in_range_and_gradients_reach_phi(shared):
    torch.manual_seed(3)
    net = TemperatureNet(4, heads=3, tau_min=0.05, tau_max=0.5, shared=shared)
    for scale in (1.0, 1e4, -1e4):
        tau = net(scale * torch.randn(64, 3, 4), scale * torch.randn(64, 3, 4))
        assert tau.shape == (64, 3)
        assert bool(((tau >= 0.05) & (tau <= 0.5)).all())
    assert len(net.phi) == (1 if shared else 3)
    loss = amcl(4, heads=3, shared_temperature_net=shared)
    loss(randn(12, 3, 4, seed=4), Pairs.views(6)).backward()
    for phi in loss.temperature.phi:
        for parameter in phi.parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0
    assert 1e-5 <= loss.logged["tau_neg"].item() <= 2.0


# --- §5(d) 4: heads ------------------------------------------------------------------------------


def test_permuting_heads_leaves_the_loss_unchanged():
    z, order = randn(10, 3, 4, seed=5), [2, 0, 1]
    loss = amcl(4)
    base = loss(z, Pairs.views(5))
    assert not torch.allclose(loss(z[:, order], Pairs.views(5)), base)  # φ_c are per head
    loss.temperature.phi = torch.nn.ModuleList(loss.temperature.phi[c] for c in order)
    torch.testing.assert_close(loss(z[:, order], Pairs.views(5)), base)
    shared = amcl(4, shared_temperature_net=True)
    torch.testing.assert_close(shared(z[:, order], Pairs.views(5)), shared(z, Pairs.views(5)))


def test_projection_heads_are_independent():
    torch.manual_seed(6)
    projection = MultiHeadProjection(8, heads=3, hidden_dim=16, out_dim=4)
    x = torch.randn(5, 8)
    out = projection(x)
    assert out.shape == (5, 3, 4)
    out[:, 1].sum().backward()
    for c, head in enumerate(projection.heads):
        grads = [p.grad for p in head.parameters()]
        if c == 1:
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None or not g.any() for g in grads)
    assert not torch.allclose(out[:, 0], out[:, 1])


# --- §5(d) 5 and agreement with the loop ---------------------------------------------------------


def test_hardest_negative_is_chosen_by_raw_similarity():
    loss = amcl(4, beta=0.1)
    with torch.no_grad():  # make τ vary strongly across pairs so that s/τ reorders negatives
        for phi in loss.temperature.phi:
            phi[2].weight.mul_(30)
    z = randn(12, 3, 4, seed=7)
    raw = naive_amcl(z, loss.temperature, 0.1, "ntxent", pick="raw")
    scaled = naive_amcl(z, loss.temperature, 0.1, "ntxent", pick="scaled")
    assert abs(raw.item() - scaled.item()) > 1e-3  # the two choices differ on this batch
    torch.testing.assert_close(loss(z, Pairs.views(6)), raw)


@pytest.mark.parametrize("form", ["ntxent", "infonce"])
@pytest.mark.parametrize("shared", [False, True])
def test_matches_the_per_anchor_loop_with_gradients(form, shared):
    loss = amcl(4, beta=0.3, form=form, shared_temperature_net=shared, tau_max=0.8)
    raw = randn(10, 3, 4, seed=8)
    z = raw.clone().requires_grad_(True)
    value = loss(z, Pairs.views(5))
    value.backward()
    phi_grads = [p.grad.clone() for p in loss.parameters()]
    loss.zero_grad()
    z_naive = raw.clone().requires_grad_(True)
    expected = naive_amcl(z_naive, loss.temperature, 0.3, form)
    expected.backward()
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(z.grad, z_naive.grad)
    for got, want in zip(phi_grads, loss.parameters(), strict=True):
        torch.testing.assert_close(got, want.grad)


def test_infonce_form_is_zero_when_every_positive_is_the_most_similar():
    z1 = randn(4, 3, 4, seed=9)
    z = torch.cat([z1, 2 * z1])  # s⁺ = 1 beats every negative
    assert amcl(4, form="infonce")(z, Pairs.views(4)).item() == pytest.approx(0.0, abs=1e-12)
    assert amcl(4, form="ntxent")(z, Pairs.views(4)).item() != pytest.approx(0.0, abs=1e-6)


def test_bad_inputs_raise_contrastkit_errors():
    with pytest.raises(ContrastkitError, match="form"):
        AMCLLoss(4, form="simsiam")
    with pytest.raises(ContrastkitError, match="tau_min"):
        AMCLLoss(4, tau_min=0.0)
    loss = amcl(4)
    with pytest.raises(ContrastkitError, match="two views"):
        loss(randn(12, 3, 4), Pairs.views(4, 3))
    with pytest.raises(ContrastkitError, match="two views"):
        loss(randn(12, 2, 4), Pairs.views(6))
    with pytest.raises(ContrastkitError, match="two samples"):
        loss(randn(2, 3, 4), Pairs.views(1))
    with pytest.raises(ContrastkitError, match="heads"):
        MultiHeadProjection(8, heads=0)


# --- two gloo processes vs one process on the whole batch ---------------------------------------

WORLD, LOCAL = 2, 3


def dist_views() -> torch.Tensor:
    return randn(2, WORLD * LOCAL, 3, 4, seed=10)  # [view, sample, head, dim]


def run(views: torch.Tensor, form: str, **options):
    loss = amcl(4, seed=11, beta=0.2, form=form, **options)
    z = views.reshape(-1, 3, 4).clone().requires_grad_(True)
    value = loss(z, Pairs.views(views.shape[1]))
    value.backward()
    return value.item(), z.grad.reshape(views.shape), [p.grad for p in loss.parameters()]


def worker(rank: int) -> dict:
    """What one rank computes (run in a gloo process group by ``run_on_ranks``)."""
    rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
    return {
        form: run(dist_views()[:, rows], form, distributed=None) for form in ("ntxent", "infonce")
    }


@pytest.fixture(scope="module")
def ranks() -> dict:
    return run_on_ranks(worker, WORLD)


@pytest.mark.parametrize("form", ["ntxent", "infonce"])
def test_two_ranks_equal_one_process_on_the_whole_batch(ranks, form):
    loss, grad, phi_grads = run(dist_views(), form)
    assert sum(ranks[r][form][0] for r in range(WORLD)) / WORLD == pytest.approx(loss, rel=1e-9)
    for rank in range(WORLD):
        rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
        torch.testing.assert_close(ranks[rank][form][1] / WORLD, grad[:, rows])
    for c, want in enumerate(phi_grads):  # DDP averages the temperature networks' gradients
        torch.testing.assert_close(sum(ranks[r][form][2][c] for r in range(WORLD)) / WORLD, want)
