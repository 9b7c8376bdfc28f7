"""Hardness (instance-dense.md §1): the relative penalty over negatives and the hard contrastive
loss that keeps only the top negatives."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, info_nce, negative_hardness

torch.set_num_threads(1)
A = torch.tensor([[1.0, 0.0]])
CANDIDATES = torch.tensor([[0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
ONE_POSITIVE = Pairs(torch.tensor([0]), torch.tensor([0, 1, 2]))


def test_relative_penalty_hand_example_and_temperature():
    r = negative_hardness(A, ONE_POSITIVE, CANDIDATES, temperature=0.5)
    assert r[0].tolist() == pytest.approx([0.0, 0.880797, 0.119203], abs=1e-6)
    torch.manual_seed(0)
    z = torch.randn(12, 6)
    entropies = []
    for tau in (0.05, 0.1, 0.3, 1.0, 3.0):
        r = negative_hardness(z, Pairs.views(6), temperature=tau)
        torch.testing.assert_close(r.sum(1), torch.ones(12))
        assert (r[Pairs.views(6).positive_mask()] == 0).all() and (r.diagonal() == 0).all()
        entropies.append(-(r * r.clamp_min(1e-30).log()).sum(1).mean().item())
    assert all(a < b for a, b in itertools.pairwise(entropies))
    assert entropies[-1] < math.log(10)  # at most uniform over the 10 negatives


def test_keeping_every_negative_is_infonce():
    torch.manual_seed(1)
    z = torch.randn(10, 4)
    pairs = Pairs.views(5)
    full = info_nce(z, pairs, temperature=0.2)
    torch.testing.assert_close(info_nce(z, pairs, temperature=0.2, hard_negatives=8), full)
    torch.testing.assert_close(info_nce(z, pairs, temperature=0.2, hard_negatives=1.0), full)
    torch.testing.assert_close(info_nce(z, pairs, temperature=0.2, hard_negatives=100), full)


def test_hardest_negative_only_hand_value_and_gradients():
    tau = 0.5
    a = A.clone().requires_grad_(True)
    c = CANDIDATES.clone().requires_grad_(True)
    loss = info_nce(a, ONE_POSITIVE, c, temperature=tau, hard_negatives=1)
    s = (A @ CANDIDATES.T)[0] / tau  # the hardest negative is n1 = (0, 1)
    assert loss.item() == pytest.approx((torch.logsumexp(s[:2], 0) - s[0]).item(), abs=1e-6)
    loss.backward()
    assert c.grad[2].abs().sum() == 0 and c.grad[1].abs().sum() > 0  # the easy negative is out


def test_top_fraction_matches_a_naive_loop():
    torch.manual_seed(2)
    z = torch.randn(12, 5)
    pairs = Pairs.views(6)
    zn = F.normalize(z, dim=1)
    logits = zn @ zn.T / 0.3
    expected = []
    for i in range(12):
        j = (i + 6) % 12
        negatives = sorted(
            (logits[i, k].item() for k in range(12) if k not in (i, j)), reverse=True
        )
        kept = negatives[: math.ceil(0.3 * 10)]
        expected.append(
            math.log(math.exp(logits[i, j].item()) + sum(map(math.exp, kept))) - logits[i, j].item()
        )
    ours = info_nce(z, pairs, temperature=0.3, hard_negatives=0.3, reduction="none")
    assert ours.tolist() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("bad", [0, -1, 1.5, 0.0, True])
def test_bad_hard_negative_settings(bad):
    with pytest.raises(ContrastkitError, match="hard_negatives"):
        info_nce(torch.randn(4, 3), Pairs.views(2), hard_negatives=bad)


def test_hard_contrastive_loss_from_a_config():
    from contrastkit.config import load_config
    from contrastkit.methods import build_method

    config = load_config(
        "simclr", ["objective.name=infonce", "objective.options.hard_negatives=0.5"]
    )
    method = build_method(config, channels=1, image_size=8)
    assert method.objective.hard_negatives == 0.5
    assert torch.isfinite(method.training_loss(torch.rand(8, 1, 8, 8)))
