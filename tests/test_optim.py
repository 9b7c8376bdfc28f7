"""Tests for contrastkit.train.optim: LARS, parameter grouping, cosine warm-up schedule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from contrastkit.errors import ContrastkitError
from contrastkit.train.optim import LARS, build_optimizer, cosine_with_warmup

torch.set_num_threads(1)


def _one_step(w0, g, **kwargs):
    w = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = LARS([w], **kwargs)
    w.grad = torch.tensor(g, dtype=torch.float64)
    opt.step()
    return w.detach().clone(), opt


def test_lars_step_by_hand_without_weight_decay():
    # ||w|| = 5, ||g|| = 1: trust = 0.01 * 5 / 1 = 0.05; w1 = w - 0.1 * 0.05 * g.
    w1, _ = _one_step([[3.0, 4.0]], [[0.8, -0.6]], lr=0.1, trust_coefficient=0.01)
    torch.testing.assert_close(w1, torch.tensor([[2.996, 4.003]], dtype=torch.float64))


def test_lars_step_by_hand_with_weight_decay_and_momentum():
    # trust = 0.01 * 5 / (1 + 0.1 * 5) = 1/30; d = (g + 0.1 w) / 30 = [1.1, -0.2] / 30.
    w1, opt = _one_step(
        [[3.0, 4.0]], [[0.8, -0.6]], lr=0.1, weight_decay=0.1, trust_coefficient=0.01
    )
    expected = torch.tensor([[3.0 - 0.1 * 1.1 / 30, 4.0 + 0.1 * 0.2 / 30]], dtype=torch.float64)
    torch.testing.assert_close(w1, expected)
    # A second step with the same gradient: buf = 0.9 * d1 + d2, w2 = w1 - lr * buf.
    (w,) = opt.param_groups[0]["params"]
    g = torch.tensor([[0.8, -0.6]], dtype=torch.float64)
    w.grad = g.clone()
    d1 = torch.tensor([[1.1, -0.2]], dtype=torch.float64) / 30
    trust2 = 0.01 * w1.norm() / (g.norm() + 0.1 * w1.norm())
    d2 = trust2 * (g + 0.1 * w1)
    opt.step()
    torch.testing.assert_close(w.detach(), w1 - 0.1 * (0.9 * d1 + d2))


def test_lars_zero_norms_use_unit_trust():
    # ||w|| = 0: trust 1, so the step is plain SGD.
    w1, _ = _one_step([[0.0, 0.0]], [[1.0, 2.0]], lr=0.1)
    torch.testing.assert_close(w1, torch.tensor([[-0.1, -0.2]], dtype=torch.float64))
    # ||g|| = 0 with weight decay: trust 1, only the decay term moves w.
    w1, _ = _one_step([[1.0, 2.0]], [[0.0, 0.0]], lr=0.1, weight_decay=0.5)
    torch.testing.assert_close(w1, torch.tensor([[0.95, 1.9]], dtype=torch.float64))


def test_lars_excluded_group_matches_sgd():
    torch.manual_seed(0)
    a = nn.Parameter(torch.randn(3, 4, dtype=torch.float64))
    b = nn.Parameter(a.detach().clone())
    lars = LARS([{"params": [a], "lars_exclude": True}], lr=0.3, weight_decay=0.01)
    sgd = torch.optim.SGD([b], lr=0.3, momentum=0.9, weight_decay=0.01)
    sched_lars = cosine_with_warmup(lars, warmup_steps=2, total_steps=6)
    sched_sgd = cosine_with_warmup(sgd, warmup_steps=2, total_steps=6)
    for _ in range(5):
        g = torch.randn(3, 4, dtype=torch.float64)
        a.grad, b.grad = g.clone(), g.clone()
        lars.step()
        sgd.step()
        sched_lars.step()
        sched_sgd.step()
    torch.testing.assert_close(a, b)


def test_lars_closure_and_no_grad_params():
    w = nn.Parameter(torch.ones(2, 2))
    unused = nn.Parameter(torch.ones(2))
    opt = LARS([w, unused], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(4.0)
    assert torch.equal(unused.detach(), torch.ones(2))
    assert not torch.equal(w.detach(), torch.ones(2, 2))


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))


@pytest.mark.parametrize("name", ["sgd", "adamw", "lars"])
def test_weight_decay_grouping(name):
    model = _model()
    model[0].bias.requires_grad_(False)  # frozen parameters are left out
    opt = build_optimizer(name, model, lr=0.1, weight_decay=1e-4)
    decayed = [g for g in opt.param_groups if g["weight_decay"] > 0]
    plain = [g for g in opt.param_groups if g["weight_decay"] == 0]
    assert len(decayed) == 1 and len(plain) == 1
    assert {id(p) for p in decayed[0]["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert {id(p) for p in plain[0]["params"]} == {
        id(model[1].weight),
        id(model[1].bias),
        id(model[3].bias),
    }
    assert decayed[0]["weight_decay"] == 1e-4
    if name == "lars":
        assert isinstance(opt, LARS)
        assert decayed[0]["lars_exclude"] is False and plain[0]["lars_exclude"] is True
    else:
        assert isinstance(opt, torch.optim.SGD if name == "sgd" else torch.optim.AdamW)


def test_build_optimizer_accepts_params_and_groups():
    model = _model()
    shared = [*model.parameters(), model[0].weight]  # duplicates are dropped
    opt = build_optimizer("SGD", shared, lr=0.1, weight_decay=0.1)
    assert sum(len(g["params"]) for g in opt.param_groups) == 6
    groups = [
        {"params": model[0].parameters(), "lr": 0.01},
        {"params": list(model[3].parameters()), "weight_decay": 0.5},
    ]
    opt = build_optimizer("lars", groups, lr=0.1, weight_decay=0.1)
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert by_param[id(model[0].weight)]["lr"] == 0.01
    assert by_param[id(model[0].weight)]["weight_decay"] == 0.1
    assert by_param[id(model[3].weight)]["weight_decay"] == 0.5
    assert by_param[id(model[3].bias)]["weight_decay"] == 0.0
    assert by_param[id(model[3].bias)]["lars_exclude"] is True


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("adam", {}, "sgd, adamw, lars"),
        ("sgd", {"lr": 0.0}, "lr"),
        ("sgd", {"lr": -1.0}, "lr"),
        ("lars", {"lr": float("nan")}, "lr"),
        ("adamw", {"lr": float("inf")}, "lr"),
        ("sgd", {"weight_decay": -0.1}, "weight_decay"),
        ("sgd", {"momentum": 1.0}, "momentum"),
        ("lars", {"momentum": -0.5}, "momentum"),
        ("adamw", {"betas": (0.9, 1.0)}, "betas"),
        ("adamw", {"betas": (0.9,)}, "betas"),
        ("lars", {"trust_coefficient": 0.0}, "trust_coefficient"),
    ],
)
def test_build_optimizer_bad_arguments(name, kwargs, match):
    args = {"lr": 0.1, **kwargs}
    with pytest.raises(ContrastkitError, match=match):
        build_optimizer(name, _model(), **args)


def test_build_optimizer_no_trainable_parameters():
    model = _model().requires_grad_(False)
    with pytest.raises(ContrastkitError, match="no trainable parameters"):
        build_optimizer("sgd", model, lr=0.1)


def _lrs(warmup, total, ratio, steps):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = cosine_with_warmup(opt, warmup_steps=warmup, total_steps=total, min_lr_ratio=ratio)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_cosine_with_warmup_values():
    lrs = _lrs(warmup=10, total=110, ratio=0.1, steps=130)
    assert lrs[0] == pytest.approx(2.0 / 10)  # first step: lr / warmup_steps
    assert lrs[4] == pytest.approx(2.0 * 5 / 10)  # linear
    assert lrs[9] == pytest.approx(2.0)  # last warm-up step
    assert lrs[10] == pytest.approx(2.0)  # start of the cosine
    assert lrs[60] == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))  # halfway through the cosine
    expected_85 = 2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.75)))
    assert lrs[85] == pytest.approx(expected_85)
    assert lrs[110] == pytest.approx(0.2)  # min_lr_ratio * lr at total_steps
    assert lrs[129] == pytest.approx(0.2)  # and held afterwards
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_cosine_without_warmup_and_all_warmup():
    lrs = _lrs(warmup=0, total=4, ratio=0.0, steps=5)
    assert lrs == pytest.approx(
        [2.0, 2.0 * 0.5 * (1 + math.cos(math.pi / 4)), 1.0, 0.2929, 0.0], abs=1e-4
    )
    lrs = _lrs(warmup=4, total=4, ratio=0.5, steps=6)
    assert lrs == pytest.approx([0.5, 1.0, 1.5, 2.0, 1.0, 1.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"warmup_steps": 11, "total_steps": 10}, "warmup_steps"),
        ({"warmup_steps": -1, "total_steps": 10}, "warmup_steps"),
        ({"warmup_steps": 0, "total_steps": 0}, "total_steps"),
        ({"warmup_steps": 1.5, "total_steps": 10}, "integer"),
        ({"warmup_steps": 1, "total_steps": 10, "min_lr_ratio": 1.5}, "min_lr_ratio"),
        ({"warmup_steps": 1, "total_steps": 10, "min_lr_ratio": -0.1}, "min_lr_ratio"),
    ],
)
def test_cosine_with_warmup_bad_arguments(kwargs, match):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ContrastkitError, match=match):
        cosine_with_warmup(opt, **kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("sgd", {"lr": 0.05}),
        ("adamw", {"lr": 0.05}),
        ("lars", {"lr": 1.0, "trust_coefficient": 0.02}),
    ],
)
def test_optimizers_reduce_quadratic_loss(name, kwargs):
    torch.manual_seed(0)
    model = nn.Linear(8, 4)
    x = torch.randn(64, 8)
    target = x @ torch.randn(8, 4) + 0.5
    opt = build_optimizer(name, model, weight_decay=1e-4, **kwargs)
    sched = cosine_with_warmup(opt, warmup_steps=10, total_steps=200)

    def loss_fn():
        return ((model(x) - target) ** 2).mean()

    initial = loss_fn().item()
    for _ in range(200):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        sched.step()
    assert loss_fn().item() < 0.1 * initial
