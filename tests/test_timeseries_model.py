"""The TS2Vec/AutoTCL/COMET module and tasks (losses, weight average, trial groups, the two
AutoTCL steps, sharded draws and the uneven gather), the SVM protocol and the 1-NN baseline."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from gloo import run_on_ranks

from contrastkit.config import COMETConfig, TimeSeriesConfig, load_config
from contrastkit.errors import ContrastkitError
from contrastkit.tasks import Step, build_task
from contrastkit.timeseries import TS2Vec, fit_svm, one_nn_accuracy, svm_accuracy
from contrastkit.timeseries.data import timeseries_from_arrays
from contrastkit.timeseries.losses import comet_level_loss, id_contrastive_loss
from contrastkit.timeseries.model import SeriesGroups, _centerize, _Everywhere, collate_groups
from contrastkit.timeseries.views import Shard, binomial_mask, random_crops

torch.set_num_threads(1)
SMALL = TimeSeriesConfig(output_dims=16, hidden_dims=8, depth=2)


def toy(n: int = 16, length: int = 24, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, length)
    freq = rng.integers(1, 3, size=(n, 1, 1))
    return (np.sin(freq * t) + 0.1 * rng.normal(size=(n, channels, length))).astype(np.float32)


def batch(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).transpose(1, 2).contiguous()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def options(**changes) -> TimeSeriesConfig:
    return dataclasses.replace(SMALL, **changes)


LOGGED = {
    "ts2vec": {"instance", "temporal"},
    "autotcl": {"global", "local"},
    "comet": {"sample", "observation"},
}


def test_losses_are_finite_seeded_and_reach_the_encoder():
    x = batch(toy())
    for method in ("ts2vec", "autotcl", "comet"):
        torch.manual_seed(0)
        model = TS2Vec(1, method, options(dropout=0.0))
        losses = {
            "ts2vec": lambda g, m=model: m.ts2vec_loss(x, g),
            "autotcl": lambda g, m=model: m.autotcl_encoder_loss(x, g),
            "comet": lambda g, m=model: m.comet_loss(x, {}, g),
        }[method]
        a, b = losses(gen(1)), losses(gen(1))
        assert torch.isfinite(a) and a.item() == b.item()  # the generator fixes every draw
        assert losses(gen(2)).item() != a.item()
        a.backward()
        assert all(p.grad is not None for p in model.encoder.parameters())
        assert all(p.grad is None for p in model.net.parameters())  # the average is not trained
        assert set(model.logged) == LOGGED[method]


def test_encode_uses_the_weight_average():
    x = toy()
    model = TS2Vec(1, "ts2vec", SMALL)
    before = model.encode(x)
    assert before.shape == (16, 16)
    assert model.encode(x[:2], pooling="timestamp").shape == (2, 24, 16)
    optimizer = torch.optim.SGD(model.encoder.parameters(), lr=0.1)
    snapshots = [[p.detach().clone() for p in model.encoder.parameters()]]
    for seed in range(2):
        optimizer.zero_grad()
        model.ts2vec_loss(batch(x), gen(seed)).backward()
        optimizer.step()
        model.update_average()
        snapshots.append([p.detach().clone() for p in model.encoder.parameters()])
    # AveragedModel holds the equal-weight mean of the initial and the two updated weights
    for i, average in enumerate(model.net.module.parameters()):
        torch.testing.assert_close(average, sum(s[i] for s in snapshots) / 3)
    assert not np.allclose(before, model.encode(x))
    with pytest.raises(ContrastkitError, match="trained on 1"):
        model.encode(toy(channels=2))


def test_comet_skips_missing_levels_and_uses_ids():
    x = batch(toy(n=8))
    masks = ["all_true"] * 4
    model = TS2Vec(1, "comet", options(dropout=0.0, comet=COMETConfig(masks=masks)))
    z = model.encoder(x, mask="all_true")  # all_true masks, no dropout: every pass is the same
    want = 0.25 * comet_level_loss(z, z, "sample") + 0.25 * comet_level_loss(z, z, "observation")
    assert model.comet_loss(x, {}, gen()).item() == pytest.approx(want.item(), rel=1e-6)
    trials = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    trial_term = id_contrastive_loss(z, z, trials)
    with_ids = model.comet_loss(x, {"trial": trials}, gen())
    # as coded, the trial factor only switches the level on: + 1 × L_R
    assert with_ids.item() == pytest.approx((want + trial_term).item(), rel=1e-6)
    both = model.comet_loss(x, {"trial": trials, "patient": trials}, gen())
    assert both.item() == pytest.approx((want + 2 * trial_term).item(), rel=1e-6)
    model.options.comet.faithful_factors = True
    faithful = model.comet_loss(x, {"trial": trials}, gen())
    assert faithful.item() == pytest.approx((want + 0.25 * trial_term).item(), rel=1e-6)


def test_series_groups_deal_out_whole_trials():
    series = torch.arange(10.0)[:, None, None].expand(10, 4, 1)
    trials = torch.tensor([3, 3, 0, 1, 1, 1, 2, 0, 3, 2])
    groups = SeriesGroups(series, trials, trials // 2)
    assert len(groups) == 4
    sample = groups[3]  # trial 3: series 0, 1 and 8
    assert sample["x"][:, 0, 0].tolist() == [0.0, 1.0, 8.0] and sample["trial"].tolist() == [3] * 3
    merged = collate_groups([groups[0], groups[3]])
    assert merged["x"].shape == (5, 4, 1) and merged["patient"].tolist() == [0, 0, 1, 1, 1]
    alone = SeriesGroups(series)
    assert len(alone) == 10 and set(alone[4]) == {"x"} and alone[4]["x"].shape == (1, 4, 1)


def _encoder_inputs(model: TS2Vec, run) -> list[torch.Tensor]:
    """The inputs of every training pass of the encoder in one loss."""
    seen = []
    hook = model.encoder.register_forward_pre_hook(lambda _, args: seen.append(args[0].clone()))
    run()
    hook.remove()
    return seen


def test_ts2vec_augment_draws_independent_aligned_views_of_each_crop():
    x = batch(toy(n=8, length=32))
    plain = TS2Vec(1, "ts2vec", SMALL)
    x1, x2 = _encoder_inputs(plain, lambda: plain.ts2vec_loss(x, gen()))
    # without views the crops agree on their overlap: the last steps of 1 and the first of 2
    overlap = max(k for k in range(1, 33) if torch.equal(x1[:, x1.shape[1] - k :], x2[:, :k]))
    model = TS2Vec(1, "ts2vec", options(augment={"jitter": 0.5}))
    a1, a2 = _encoder_inputs(model, lambda: model.ts2vec_loss(x, gen()))
    # the same crops (drawn first from the same generator state), each with its own noise
    noise1, noise2 = (a1 - x1)[:, -overlap:], (a2 - x2)[:, :overlap]
    for noise in (noise1, noise2):
        assert abs(noise.std().item() - 0.5) < 0.1
    assert abs(torch.corrcoef(torch.stack([noise1.flatten(), noise2.flatten()]))[0, 1]) < 0.3


def test_comet_augment_scales_each_pass_independently():
    x = batch(np.repeat(toy(n=1), 8, axis=0) + 2.0)
    model = TS2Vec(1, "comet", options(augment=["scaling"]))
    passes = _encoder_inputs(model, lambda: model.comet_loss(x, {}, gen()))
    assert len(passes) == 4  # sample and observation levels, two passes each
    factors = [p / x for p in passes]  # one factor per series and variable, σ = 0.1
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
        TS2Vec(1, method, options(augment=augment))
    with pytest.raises(ContrastkitError, match=f"{message}|must be dict or list"):  # typed config
        build_task(load_config(method, {"timeseries.augment": augment}))


def autotcl_task(**overrides):
    base = {"timeseries.output_dims": 16, "timeseries.hidden_dims": 8, "timeseries.depth": 2}
    task = build_task(load_config("autotcl", base | overrides))
    data = timeseries_from_arrays("toy", toy(), seed=0)
    torch.manual_seed(0)
    model = task.build_model(data)
    optimizers = [
        torch.optim.AdamW(model.encoder.parameters(), lr=task.config.optim.lr),
        torch.optim.AdamW(model.augmenter.parameters(), lr=task.config.timeseries.autotcl.meta_lr),
    ]
    return task, model, optimizers, [batch(toy()[:4])]


def _copy(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_autotcl_steps_touch_only_their_own_parameters():
    task, model, optimizers, x = autotcl_task()
    optimizers[1].param_groups[0]["lr"] = 0.0  # a frozen augmentation network
    aug, enc, avg = _copy(model.augmenter), _copy(model.encoder), _copy(model.net)
    task.manual_step(model, x, Step(0), optimizers, lambda loss: loss.backward())
    assert _same(aug, model.augmenter) and not _same(enc, model.encoder)
    assert not _same(avg, model.net) and int(model.net.n_averaged) == 2  # updated once
    assert {"augmentation", "global", "local"} <= set(model.logged)
    optimizers[1].param_groups[0]["lr"] = 0.01
    optimizers[0].param_groups[0]["lr"] = 0.0  # now a frozen encoder
    aug, enc = _copy(model.augmenter), _copy(model.encoder)
    task.manual_step(model, x, Step(1), optimizers, lambda loss: loss.backward())
    assert not _same(aug, model.augmenter) and _same(enc, model.encoder)
    # the encoder loss has no path into the augmentation network
    loss = model.autotcl_encoder_loss(x[0], gen())
    grads = torch.autograd.grad(loss, list(model.augmenter.parameters()), allow_unused=True)
    assert all(g is None for g in grads)


def test_autotcl_ratio_step_skips_augmentation_steps():
    task, model, optimizers, x = autotcl_task(**{"timeseries.autotcl.ratio_step": 2})
    aug = _copy(model.augmenter)
    task.manual_step(model, x, Step(1), optimizers, lambda loss: loss.backward())
    assert _same(aug, model.augmenter) and "augmentation" not in model.logged


def test_non_finite_autotcl_loss_returns_before_any_update(monkeypatch):
    task, model, optimizers, x = autotcl_task()
    monkeypatch.setattr(model, "autotcl_encoder_loss", lambda x, g: torch.tensor(float("nan")))
    enc, avg = _copy(model.encoder), _copy(model.net)
    loss = task.manual_step(model, x, Step(0), optimizers, lambda loss: loss.backward())
    assert math.isnan(loss.item()) and _same(enc, model.encoder) and _same(avg, model.net)


def test_shards_draw_what_one_process_draws_for_the_global_batch():
    """Rank r of W keeps rows r, r + W, … of the global draw: the sampler's interleaving."""
    x = torch.randn(6, 20, 2)
    whole = random_crops(x, generator=gen(5))
    for rank in range(2):
        part = random_crops(x[rank::2], generator=gen(5), shard=Shard(rank, 2))
        torch.testing.assert_close(part.x1, whole.x1[rank::2])
        torch.testing.assert_close(part.x2, whole.x2[rank::2])
    mask = binomial_mask(6, 20, generator=gen(1))
    assert torch.equal(binomial_mask(3, 20, generator=gen(1), shard=Shard(1, 2)), mask[1::2])
    model = TS2Vec(2, "comet", options(dropout=0.0, augment=["jitter", "scaling"]))
    z = model.encoder(x, generator=gen(3))
    for rank in range(2):
        part = model.encoder(x[rank::2], generator=gen(3), shard=Shard(rank, 2))
        torch.testing.assert_close(part, z[rank::2])


def test_uneven_gather_concatenates_in_rank_order_with_gradient():
    """Ranks holding 2 and 3 series: every rank gets all 5; gradients come back to each slice
    summed over the ranks' losses (DDP then averages them)."""

    def compute(rank: int):
        x = torch.full((2 + rank, 3), float(rank + 1), requires_grad=True)
        every = _Everywhere(len(x), x.device)
        gathered = every.gather(x)
        (gathered.sum(dim=1) * torch.arange(5.0)).sum().backward()
        return gathered.detach(), x.grad, every.share

    out = run_on_ranks(compute)
    want = torch.tensor([1.0, 1, 2, 2, 2])[:, None].expand(5, 3)
    for rank in (0, 1):
        torch.testing.assert_close(out[rank][0], want)
    rows = torch.arange(5.0)[:, None].expand(5, 3)
    torch.testing.assert_close(out[0][1], 2 * rows[:2])  # both ranks' identical losses
    torch.testing.assert_close(out[1][1], 2 * rows[2:])
    assert out[0][2] == pytest.approx(0.8) and out[1][2] == pytest.approx(1.2)


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
