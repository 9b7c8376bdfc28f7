"""The sklearn-like TS2Vec/AutoTCL/COMET model, the SVM protocol and the 1-NN baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from contrastkit.errors import ContrastkitError
from contrastkit.timeseries import TS2Vec, fit_evaluate, fit_svm, one_nn_accuracy, svm_accuracy
from contrastkit.timeseries.data import timeseries_from_arrays
from contrastkit.timeseries.losses import comet_level_loss, id_contrastive_loss
from contrastkit.timeseries.model import COMETOptions, _centerize

torch.set_num_threads(1)
SMALL = dict(output_dims=16, hidden_dims=8, depth=2)


def toy(n: int = 16, length: int = 24, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, length)
    freq = rng.integers(1, 3, size=(n, 1, 1))
    return (np.sin(freq * t) + 0.1 * rng.normal(size=(n, channels, length))).astype(np.float32)


@pytest.mark.parametrize("method", ["ts2vec", "autotcl", "comet"])
def test_fit_encode_is_seeded_and_shaped(method):
    x = toy()
    a = TS2Vec(1, method=method, seed=3, batch_size=4, **SMALL)
    losses = a.fit(x, n_iters=3)
    assert len(losses) == 3 and a.n_iters == 3 and all(np.isfinite(losses))
    b = TS2Vec(1, method=method, seed=3, batch_size=4, **SMALL)
    b.fit(x, n_iters=3)
    np.testing.assert_array_equal(a.encode(x), b.encode(x))
    assert a.encode(x).shape == (16, 16)
    assert a.encode(x[:2], pooling="timestamp").shape == (2, 24, 16)
    c = TS2Vec(1, method=method, seed=4, batch_size=4, **SMALL)
    c.fit(x, n_iters=3)
    assert not np.allclose(a.encode(x), c.encode(x))


def test_encode_uses_the_weight_average():
    x = toy()
    model = TS2Vec(1, seed=0, batch_size=4, **SMALL)
    before = model.encode(x)
    snapshots = [[p.detach().clone() for p in model._net.parameters()]]
    for _ in range(2):
        model.fit(x, n_iters=1)
        snapshots.append([p.detach().clone() for p in model._net.parameters()])
    # AveragedModel holds the equal-weight mean of the initial and the two updated weights
    for i, avg in enumerate(model.net.module.parameters()):
        torch.testing.assert_close(avg, sum(s[i] for s in snapshots) / 3)
    assert not np.allclose(before, model.encode(x))


def test_epochs_and_batches():
    x = toy(n=10)
    model = TS2Vec(1, seed=0, batch_size=4, **SMALL)
    model.fit(x, n_epochs=2)  # drop_last: 2 batches per epoch
    assert model.n_epochs == 2 and model.n_iters == 4
    comet = TS2Vec(1, method="comet", seed=0, batch_size=4, **SMALL)
    comet.fit(x, n_epochs=1)  # COMET keeps the last partial batch
    assert comet.n_iters == 3


def test_comet_skips_missing_levels_and_uses_ids():
    x = torch.from_numpy(toy(n=8)).transpose(1, 2)
    model = TS2Vec(
        1, method="comet", seed=0, batch_size=8, comet={"masks": ["all_true"] * 4}, **SMALL
    )
    model._net.repr_dropout.p = 0.0  # with all_true masks every pass is now deterministic
    z = model._net(x, mask="all_true")
    want = 0.25 * comet_level_loss(z, z, "sample") + 0.25 * comet_level_loss(z, z, "observation")
    got = model._comet_loss(x, {"trial": None, "patient": None})
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    trials = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    trial_term = id_contrastive_loss(z, z, trials)
    with_ids = model._comet_loss(x, {"trial": trials, "patient": None})
    # as coded, the trial factor only switches the level on: + 1 × L_R
    assert with_ids.item() == pytest.approx((want + trial_term).item(), rel=1e-6)
    both = model._comet_loss(x, {"trial": trials, "patient": trials})
    assert both.item() == pytest.approx((want + 2 * trial_term).item(), rel=1e-6)
    model.comet = COMETOptions(masks=("all_true",) * 4, faithful_factors=True)
    faithful = model._comet_loss(x, {"trial": trials, "patient": None})
    assert faithful.item() == pytest.approx((want + 0.25 * trial_term).item(), rel=1e-6)


def test_comet_trial_batches_group_trials():
    model = TS2Vec(1, method="comet", seed=0, batch_size=4, **SMALL)
    trials = np.repeat(np.arange(4), 4)
    for batch in model._batches(16, trials):
        assert len(set(trials[batch.numpy()])) == 1


def _encoder_inputs(model: TS2Vec, x: np.ndarray) -> list[torch.Tensor]:
    """The inputs of every training pass of the encoder in one iteration."""
    seen = []
    hook = model._net.register_forward_pre_hook(lambda _, args: seen.append(args[0].clone()))
    model.fit(x, n_iters=1)
    hook.remove()
    return seen


def test_ts2vec_augment_draws_independent_aligned_views_of_each_crop():
    x = toy(n=8, length=32)
    x1, x2 = _encoder_inputs(TS2Vec(1, seed=0, batch_size=8, **SMALL), x)
    # without views the crops agree on their overlap: the last steps of 1 and the first of 2
    overlap = max(k for k in range(1, 33) if torch.equal(x1[:, x1.shape[1] - k :], x2[:, :k]))
    model = TS2Vec(1, seed=0, batch_size=8, augment={"jitter": 0.5}, **SMALL)
    a1, a2 = _encoder_inputs(model, x)
    # the same crops (drawn first from the same generator state), each with its own noise
    noise1, noise2 = (a1 - x1)[:, -overlap:], (a2 - x2)[:, :overlap]
    for noise in (noise1, noise2):
        assert abs(noise.std().item() - 0.5) < 0.1
    assert abs(torch.corrcoef(torch.stack([noise1.flatten(), noise2.flatten()]))[0, 1]) < 0.3


def test_comet_augment_scales_each_pass_independently():
    x = np.repeat(toy(n=1), 8, axis=0) + 2.0  # equal series: the batch order does not matter
    model = TS2Vec(1, method="comet", seed=0, batch_size=8, augment=["scaling"], **SMALL)
    passes = _encoder_inputs(model, x)
    assert len(passes) == 4  # sample and observation levels, two passes each
    raw = torch.from_numpy(x).transpose(1, 2)
    factors = [p / raw for p in passes]  # one factor per series and variable, σ = 0.1
    for f in factors:
        torch.testing.assert_close(f, f[:, :1].expand_as(f))
        assert 0.03 < f[:, 0].std().item() < 0.3
    assert not torch.allclose(factors[0], factors[1])


@pytest.mark.parametrize(
    ("method", "augment", "message"),
    [
        ("ts2vec", ["permutation"], "moves time steps"),
        ("comet", {"time_warp": 0.2}, "moves time steps"),
        ("ts2vec", ["jiter"], "did you mean 'jitter'"),
        ("ts2vec", {"scaling": -1}, "augment.scaling must be a number > 0"),
        ("ts2vec", "jitter", "list of view names"),
        ("autotcl", ["jitter"], "learns its own"),
        ("autotcl", ["time_warp"], "learns its own"),
    ],
)
def test_bad_augment_is_refused(method, augment, message):
    with pytest.raises(ContrastkitError, match=message):
        TS2Vec(1, method=method, augment=augment, **SMALL)


def test_bad_input_errors():
    x = toy(n=6)
    with pytest.raises(ContrastkitError, match="larger than the 6"):
        TS2Vec(1, batch_size=8, **SMALL).fit(x, n_iters=1)
    with pytest.raises(ContrastkitError, match="channels"):
        TS2Vec(2, **SMALL).fit(x, n_iters=1)
    with pytest.raises(ContrastkitError, match="did you mean 'comet'"):
        TS2Vec(1, method="comat")
    with pytest.raises(ContrastkitError, match="comet"):
        TS2Vec(1, batch_size=2, **SMALL).fit(x, n_iters=1, trial_ids=np.zeros(6))
    with pytest.raises(ContrastkitError, match="infinite"):
        TS2Vec(1, batch_size=2, **SMALL).fit(np.full((4, 1, 5), np.inf), n_iters=1)
    with pytest.raises(ContrastkitError, match="did you mean 'meta_lr'"):
        TS2Vec(1, method="autotcl", autotcl={"meta_lrr": 0.1})


def test_autotcl_steps_touch_only_their_own_parameters():
    x = toy()
    frozen_aug = TS2Vec(
        1, method="autotcl", seed=0, batch_size=4, autotcl={"meta_lr": 0.0}, **SMALL
    )
    aug0 = [p.clone() for p in frozen_aug.augmenter.parameters()]
    enc0 = [p.clone() for p in frozen_aug._net.parameters()]
    frozen_aug.fit(x, n_iters=1)
    assert all(
        torch.equal(a, b) for a, b in zip(aug0, frozen_aug.augmenter.parameters(), strict=True)
    )
    assert not all(
        torch.equal(a, b) for a, b in zip(enc0, frozen_aug._net.parameters(), strict=True)
    )
    frozen_enc = TS2Vec(1, method="autotcl", seed=0, batch_size=4, lr=1e-12, **SMALL)
    aug0 = [p.clone() for p in frozen_enc.augmenter.parameters()]
    frozen_enc.fit(x, n_iters=1)
    assert not all(
        torch.equal(a, b) for a, b in zip(aug0, frozen_enc.augmenter.parameters(), strict=True)
    )
    # the encoder loss has no path into the augmentation network
    batch = torch.from_numpy(x[:4]).transpose(1, 2).contiguous()
    loss = frozen_enc._autotcl_step(batch)
    grads = torch.autograd.grad(loss, list(frozen_enc.augmenter.parameters()), allow_unused=True)
    assert all(g is None for g in grads)


def test_centerize_matches_ts2vec_rule():
    x = np.full((2, 6, 1), np.nan)
    x[0, :2, 0] = [1, 2]  # observed at the start: shift right by (0 + 4)//2 − 0 = 2
    x[1, 3:, 0] = [3, 4, 5]  # observed at the end: shift by (3 + 0)//2 − 3 = −2
    out = _centerize(x)
    np.testing.assert_array_equal(out[0, :, 0], [np.nan, np.nan, 1, 2, np.nan, np.nan])
    np.testing.assert_array_equal(out[1, :, 0], [np.nan, 3, 4, 5, np.nan, np.nan])


def test_svm_protocol():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [5.0, 5.0]])
    xs = lambda n: np.concatenate([c + rng.normal(size=(n, 2)) * 0.3 for c in centers])  # noqa: E731
    ys = lambda n: np.repeat([0, 1], n)  # noqa: E731
    assert svm_accuracy(xs(30), ys(30), xs(20), ys(20)) == 1.0
    with pytest.raises(ContrastkitError, match="single class"):
        fit_svm(xs(10), np.zeros(20))
    with pytest.raises(ContrastkitError, match="NaN"):
        svm_accuracy(np.full((4, 2), np.nan), [0, 1, 0, 1], np.zeros((2, 2)), [0, 1])


@pytest.mark.parametrize(
    ("n", "classes", "cv"),
    [(50, 10, True), (49, 7, False), (60, 15, False), (60, 2, True)],
)
def test_svm_cross_validates_only_with_enough_data(monkeypatch, n, classes, cv):
    # TS2Vec: no CV (C = ∞) when n < 50 or fewer than 5 series per class on average
    import sklearn.model_selection

    calls = []
    real = sklearn.model_selection.GridSearchCV

    def spy(estimator, grid, **kwargs):
        calls.append((grid["C"], kwargs["cv"]))
        return real(estimator, grid, **kwargs)

    monkeypatch.setattr(sklearn.model_selection, "GridSearchCV", spy)
    rng = np.random.default_rng(1)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, 3)) + y[:, None]
    model = fit_svm(x, y)
    if cv:
        assert calls == [([0.0001, 0.001, 0.01, 0.1, 1, 10, 100, 1000, 10000, np.inf], 5)]
    else:
        assert calls == []
        assert math.isinf(model.C)


def test_one_nn_by_hand():
    train = np.array([[[0.0, 0.0]], [[3.0, 4.0]]])
    test = np.array([[[1.0, 1.0]], [[3.0, 3.0]], [[2.9, np.nan]]])  # NaN reads as 0
    raw = one_nn_accuracy(train, [0, 1], test, [0, 1, 1], znormalize=False)
    assert raw == pytest.approx(2 / 3)
    # z-normalised, only shapes count: offset and positive scale of a series do not matter
    rng = np.random.default_rng(0)
    tr, te = rng.normal(size=(6, 2, 9)), rng.normal(size=(5, 2, 9))
    y = np.arange(6)
    want = one_nn_accuracy(tr, y, te, y[:5])
    assert one_nn_accuracy(tr, y, 3.0 * te + 7.0, y[:5]) == want
    assert one_nn_accuracy(tr, y, tr[:5] * 2.0 - 1.0, y[:5]) == 1.0


def test_fit_evaluate_end_to_end():
    x = np.concatenate([toy(n=12, seed=1), -toy(n=12, seed=2)])
    y = np.repeat([0, 1], 12)
    data = timeseries_from_arrays("toy", x, y, seed=0, test_fraction=0.25)
    result = fit_evaluate(data, method="ts2vec", seed=0, n_iters=2, batch_size=4, **SMALL)
    assert 0.0 <= result.accuracy <= 1.0 and result.n_iters == 2
    assert result.train_repr.shape == (18, 16) and result.metrics()["method"] == "ts2vec"


def test_non_finite_loss_stops_before_the_update(monkeypatch):
    model = TS2Vec(1, seed=0, batch_size=4, **SMALL)
    before = [p.detach().clone() for p in model._net.parameters()]
    monkeypatch.setattr(model, "_ts2vec_loss", lambda x: torch.tensor(float("nan")))
    with pytest.raises(ContrastkitError, match="became nan at iteration 0"):
        model.fit(toy(), n_iters=1)
    assert all(torch.equal(a, b) for a, b in zip(before, model._net.parameters(), strict=True))


def test_fit_evaluate_rejects_unknown_options():
    data = timeseries_from_arrays("toy", toy(n=8), np.repeat([0, 1], 4), seed=0)
    with pytest.raises(ContrastkitError, match="did you mean 'batch_size'"):
        fit_evaluate(data, n_iters=1, batchsize=4)
