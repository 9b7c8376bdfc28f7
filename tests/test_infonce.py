"""The InfoNCE engine against the hand-computed values of the spec (instance-dense.md §1–§2),
its limits and invariances, a naive per-anchor loop, and lightly's NT-Xent."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, info_nce, nt_xent
from contrastkit.objectives import InfoNCELoss, NTXentLoss

torch.set_num_threads(1)
A = torch.tensor([[1.0, 0.0]])
CANDIDATES = torch.tensor([[0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])  # positive first, n1, n2
ONE_POSITIVE = Pairs(torch.tensor([0]), torch.tensor([0, 1, 2]))


def similarity_gradient(
    s: torch.Tensor, tau: float, **options
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and ∂L/∂s for one anchor with similarities ``s`` (positive first): an anchor equal to
    ``s`` against the identity as candidates makes the logits exactly ``s / τ``."""
    s = s.double().requires_grad_(True)
    loss = info_nce(
        s[None], ONE_POSITIVE, torch.eye(3).double(), temperature=tau, normalize=False, **options
    )
    (grad,) = torch.autograd.grad(loss, s)
    return loss.detach(), grad


def naive_loss(
    z,
    anchor_ids,
    cand,
    cand_ids,
    tau,
    self_offset=None,
    exclude_positives=False,
    extra=None,
    neg_w=None,
    pos_w=None,
):
    """Per-anchor loop straight from the formula, independent of the engine's masking."""
    z, cand = F.normalize(z, dim=1), F.normalize(cand, dim=1)
    extra = F.normalize(extra, dim=1) if extra is not None else torch.zeros(0, z.shape[1])
    losses = []
    for i in range(len(z)):
        pos, den = [], []
        for j in range(len(cand)):
            if self_offset is not None and j == self_offset + i:
                continue
            s = float(z[i] @ cand[j]) / tau
            w = 1.0 if neg_w is None else float(neg_w[j])
            if anchor_ids[i] == cand_ids[j]:
                pos.append(s)
                if not exclude_positives:
                    den.append(math.exp(s))
            else:
                den.append(w * math.exp(s))
        for k in range(len(extra)):
            w = 1.0 if neg_w is None else float(neg_w[len(cand) + k])
            den.append(w * math.exp(float(z[i] @ extra[k]) / tau))
        if pos:
            scale = 1.0 if pos_w is None else float(pos_w[i])
            losses.append(math.log(sum(den)) - scale * sum(pos) / len(pos))
    return sum(losses) / len(losses)


def test_hand_example_value_probabilities_and_similarity_gradients():
    loss = info_nce(A, ONE_POSITIVE, CANDIDATES, temperature=0.5)
    assert loss.item() == pytest.approx(0.294129, abs=1e-6)
    _, grad = similarity_gradient(A[0] @ CANDIDATES.T, 0.5)
    assert grad.tolist() == pytest.approx([-0.509639, 0.448888, 0.060750], abs=1e-6)
    p = torch.cat(
        [1 - grad[:1] * -0.5, grad[1:] * 0.5]
    )  # P_pos = 1 − τ|∂L/∂s_pos|, P_j = τ ∂L/∂s_j
    assert p.tolist() == pytest.approx([0.745181, 0.224444, 0.030375], abs=1e-6)
    assert grad.sum().item() == pytest.approx(0.0, abs=1e-7)  # Σ_neg ∂L/∂s = −∂L/∂s_pos
    relative_penalty = grad[1:] / grad[0].abs()
    assert relative_penalty.tolist() == pytest.approx([0.880797, 0.119203], abs=1e-6)


def test_gradient_wrt_anchor_feature_matches_closed_form():
    tau = 0.5
    f = A.clone().requires_grad_(True)
    loss = info_nce(f, ONE_POSITIVE, CANDIDATES, temperature=tau, normalize=False)
    (grad,) = torch.autograd.grad(loss, f)
    p = torch.softmax(A @ CANDIDATES.T / tau, dim=1)[0]
    expected = (-(1 - p[0]) * CANDIDATES[0] + p[1:] @ CANDIDATES[1:]) / tau
    torch.testing.assert_close(grad[0], expected)


def test_temperature_limits_and_hardness_entropy():
    s = A[0] @ CANDIDATES.T
    hard_margin = max((s[1:].max() - s[0]).item(), 0.0)
    tau_l_01 = 0.1 * info_nce(A, ONE_POSITIVE, CANDIDATES, temperature=0.1).item()
    tau_l_001 = 0.01 * info_nce(A, ONE_POSITIVE, CANDIDATES, temperature=0.01).item()
    assert tau_l_01 == pytest.approx(2.48e-4, rel=0.01)
    assert tau_l_001 == pytest.approx(hard_margin, abs=1e-12)
    big = info_nce(A, ONE_POSITIVE, CANDIDATES, temperature=1000.0).item()
    n = 3
    asymptote = math.log(n) + (n - 1) / (n * 1000.0) * (-s[0] + s[1:].mean()).item()
    assert big == pytest.approx(1.097879, abs=1e-6)
    assert big == pytest.approx(asymptote, abs=1e-6)

    entropies = []
    for tau in (0.05, 0.1, 0.2, 0.5, 1.0, 5.0):
        _, grad = similarity_gradient(s, tau)
        r = grad[1:] / grad[0].abs()
        assert r.sum().item() == pytest.approx(1.0, abs=1e-6)
        entropies.append(-(r * r.log()).sum().item())
    assert all(a < b for a, b in itertools.pairwise(entropies))


def test_dcl_equals_ntxent_plus_log_q_and_has_unit_positive_gradient():
    assert info_nce(
        A, ONE_POSITIVE, CANDIDATES, temperature=0.5, exclude_positives=True
    ).item() == (pytest.approx(-1.073072, abs=1e-6))
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 5), torch.randn(6, 5)
    z = torch.cat([z1, z2])
    pairs = Pairs.views(6)
    ntx = nt_xent(z1, z2, temperature=0.3, reduction="none")
    dcl = nt_xent(z1, z2, temperature=0.3, reduction="none", exclude_positives=True)
    logits = F.normalize(z, dim=1) @ F.normalize(z, dim=1).T / 0.3
    logits = logits.masked_fill(pairs.self_mask(), float("-inf"))
    p_pos = torch.softmax(logits, 1)[pairs.positive_mask()]
    torch.testing.assert_close(dcl, ntx + torch.log1p(-p_pos))
    _, grad = similarity_gradient(A[0] @ CANDIDATES.T, 0.5, exclude_positives=True)
    assert (grad[0] * 0.5).item() == pytest.approx(-1.0, abs=1e-7)  # ∂L/∂(s_pos/τ) = −1


@pytest.mark.parametrize("n_views", [2, 3, 4])
def test_multi_view_matches_naive_loop(n_views):
    torch.manual_seed(n_views)
    b = 5
    z = torch.randn(n_views * b, 7)
    ids = torch.arange(b).repeat(n_views)
    ours = nt_xent(*z.chunk(n_views), temperature=0.2)
    assert ours.item() == pytest.approx(naive_loss(z, ids, z, ids, 0.2, self_offset=0), rel=1e-5)


def test_supervised_extra_negatives_weights_and_offsets_match_naive_loop():
    torch.manual_seed(1)
    labels = torch.tensor([0, 1, 1, 2, 0, 3])  # classes 2 and 3 have one sample: no positive
    z, queue = torch.randn(6, 4), torch.randn(3, 4)
    pairs = Pairs.labels(labels)
    neg_w = torch.rand(9) + 0.1
    pos_w = torch.rand(6) + 0.5
    for kwargs in (
        {},
        {"exclude_positives": True},
        {"extra_negatives": queue},
        {"extra_negatives": queue, "negative_weight": neg_w},
        {"positive_weight": pos_w},
    ):
        ours = info_nce(z, pairs, temperature=0.4, **kwargs).item()
        ref = naive_loss(
            z,
            labels,
            z,
            labels,
            0.4,
            self_offset=0,
            exclude_positives=kwargs.get("exclude_positives", False),
            extra=kwargs.get("extra_negatives"),
            neg_w=kwargs.get("negative_weight"),
            pos_w=kwargs.get("positive_weight"),
        )
        assert ours == pytest.approx(ref, rel=1e-5), kwargs
    per_anchor = info_nce(z, pairs, temperature=0.4, reduction="none")
    assert per_anchor.isnan().tolist() == [False, False, False, True, False, True]

    # local anchors against a larger candidate set (one rank's rows of a gathered batch)
    local = slice(2, 4)
    sub = Pairs(labels[local], labels, self_offset=2)
    ours = info_nce(z[local], sub, z, temperature=0.4).item()
    assert ours == pytest.approx(naive_loss(z[local], labels[local], z, labels, 0.4, self_offset=2))


def test_per_pair_negative_weight_and_zero_weight_removes_a_candidate():
    z = torch.randn(4, 3)
    pairs = Pairs.views(2)
    w = torch.ones(4, 4)
    w[0, 3] = 0.0  # anchor 0's only negative besides candidate 1 is dropped
    keep = info_nce(z, pairs, temperature=0.5, negative_weight=w, reduction="none")[0]
    zn = F.normalize(z, dim=1)
    s = zn[0] @ zn.T / 0.5
    expected = torch.logsumexp(s[[1, 2]], 0) - s[2]
    torch.testing.assert_close(keep, expected)


def test_invariances():
    torch.manual_seed(2)
    z1, z2 = torch.randn(8, 6), torch.randn(8, 6)
    base = nt_xent(z1, z2, temperature=0.2)
    torch.testing.assert_close(nt_xent(z2, z1, temperature=0.2), base)  # view symmetry
    perm = torch.randperm(8)
    torch.testing.assert_close(nt_xent(z1[perm], z2[perm], temperature=0.2), base)  # batch order
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    torch.testing.assert_close(nt_xent(z1 @ q, z2 @ q, temperature=0.2), base)  # rotation
    torch.testing.assert_close(nt_xent(3 * z1, 0.5 * z2, temperature=0.2), base)  # scale
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    relabelled = torch.tensor([7, 7, 2, 2, 9, 9, 4, 4])
    z = torch.cat([z1, z2])
    torch.testing.assert_close(
        info_nce(z, Pairs.labels(labels, 2)), info_nce(z, Pairs.labels(relabelled, 2))
    )


def test_matches_lightly_ntxent():
    from lightly import loss as lightly_loss  # the anchor library (a dev dependency)

    torch.manual_seed(3)
    z1, z2 = torch.randn(16, 32), torch.randn(16, 32)
    expected = lightly_loss.NTXentLoss(temperature=0.5)(z1, z2)
    torch.testing.assert_close(NTXentLoss(0.5)(torch.cat([z1, z2]), Pairs.views(16)), expected)
    dcl = lightly_loss.DCLLoss(temperature=0.5, weight_fn=None)(z1, z2)
    ours = InfoNCELoss(0.5, exclude_positives=True)(torch.cat([z1, z2]), Pairs.views(16))
    torch.testing.assert_close(ours, dcl)


def test_gradients_match_naive_autograd():
    torch.manual_seed(4)
    z = torch.randn(10, 5, dtype=torch.float64, requires_grad=True)
    pairs = Pairs.views(5)
    loss = info_nce(z, pairs, temperature=0.3)
    (grad,) = torch.autograd.grad(loss, z)
    zz = z.detach().clone().requires_grad_(True)
    logits = F.normalize(zz, dim=1) @ F.normalize(zz, dim=1).T / 0.3
    logits = logits.masked_fill(torch.eye(10, dtype=torch.bool), float("-inf"))
    ref = F.cross_entropy(logits, torch.arange(10).roll(5))
    (ref_grad,) = torch.autograd.grad(ref, zz)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "call, phrase",
    [
        (lambda: info_nce(torch.randn(4, 3), Pairs.views(3)), "pairs describe"),
        (lambda: info_nce(torch.randn(4, 3), Pairs.views(2), temperature=0.0), "temperature"),
        (lambda: info_nce(torch.randn(4), Pairs.views(2)), "2-D float"),
        (lambda: Pairs(torch.tensor([0.5]), torch.tensor([0.5])), "integer ids"),
        (lambda: nt_xent(torch.randn(4, 3)), "at least two view"),
        (lambda: Pairs.views(4, 1), "2 views"),
        (
            lambda: info_nce(torch.randn(4, 3), Pairs.views(2), negative_weight=torch.ones(3)),
            "negative_weight",
        ),
        (
            lambda: info_nce(torch.randn(4, 3), Pairs.views(2), extra_negatives=torch.randn(2, 5)),
            "dimension",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(call, phrase):
    with pytest.raises(ContrastkitError, match=phrase):
        call()
