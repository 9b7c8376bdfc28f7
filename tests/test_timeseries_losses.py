"""TS2Vec, COMET and AutoTCL objectives against hand-computed values (spec
labels-multimodal-other.md §10), naive loops of the papers' formulas, limits and invariances."""

from __future__ import annotations

import math

import pytest
import torch

from contrastkit.errors import ContrastkitError
from contrastkit.timeseries.autotcl import AutoTCLAugmenter, sample_mask
from contrastkit.timeseries.losses import (
    autotcl_global_loss,
    autotcl_local_loss,
    comet_level_loss,
    hierarchical_contrastive_loss,
    hierarchical_terms,
    id_contrastive_loss,
    instance_contrastive_loss,
    mask_size_penalty,
    mmd,
    temporal_consistency,
    temporal_contrastive_loss,
)

torch.set_num_threads(1)


def lse(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.logsumexp(torch.stack(values), dim=0)


def naive_instance(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """TS2Vec eq. 2, both views as anchors, averaged over anchors, series and steps."""
    b, t = z1.shape[:2]
    terms = []
    for s in range(t):
        for i in range(b):
            for a, other in ((z1, z2), (z2, z1)):
                r = a[i, s]
                den = [r @ other[j, s] for j in range(b)] + [
                    r @ a[j, s] for j in range(b) if j != i
                ]
                terms.append(lse(den) - r @ other[i, s])
    return torch.stack(terms).mean()


def naive_temporal(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """TS2Vec eq. 1, both views as anchors, averaged over anchors, series and steps."""
    b, t = z1.shape[:2]
    terms = []
    for i in range(b):
        for s in range(t):
            for a, other in ((z1, z2), (z2, z1)):
                r = a[i, s]
                den = [r @ other[i, u] for u in range(t)] + [
                    r @ a[i, u] for u in range(t) if u != s
                ]
                terms.append(lse(den) - r @ other[i, s])
    return torch.stack(terms).mean()


def pool(z: torch.Tensor) -> torch.Tensor:
    t = z.shape[1] // 2
    return z[:, : 2 * t].reshape(z.shape[0], t, 2, z.shape[2]).amax(dim=2)


def naive_hierarchical(z1, z2, alpha=0.5, unit=0):
    total, d = 0.0, 0
    while z1.shape[1] > 1:
        total = total + alpha * naive_instance(z1, z2)
        if d >= unit:
            total = total + (1 - alpha) * naive_temporal(z1, z2)
        d += 1
        z1, z2 = pool(z1), pool(z2)
    total = total + alpha * naive_instance(z1, z2)
    return total / (d + 1)


def test_spec_hand_values():
    # spec §10.1 (d) 1: B=2, T=1, C=1, z1 = z2 = [[1], [0]]
    z = torch.tensor([[[1.0]], [[0.0]]])
    expected = (2 * math.log((math.e + 2) / math.e) + 2 * math.log(3)) / 4
    assert instance_contrastive_loss(z, z.clone()).item() == pytest.approx(0.825029, abs=1e-6)
    assert expected == pytest.approx(0.825029, abs=1e-6)
    assert hierarchical_contrastive_loss(z, z.clone()).item() == pytest.approx(0.412514, abs=1e-6)


def test_instance_and_temporal_match_naive_loops_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    for fast, slow in (
        (instance_contrastive_loss, naive_instance),
        (temporal_contrastive_loss, naive_temporal),
    ):
        a, b = fast(z1, z2), slow(z1, z2)
        assert a.item() == pytest.approx(b.item(), rel=1e-10)
        ga = torch.autograd.grad(a, (z1, z2))
        gb = torch.autograd.grad(b, (z1, z2))
        for x, y in zip(ga, gb, strict=True):
            torch.testing.assert_close(x, y)


@pytest.mark.parametrize(("alpha", "unit", "t"), [(0.5, 0, 5), (0.3, 1, 8), (1.0, 0, 4)])
def test_hierarchical_matches_naive(alpha, unit, t):
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(2, t, 3, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(2, t, 3, generator=g, dtype=torch.float64)
    fast = hierarchical_contrastive_loss(z1, z2, alpha, unit)
    slow = naive_hierarchical(z1, z2, alpha, unit)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-10)
    torch.testing.assert_close(torch.autograd.grad(fast, z1)[0], torch.autograd.grad(slow, z1)[0])


def test_hierarchical_terms_split_the_loss_and_contrast_series_across_the_whole_batch():
    """The instance part over a larger batch (every process's series) is the instance part of
    the loss of that batch; the temporal part stays the mean over this process's series."""
    g = torch.Generator().manual_seed(2)
    z1, z2 = (torch.randn(6, 7, 3, generator=g, dtype=torch.float64) for _ in range(2))
    instance, temporal = hierarchical_terms(z1, z2, 0.4, 1)
    assert (instance + temporal).item() == pytest.approx(
        hierarchical_contrastive_loss(z1, z2, 0.4, 1).item(), rel=1e-12
    )
    local, everywhere = (z1[:2], z2[:2]), (z1, z2)
    inst_all, temp_local = hierarchical_terms(*local, 0.4, 1, everywhere=everywhere)
    assert inst_all.item() == pytest.approx(instance.item(), rel=1e-12)
    assert temp_local.item() == pytest.approx(hierarchical_terms(*local, 0.4, 1)[1].item())


def test_level_count_and_alpha_limits():
    # constant in time: temporal loss at T steps is log(2T − 1) (positive ties all negatives)
    z = torch.randn(3, 1, 4).expand(3, 8, 4).contiguous()
    alpha0 = hierarchical_contrastive_loss(z, z.clone(), alpha=0.0)
    # levels T = 8, 4, 2 plus the final T = 1 level that adds nothing but counts: d = 4
    assert alpha0.item() == pytest.approx((math.log(15) + math.log(7) + math.log(3)) / 4, rel=1e-5)
    inst = instance_contrastive_loss(z[:, :1], z[:, :1].clone())
    assert hierarchical_contrastive_loss(z, z.clone(), alpha=1.0).item() == pytest.approx(
        inst.item(), rel=1e-5
    )  # every level has the same instance loss, 4 levels / 4


def test_symmetry_and_trivial_sizes():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(4, 6, 3, generator=g), torch.randn(4, 6, 3, generator=g)
    for f in (instance_contrastive_loss, temporal_contrastive_loss, hierarchical_contrastive_loss):
        assert f(z1, z2).item() == pytest.approx(f(z2, z1).item(), rel=1e-6)
    assert instance_contrastive_loss(z1[:1], z2[:1]).item() == 0.0
    assert temporal_contrastive_loss(z1[:, :1], z2[:, :1]).item() == 0.0
    with pytest.raises(ContrastkitError):
        instance_contrastive_loss(z1, z2[:, :5])


def test_comet_levels_have_no_alpha_and_no_final_level():
    g = torch.Generator().manual_seed(3)
    z1 = torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
    z2 = torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
    # T = 5 → levels of 5 and 2 steps (T > 1), mean of the two, nothing at T = 1
    want_s = (naive_instance(z1, z2) + naive_instance(pool(z1), pool(z2))) / 2
    want_o = (naive_temporal(z1, z2) + naive_temporal(pool(z1), pool(z2))) / 2
    assert comet_level_loss(z1, z2, "sample").item() == pytest.approx(want_s.item(), rel=1e-10)
    assert comet_level_loss(z1, z2, "observation").item() == pytest.approx(want_o.item(), rel=1e-10)
    assert comet_level_loss(z1[:, :1], z2[:, :1], "sample").item() == 0.0


def naive_id_loss(z1, z2, ids, tau=0.1):
    b = len(ids)
    u1 = [torch.nn.functional.normalize(z1[i], dim=0).flatten() for i in range(b)]
    u2 = [torch.nn.functional.normalize(z2[i], dim=0).flatten() for i in range(b)]
    s = [
        [torch.dot(u1[i], u2[j]) / (u1[i].norm() * u2[j].norm()) / tau for j in range(b)]
        for i in range(b)
    ]
    upper = [
        torch.logsumexp(torch.stack(s[i]), 0) - s[i][j]
        for i in range(b)
        for j in range(i + 1, b)
        if ids[i] == ids[j]
    ]
    lower = [
        torch.logsumexp(torch.stack([s[k][j] for k in range(b)]), 0) - s[i][j]
        for i in range(b)
        for j in range(i)
        if ids[i] == ids[j]
    ]
    parts = [torch.stack(p).mean() for p in (upper, lower) if p]
    return torch.stack(parts).mean() if parts else torch.zeros(())


def test_id_loss_hand_values_and_naive_loop():
    ones = torch.ones(2, 1, 1)
    assert id_contrastive_loss(ones, ones, torch.tensor([7, 7])).item() == pytest.approx(
        math.log(2), rel=1e-6
    )
    g = torch.Generator().manual_seed(4)
    z1 = torch.randn(5, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(5, 4, 3, generator=g, dtype=torch.float64)
    assert id_contrastive_loss(z1, z2, torch.arange(5)).item() == 0.0  # no positive pair
    ids = torch.tensor([0, 1, 0, 1, 0])
    fast, slow = id_contrastive_loss(z1, z2, ids), naive_id_loss(z1, z2, ids.tolist())
    assert fast.item() == pytest.approx(slow.item(), rel=1e-10)
    torch.testing.assert_close(torch.autograd.grad(fast, z1)[0], torch.autograd.grad(slow, z1)[0])


def test_id_similarity_is_the_channel_average_of_temporal_cosines():
    # spec §10.3 (d) 3: after time-normalisation, cos(u1_i, u2_j) = mean_c cos_t(z1[i,:,c], z2[j,:,c])
    g = torch.Generator().manual_seed(5)
    z1, z2 = (
        torch.randn(2, 6, 4, generator=g, dtype=torch.float64),
        torch.randn(2, 6, 4, generator=g, dtype=torch.float64),
    )
    per_channel = torch.nn.functional.cosine_similarity(z1[0], z2[1], dim=0).mean()
    ids = torch.tensor([0, 0])
    # B = 2 with one upper and one lower pair: loss = ½[(lse_row0 − S01) + (lse_col0 − S10)]
    tau = 0.5
    s01 = per_channel / tau
    s00 = torch.nn.functional.cosine_similarity(z1[0], z2[0], dim=0).mean() / tau
    s10 = torch.nn.functional.cosine_similarity(z1[1], z2[0], dim=0).mean() / tau
    want = 0.5 * (torch.logsumexp(torch.stack([s00, s01]), 0) - s01) + 0.5 * (
        torch.logsumexp(torch.stack([s00, s10]), 0) - s10
    )
    got = id_contrastive_loss(z1, z2, ids, temperature=tau)
    assert got.item() == pytest.approx(want.item(), rel=1e-10)


def test_autotcl_global_loss_hand_value():
    # spec §10.2 (d) 1: identical reps, orthogonal series → log(1 + (B − 1)/e) at τ = 1
    b = 4
    r = torch.eye(b)[:, None, :].expand(b, 3, b).contiguous()
    assert autotcl_global_loss(r, r.clone()).item() == pytest.approx(
        math.log(1 + (b - 1) / math.e), rel=1e-6
    )
    # cosine ignores the scale; raw dot products (InfoTS's form) see |2 e_i|² = 4
    assert autotcl_global_loss(2 * r, 2 * r).item() == pytest.approx(
        math.log(1 + (b - 1) / math.e), rel=1e-6
    )
    assert autotcl_global_loss(
        2 * r.double(), 2 * r.double(), normalize=False
    ).item() == pytest.approx(math.log(1 + (b - 1) * math.exp(-4)), rel=1e-6)
    # InfoTS's NT-Xent over both views: each anchor also meets the other b − 1 inputs (or views)
    assert autotcl_global_loss(r, r, intra_view=True).item() == pytest.approx(
        math.log(1 + 2 * (b - 1) / math.e), rel=1e-6
    )
    rv = torch.randn(b, 3, b, dtype=torch.float64)
    px, pv = r.double().amax(1), rv.amax(1)
    z = torch.cat([px, pv])
    s = z @ z.T
    s.fill_diagonal_(-math.inf)
    naive = (torch.logsumexp(s, 1) - torch.cat([(px * pv).sum(1)] * 2)).mean()
    assert autotcl_global_loss(
        r.double(), rv, normalize=False, intra_view=True
    ).item() == pytest.approx(naive.item(), rel=1e-10)


def naive_local(rx, k, start, series=(0,), normalize=True):
    z = torch.nn.functional.normalize(rx, dim=2) if normalize else rx
    size = rx.shape[1] // k
    terms = []
    for b in series:
        seg = [z[b, start + i * size : start + (i + 1) * size].amax(0) for i in range(k)]
        for i in range(k):
            pos = i + 1 if i < k - 1 else k - 2
            if i == 0:
                excl = {0, 1, 2}
            elif i == k - 1:
                excl = {k - 3, k - 2, k - 1}
            else:
                excl = {i - 1, i, i + 1}
            logits = [seg[i] @ seg[pos]] + [seg[i] @ seg[j] for j in range(k) if j not in excl]
            terms.append(lse(logits) - seg[i] @ seg[pos])
    return torch.stack(terms).mean()


def test_autotcl_local_loss_matches_naive_loop():
    g = torch.Generator().manual_seed(6)
    rx = torch.randn(3, 27, 4, generator=g, dtype=torch.float64, requires_grad=True)
    k = 6  # 4 steps per segment, start in {0, 1, 2, 3}
    start = int(torch.randint(0, 27 - 24 + 1, (), generator=torch.Generator().manual_seed(9)))
    fast = autotcl_local_loss(rx, k, generator=torch.Generator().manual_seed(9))
    slow = naive_local(rx, k, start)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-10)
    torch.testing.assert_close(torch.autograd.grad(fast, rx)[0], torch.autograd.grad(slow, rx)[0])
    every = autotcl_local_loss(rx, k, all_series=True, generator=torch.Generator().manual_seed(9))
    assert every.item() == pytest.approx(naive_local(rx, k, start, (0, 1, 2)).item(), rel=1e-10)
    assert autotcl_local_loss(rx[:, :5], k).item() == 0.0  # shorter than k segments
    raw = autotcl_local_loss(rx, k, normalize=False, generator=torch.Generator().manual_seed(9))
    assert raw.item() == pytest.approx(naive_local(rx, k, start, normalize=False).item(), rel=1e-10)
    assert raw.item() != pytest.approx(fast.item(), rel=1e-3)


def test_mmd_hand_value_and_limits():
    x, y = torch.tensor([[0.0]]), torch.tensor([[1.0]])
    # σ₀ = 2 / (4 − 2) = 1, bandwidths 1/4 · 2^i: K_xy = Σ exp(−1 / bw)
    kxy = sum(math.exp(-1 / (0.25 * 2**i)) for i in range(5))
    assert mmd(x, y).item() == pytest.approx(10 - 2 * kxy, rel=1e-6)
    g = torch.Generator().manual_seed(7)
    a = torch.randn(6, 3, generator=g)
    assert mmd(a, a.clone()).item() == pytest.approx(0.0, abs=1e-6)
    for _ in range(5):
        assert mmd(a, torch.randn(6, 3, generator=g)).item() >= -1e-6


def test_mask_penalties():
    h = torch.full((2, 5, 1), 0.3)
    assert mask_size_penalty(h).item() == 0.0
    assert mask_size_penalty(torch.full((2, 5, 2), 0.5)).item() == pytest.approx(0.6)
    assert temporal_consistency(torch.full((3, 7, 2), 0.8)).item() == 0.0
    ramp = (0.1 * torch.arange(7.0))[None, :, None].expand(3, 7, 2)
    assert temporal_consistency(ramp).item() == pytest.approx(0.2, rel=1e-5)  # 2 × slope


def test_hard_concrete_mask():
    h = torch.rand(4, 6, 2, generator=torch.Generator().manual_seed(8), requires_grad=True)
    m = sample_mask(h, generator=torch.Generator().manual_seed(0))
    assert set(m.detach().unique().tolist()) <= {0.0, 1.0}
    (grad,) = torch.autograd.grad((m * torch.arange(48.0).reshape(4, 6, 2)).sum(), h)
    assert grad.abs().sum() > 0  # straight-through gradient of the relaxed mask
    # a bias near ½ removes the logistic noise: training equals eval
    soft = dict(hard=False)
    near = sample_mask(h, gumbel_bias=0.5 - 1e-7, **soft)
    torch.testing.assert_close(near, sample_mask(h, training=False, **soft), atol=1e-5, rtol=0)
    want = (torch.sigmoid(h) * 1.05 - 0.05).clamp(0, 1)
    torch.testing.assert_close(sample_mask(h, training=False, **soft), want)


def test_augmenter_identity_view():
    aug = AutoTCLAugmenter(2, aug_dim=4, hidden_dims=4, depth=1)
    x = torch.randn(3, 8, 2)
    for head in (aug.factor, aug.transform):  # σ(large bias): h_logit = g = 1
        torch.nn.init.zeros_(head[0].weight)
        torch.nn.init.constant_(head[0].bias, 50.0)
    # without noise the mask is 1[σ(1)·1.05 − 0.05 > ½] = 1, so v = g ⊙ h ⊙ x = x
    out = aug(x, sample=False)
    torch.testing.assert_close(out.view, x)
    assert set(out.mask.unique().tolist()) == {1.0}
    # with noise (h_logit is a sigmoid output used as a logit) some steps are dropped
    noisy = aug(x, generator=torch.Generator().manual_seed(0))
    assert set(noisy.mask.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(noisy.view, x * noisy.mask)
