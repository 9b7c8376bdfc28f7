"""Alignment, uniformity, tolerance (instance-dense.md §1 d.5–7) and the align+uniform objective."""

from __future__ import annotations

import math

import pytest
import torch

from contrastkit.config import load_config
from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, alignment, tolerance, uniformity
from contrastkit.methods import build_method
from contrastkit.objectives import AlignUniformLoss

torch.set_num_threads(1)
POINTS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])


def test_uniformity_hand_value_invariances_and_collapse():
    expected = math.log((2 * math.exp(-4) + math.exp(-8)) / 3)
    assert uniformity(POINTS, t=2).item() == pytest.approx(-4.396349, abs=1e-6)
    assert expected == pytest.approx(-4.396349, abs=1e-6)
    angle = torch.tensor(0.7)
    rotation = torch.tensor([[angle.cos(), -angle.sin()], [angle.sin(), angle.cos()]])
    torch.testing.assert_close(uniformity(POINTS @ rotation), uniformity(POINTS))
    torch.testing.assert_close(uniformity(POINTS[[2, 0, 1]]), uniformity(POINTS))
    assert uniformity(torch.ones(5, 3)).item() == pytest.approx(0.0, abs=1e-7)


def test_alignment_hand_value():
    y = torch.tensor([[0.6, 0.8], [0.0, 1.0], [-0.8, 0.6]])
    assert alignment(POINTS, y, alpha=2).item() == pytest.approx(0.4, abs=1e-6)
    assert alignment(POINTS, POINTS).item() == 0.0


def test_tolerance_identical_within_class_and_modes():
    features = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3), dim=1
    )
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert tolerance(features, labels).item() == pytest.approx(1.0)
    # literal: 12 same-class ordered pairs out of 30 off-diagonal pairs, each with similarity 1
    assert tolerance(features, labels, mode="literal").item() == pytest.approx(12 / 30)
    with pytest.raises(ContrastkitError, match="two samples"):
        tolerance(features[:2], torch.tensor([0, 1]))


def test_objective_is_the_weighted_sum_on_normalised_views():
    torch.manual_seed(0)
    z1, z2 = torch.randn(8, 4), torch.randn(8, 4)
    x, y = torch.nn.functional.normalize(z1, dim=1), torch.nn.functional.normalize(z2, dim=1)
    loss = AlignUniformLoss(alpha=2, t=2, align_weight=0.5, uniform_weight=2.0)
    expected = 0.5 * alignment(x, y) + 2.0 * (uniformity(x) + uniformity(y)) / 2
    torch.testing.assert_close(loss(torch.cat([z1, z2]), Pairs.views(8)), expected)
    with pytest.raises(ContrastkitError, match="two views"):
        loss(torch.randn(9, 4), Pairs.views(3, 3))


def test_recipe_trains_a_step():
    method = build_method(load_config("align-uniform"), channels=1, image_size=8)
    loss = method.training_loss(torch.rand(16, 1, 8, 8))
    loss.backward()
    assert torch.isfinite(loss)
