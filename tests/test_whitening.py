"""Shuffled Group Whitening and the SimCSE / WhitenedCSE objective (spec
labels-multimodal-other.md §4): the whitening property, permutation (in)dependence, the identity
round trip, a scipy reference, gradients with and without the whitening matrix, and the loss
against naive in-batch cross-entropies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.linalg import fractional_matrix_power

from contrastkit.errors import ContrastkitError
from contrastkit.nn import ShuffledGroupWhitening
from contrastkit.objectives import SentenceContrastLoss


def correlated(rows: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Rows with a mean offset and strongly correlated channels."""
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    return torch.randn(rows, dim, generator=g, dtype=torch.float64) @ mixing + 3.0


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def scipy_reference(x: torch.Tensor, groups: int, order: torch.Tensor, eps: float) -> np.ndarray:
    """ZCA per group of the permuted channels with scipy's matrix power Σ^{-1/2}."""
    x = x.numpy()[:, order.numpy()]
    centred = x - x.mean(0)
    out = np.empty_like(centred)
    size = x.shape[1] // groups
    for g in range(groups):
        block = centred[:, g * size : (g + 1) * size]
        covariance = block.T @ block / len(x) + eps * np.eye(size)
        out[:, g * size : (g + 1) * size] = block @ fractional_matrix_power(covariance, -0.5).real
    return out[:, np.argsort(order.numpy())]


def test_whitening_property_per_group():
    # §4d.1: (1/B) Y_gᵀ Y_g = I for every group, B = 64, D = 8, G = 4
    x = correlated(64, 8)
    y = ShuffledGroupWhitening(4, eps=0.0)(x, seeded(1))
    order = torch.randperm(8, generator=seeded(1))
    grouped = y[:, order].reshape(64, 4, 2)
    for g in range(4):
        block = grouped[:, g]
        torch.testing.assert_close(
            block.T @ block / 64, torch.eye(2, dtype=torch.float64), rtol=0, atol=1e-8
        )
    # only within groups: channels of different groups stay correlated
    covariance = y[:, order].T @ y[:, order] / 64
    assert float(covariance[0, 2:].abs().max()) > 0.1
    # eps shrinks each eigenvalue to λ/(λ + eps)
    y_eps = ShuffledGroupWhitening(4, eps=0.5)(x, seeded(1))
    block = y_eps[:, order[:2]]
    centred = x[:, order[:2]] - x[:, order[:2]].mean(0)
    eigenvalues = torch.linalg.eigvalsh(centred.T @ centred / 64)
    torch.testing.assert_close(
        torch.linalg.eigvalsh(block.T @ block / 64), eigenvalues / (eigenvalues + 0.5)
    )


@pytest.mark.parametrize(("groups", "eps"), [(1, 0.0), (2, 1e-3), (4, 1e-5)])
def test_whitening_matches_scipy_reference(groups, eps):
    x = correlated(20, 8, seed=2)
    y = ShuffledGroupWhitening(groups, eps=eps)(x, seeded(3))
    order = torch.randperm(8, generator=seeded(3))
    np.testing.assert_allclose(y.numpy(), scipy_reference(x, groups, order, eps), atol=1e-9)


def test_one_group_is_permutation_free_and_several_groups_are_not():
    # §4d.2: ZCA is permutation-equivariant, so with G = 1 every permutation gives one output
    x = correlated(32, 6, seed=4)
    one = ShuffledGroupWhitening(1)
    torch.testing.assert_close(one(x, seeded(0)), one(x, seeded(1)), rtol=0, atol=1e-10)
    assert not torch.equal(
        torch.randperm(6, generator=seeded(0)), torch.randperm(6, generator=seeded(1))
    )
    three = ShuffledGroupWhitening(3)
    assert float((three(x, seeded(0)) - three(x, seeded(1))).abs().max()) > 0.1


def test_identity_covariance_returns_the_centred_input():
    # §4d.3: Σ = I in every group ⇒ W = I and the output is the centred input, for any π
    b, d = 16, 4
    basis, _ = torch.linalg.qr(torch.randn(b, d + 1, generator=seeded(5), dtype=torch.float64))
    # orthonormal columns orthogonal to the all-ones vector: centred, with X̄ᵀX̄/B = I
    ones = torch.ones(b, 1, dtype=torch.float64) / b**0.5
    basis = torch.linalg.qr(torch.cat([ones, basis], dim=1))[0][:, 1 : d + 1]
    centred = basis * b**0.5
    x = centred + torch.tensor([1.0, -2.0, 0.5, 4.0], dtype=torch.float64)
    for seed in range(3):
        y = ShuffledGroupWhitening(2, eps=0.0)(x, seeded(seed))
        torch.testing.assert_close(y, centred, rtol=0, atol=1e-10)


def test_gradient_with_a_constant_or_a_differentiable_whitening_matrix():
    x = correlated(8, 4, seed=6).requires_grad_(True)
    weights = torch.randn(8, 4, generator=seeded(7), dtype=torch.float64)
    constant = ShuffledGroupWhitening(2, eps=1e-3)
    (constant(x, seeded(8)) * weights).sum().backward()
    # the release: Y = X̄ W with W a constant (here from scipy)
    order = torch.randperm(4, generator=seeded(8))
    reference_x = x.detach().clone().requires_grad_(True)
    permuted = reference_x[:, order]
    centred = permuted - permuted.mean(0)
    whitened = []
    for g in range(2):
        block = centred[:, 2 * g : 2 * g + 2]
        cov = (block.T @ block / 8).detach().numpy() + 1e-3 * np.eye(2)
        w = torch.from_numpy(fractional_matrix_power(cov, -0.5).real)
        whitened.append(block @ w)
    reference = torch.cat(whitened, dim=1)[:, torch.argsort(order)]
    (reference * weights).sum().backward()
    torch.testing.assert_close(x.grad, reference_x.grad)
    # through the eigendecomposition: exact (finite differences) and different from the above
    full = ShuffledGroupWhitening(2, eps=1e-3, grad_through_whitening=True)
    probe = x.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: (full(v, seeded(8)) * weights).sum(), (probe,))
    (full(probe, seeded(8)) * weights).sum().backward()
    assert float((probe.grad - x.grad).abs().max()) > 1e-3


def test_views_whitened_alone_in_training_and_together_in_eval():
    x = correlated(24, 6, seed=9)
    sgw = ShuffledGroupWhitening(3, eps=0.0)
    generator = seeded(10)
    first, second = sgw(x[:12], generator), sgw(x[12:], generator)
    torch.testing.assert_close(sgw(x, seeded(10), num_views=2), torch.cat([first, second]))
    sgw.eval()
    together = sgw(x, seeded(10), num_views=2)
    torch.testing.assert_close(together, sgw(x, seeded(10)))
    # all 24 rows whitened jointly, groups from the one permutation
    grouped = together[:, torch.randperm(6, generator=seeded(10))].reshape(24, 3, 2)
    for g in range(3):
        block = grouped[:, g]
        torch.testing.assert_close(
            block.T @ block / 24, torch.eye(2, dtype=torch.float64), rtol=0, atol=1e-8
        )
    assert float((together - torch.cat([first, second])).abs().max()) > 0.1
    assert sgw(x.float(), seeded(0)).dtype == torch.float32


def test_whitening_errors():
    sgw = ShuffledGroupWhitening(4)
    with pytest.raises(ContrastkitError, match="not divisible by num_groups=4"):
        sgw(torch.randn(16, 6))
    with pytest.raises(ContrastkitError, match="larger batch or more groups"):
        sgw(torch.randn(2, 8))  # groups of 2 channels need more than 2 rows
    with pytest.raises(ContrastkitError, match="2-D float"):
        sgw(torch.randn(4, 8, 2))
    with pytest.raises(ContrastkitError, match="do not split into 3 views"):
        sgw(torch.randn(16, 8), num_views=3)
    with pytest.raises(ContrastkitError, match="num_groups"):
        ShuffledGroupWhitening(0)
    with pytest.raises(ContrastkitError, match="eps"):
        ShuffledGroupWhitening(2, eps=-1.0)


# -- SimCSE / WhitenedCSE ----------------------------------------------------------------------
def naive_in_batch(z1: torch.Tensor, zk: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCSE's unsupervised loss: CE over cos(z¹_i, z^k_j)/τ, targets the diagonal."""
    cos = F.cosine_similarity(z1[:, None], zk[None, :], dim=-1)
    return F.cross_entropy(cos / tau, torch.arange(len(z1)))


def test_simcse_limit_is_naive_in_batch_cross_entropy():
    # §4d.4: m = 2 and no whitening ⇒ exactly SimCSE's unsupervised InfoNCE
    views = correlated(2 * 10, 6, seed=11).reshape(2, 10, 6).requires_grad_(True)
    loss = SentenceContrastLoss(6, temperature=0.05, mlp=False)(views)
    loss.backward()
    reference_views = views.detach().clone().requires_grad_(True)
    reference = naive_in_batch(reference_views[0], reference_views[1], 0.05)
    reference.backward()
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(views.grad, reference_views.grad)


def test_whitenedcse_is_a_sum_over_positive_passes():
    torch.manual_seed(0)
    objective = SentenceContrastLoss(8, num_pos=3, whitening_groups=2).double()
    views = correlated(3 * 12, 8, seed=12).reshape(3, 12, 8)
    loss = objective(views, seeded(13))
    generator = seeded(13)
    z = [objective.mlp(ShuffledGroupWhitening(2)(views[k], generator)) for k in range(3)]
    expected = naive_in_batch(z[0], z[1], 0.05) + naive_in_batch(z[0], z[2], 0.05)
    torch.testing.assert_close(loss, expected)
    assert set(objective.logged) == {"positive_2", "positive_3"}
    loss.backward()
    assert objective.mlp[0].weight.grad.abs().sum() > 0


def test_loss_is_invariant_to_a_common_permutation_of_the_sentences():
    # §4d.5
    torch.manual_seed(1)
    objective = SentenceContrastLoss(8, num_pos=3, whitening_groups=4).double()
    noise = torch.randn(3, 16, 8, generator=seeded(17), dtype=torch.float64)
    views = correlated(16, 8, seed=14) + 0.05 * noise  # three dropout-like passes
    shuffle = torch.randperm(16, generator=seeded(15))
    torch.testing.assert_close(
        objective(views, seeded(16)), objective(views[:, shuffle], seeded(16))
    )
    # a permutation of one pass only breaks the pairing
    broken = views.clone()
    broken[1] = views[1, shuffle]
    assert objective(broken, seeded(16)).item() > objective(views, seeded(16)).item() + 1.0


def test_sentence_loss_errors():
    objective = SentenceContrastLoss(8, num_pos=3, whitening_groups=2)
    with pytest.raises(ContrastkitError, match="num_pos=3"):
        objective(torch.randn(2, 10, 8))
    with pytest.raises(ContrastkitError, match="dim=8"):
        objective(torch.randn(3, 10, 6))
    with pytest.raises(ContrastkitError, match=r"\[num_pos, B, D\]"):
        objective(torch.randn(30, 8))
    with pytest.raises(ContrastkitError, match="larger batch"):
        objective(torch.randn(3, 4, 8))  # groups of 4 channels need more than 4 sentences
    with pytest.raises(ContrastkitError, match="does not divide dim=8"):
        SentenceContrastLoss(8, whitening_groups=3)
    with pytest.raises(ContrastkitError, match="num_pos"):
        SentenceContrastLoss(8, num_pos=1)
