"""DCL and DCLW (instance-dense.md §2): hand values, limits, invariances, lightly agreement."""

from __future__ import annotations

import pytest
import torch

from contrastkit.config import load_config
from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, vmf_positive_weights
from contrastkit.methods import build_method
from contrastkit.objectives import DCLLoss, NTXentLoss

torch.set_num_threads(1)


def test_vmf_weights_hand_example_and_mean():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    w = vmf_positive_weights(z1, z2, sigma=0.5)
    assert w.tolist() == pytest.approx([0.802625, 1.197375], abs=1e-6)
    torch.manual_seed(0)
    w = vmf_positive_weights(torch.randn(32, 8), torch.randn(32, 8))
    assert w.mean().item() == pytest.approx(1.0, abs=1e-6)
    assert bool(((w > 2 - 32) & (w < 2)).all())


def test_dclw_equals_dcl_when_all_positives_are_equally_hard():
    torch.manual_seed(1)
    z1 = torch.randn(6, 4)
    z2 = 2 * z1  # every positive pair has cosine 1
    z = torch.cat([z1, z2])
    pairs = Pairs.views(6)
    assert vmf_positive_weights(z1, z2).tolist() == pytest.approx([1.0] * 6)
    torch.testing.assert_close(DCLLoss(0.3, weighted=True)(z, pairs), DCLLoss(0.3)(z, pairs))


def test_dcl_is_finite_for_two_samples_and_can_be_negative():
    torch.manual_seed(2)
    z = torch.randn(4, 3)
    loss = DCLLoss(0.1)(z, Pairs.views(2))
    assert torch.isfinite(loss)
    aligned = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert (
        DCLLoss(0.1)(aligned, Pairs.views(2)).item()
        < 0
        < NTXentLoss(0.1)(aligned, Pairs.views(2)).item()
    )


@pytest.mark.parametrize("weighted", [False, True])
def test_symmetric_in_views_and_batch_order(weighted):
    torch.manual_seed(3)
    z1, z2 = torch.randn(8, 5), torch.randn(8, 5)
    loss = DCLLoss(0.2, weighted=weighted)
    base = loss(torch.cat([z1, z2]), Pairs.views(8))
    torch.testing.assert_close(loss(torch.cat([z2, z1]), Pairs.views(8)), base)
    perm = torch.randperm(8)
    torch.testing.assert_close(loss(torch.cat([z1[perm], z2[perm]]), Pairs.views(8)), base)


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor")  # inside lightly
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_lightly_values_and_gradients(weighted):
    from lightly.loss import DCLLoss as LightlyDCL
    from lightly.loss import DCLWLoss as LightlyDCLW

    torch.manual_seed(4)
    z1, z2 = torch.randn(16, 32, requires_grad=True), torch.randn(16, 32, requires_grad=True)
    theirs = (LightlyDCLW(temperature=0.5, sigma=0.5) if weighted else LightlyDCL(temperature=0.5))(
        z1, z2
    )
    # lightly detaches the vMF weights; ours backpropagates through them unless told not to
    ours = DCLLoss(0.5, weighted=weighted, detach_weight=True)(torch.cat([z1, z2]), Pairs.views(16))
    torch.testing.assert_close(ours, theirs)
    grads = [torch.autograd.grad(loss, (z1, z2)) for loss in (ours, theirs)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_weight_gradient_flows_unless_detached():
    z1, z2 = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3)
    (grad,) = torch.autograd.grad(vmf_positive_weights(z1, z2)[0], z1)
    assert grad.abs().sum() > 0
    assert not vmf_positive_weights(z1, z2, detach=True).requires_grad


def test_dclw_rejects_batches_that_are_not_two_views():
    with pytest.raises(ContrastkitError, match="two views"):
        DCLLoss(weighted=True)(torch.randn(9, 3), Pairs.views(3, 3))


@pytest.mark.parametrize("recipe", ["dcl", "dclw"])
def test_recipes_build_and_take_a_step(recipe):
    config = load_config(recipe)
    method = build_method(config, channels=1, image_size=8)
    assert isinstance(method.objective, DCLLoss) and method.objective.weighted == (recipe == "dclw")
    loss = method.training_loss(torch.rand(16, 1, 8, 8))
    loss.backward()
    assert torch.isfinite(loss)
