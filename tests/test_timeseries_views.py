"""Time-series views and the TS2Vec encoder: crop geometry, masks, invariances of the
augmentations, causality, NaN handling."""

from __future__ import annotations

import pytest
import torch

from contrastkit.errors import ContrastkitError
from contrastkit.timeseries.encoder import TSEncoder, instance_pool
from contrastkit.timeseries.views import (
    binomial_mask,
    continuous_mask,
    jitter,
    permutation,
    random_crops,
    scaling,
    time_warp,
)

torch.set_num_threads(1)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_crops_overlap_and_positions():
    x = torch.arange(5 * 40, dtype=torch.float32).reshape(5, 40, 1)  # value = 40·b + t
    for seed in range(20):
        c = random_crops(x, generator=gen(seed))
        assert 2 <= c.overlap <= 40
        torch.testing.assert_close(c.x1[:, c.overlap1], c.x2[:, c.overlap2])  # same steps
        for crop in (c.x1, c.x2):
            t = crop[..., 0] - 40 * torch.arange(5)[:, None]
            assert ((t >= 0) & (t < 40)).all()  # inside each own series
            assert (t.diff(dim=1) == 1).all()  # contiguous windows
        # the two views share each series' offset: view 2 starts where the overlap starts
        assert (c.x1[:, c.overlap1][:, 0] == c.x2[:, 0]).all()
    a, b = random_crops(x, generator=gen(3)), random_crops(x, generator=gen(3))
    assert torch.equal(a.x1, b.x1) and torch.equal(a.x2, b.x2)
    with pytest.raises(ContrastkitError):
        random_crops(x[:, :3], temporal_unit=1)


def test_masks():
    m = binomial_mask(200, 50, 0.5, generator=gen())
    assert m.dtype == torch.bool and abs(m.float().mean().item() - 0.5) < 0.02
    assert binomial_mask(3, 4, 0.0).sum() == 0 and binomial_mask(3, 4, 1.0).all()
    c = continuous_mask(50, 100, n=5, span=0.1, generator=gen())
    hidden = (~c).sum(dim=1)
    assert (hidden >= 10).all() and (hidden <= 50).all()
    # every hidden run is at least one span long
    for row in (~c).int():
        runs = torch.diff(torch.cat([torch.zeros(1), row.float(), torch.zeros(1)]))
        starts, ends = torch.where(runs == 1)[0], torch.where(runs == -1)[0]
        assert ((ends - starts) >= 10).all()


def test_jitter_and_scaling():
    x = torch.randn(4, 30, 3, generator=gen(1))
    torch.testing.assert_close(jitter(x, 0.0, generator=gen()), x)
    torch.testing.assert_close(scaling(x, 0.0, generator=gen()), x)
    noise = jitter(x, 0.5, generator=gen(2)) - x
    assert abs(noise.std().item() - 0.5) < 0.05
    ratio = scaling(x, 0.3, generator=gen(3)) / x
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))  # one factor per channel


def test_permutation_moves_whole_segments_and_keeps_padding():
    x = torch.arange(3 * 20, dtype=torch.float32).reshape(3, 20, 1)
    x[1, 15:] = float("nan")  # series 1 has length 15
    y = permutation(x, 4, generator=gen(4))
    for b, n in ((0, 20), (1, 15), (2, 20)):
        assert torch.equal(y[b, :n, 0].sort().values, x[b, :n, 0].sort().values)
        assert torch.isnan(y[b, n:]).all()
        jumps = (y[b, : n - 1, 0].diff() != 1).sum()
        assert 1 <= jumps <= 3  # 2–4 pieces, at least one moved
    same = permutation(x, 4, generator=gen(4))
    assert torch.equal(torch.nan_to_num(same), torch.nan_to_num(y))


def test_time_warp():
    x = torch.linspace(0, 1, 25).repeat(2, 1)[..., None]
    x[1, 20:] = float("nan")
    torch.testing.assert_close(time_warp(x, 0.0, generator=gen()), x, equal_nan=True)
    y = time_warp(x, 0.5, generator=gen(5))
    assert (y[0, :, 0].diff() > 0).all()  # a monotone map of time keeps a ramp increasing
    assert y[0, 0, 0] == 0 and y[0, -1, 0] == pytest.approx(1.0)  # ends stay in place
    assert y[1, 19, 0] == pytest.approx(x[1, 19, 0].item())
    assert torch.isnan(y[1, 20:]).all() and not torch.isnan(y[1, :20]).any()


def test_encoder_shapes_blocks_and_causality():
    net = TSEncoder(2, output_dims=8, hidden_dims=6, depth=3).eval()
    assert [b.conv1.conv.dilation[0] for b in net.feature_extractor] == [1, 2, 4, 8]
    x = torch.randn(2, 30, 2, generator=gen(6))
    z = net(x)
    assert z.shape == (2, 30, 8) and instance_pool(z).shape == (2, 8)
    future = x.clone()
    future[:, 20:] += 1.0
    assert not torch.allclose(net(future)[:, :20], z[:, :20])  # centred convs see the future
    causal = TSEncoder(2, output_dims=8, hidden_dims=6, depth=3, causal=True).eval()
    torch.testing.assert_close(causal(future)[:, :20], causal(x)[:, :20])
    assert not torch.allclose(causal(future)[:, 20:], causal(x)[:, 20:])


def test_encoder_masks_and_missing_values():
    net = TSEncoder(1, output_dims=8, hidden_dims=6, depth=2).eval()
    x = torch.randn(2, 12, 1, generator=gen(7))
    nan = x.clone()
    nan[0, 5] = float("nan")
    keep = torch.ones(2, 12, dtype=torch.bool)
    keep[0, 5] = False
    # a missing step is the same as a masked step of any value
    torch.testing.assert_close(net(nan), net(x, mask=keep))
    # with every step masked the output no longer depends on the input
    torch.testing.assert_close(net(x, mask="all_false"), net(x + 3.0, mask="all_false"))
    net.train()
    a = net(x, generator=gen(1))
    torch.testing.assert_close(
        net.mask(2, 12, None, gen(1), x.device), binomial_mask(2, 12, 0.5, generator=gen(1))
    )
    assert a.shape == (2, 12, 8)
    with pytest.raises(ContrastkitError):
        net(torch.randn(2, 12, 3))
    with pytest.raises(ContrastkitError):
        net(x, mask="sometimes")
