"""Two-tower objectives (spec labels-multimodal-other.md §5 CLIP + contrastive gap, §6 ConVIRT,
§11 CoCoSoDa): the spec's hand values, limits, naive dense references for values and gradients,
the logit-scale clamp, the queues, and two gloo ranks against one process."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from gloo import run_on_ranks

import contrastkit.functional.infonce as infonce_module
from contrastkit.errors import ContrastkitError
from contrastkit.functional import (
    clip_directions,
    clip_loss,
    cross_uniformity,
    gap_terms,
    uniformity,
)
from contrastkit.nn import LogitScale
from contrastkit.objectives import CLIPLoss, CoCoSoDaLoss, ConVIRTLoss


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def naive_clip(a, b, scale, weight_ab=0.5, normalize=True):
    """The dense reference: logits s·â b̂ᵀ, F.cross_entropy in both directions."""
    if normalize:
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = scale * a @ b.T
    target = torch.arange(len(a))
    return weight_ab * F.cross_entropy(logits, target) + (1 - weight_ab) * F.cross_entropy(
        logits.T, target
    )


def leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_(True) for t in tensors]


# -- CLIP (§5) ---------------------------------------------------------------------------------
def test_clip_orthonormal_pairs_hand_value():
    # §5d.1: I = T = I_4, τ = 0.1 ⇒ log(1 + 3 e^{−10}) = 1.36190e−4
    eye = torch.eye(4, dtype=torch.float64)
    expected = math.log1p(3 * math.exp(-10))
    assert expected == pytest.approx(1.36190e-4, rel=1e-5)
    assert float(clip_loss(eye, eye, 10.0)) == pytest.approx(expected, rel=1e-9)
    objective = CLIPLoss(temperature=0.1).double()  # θ = log 10 was rounded to float32
    assert objective(eye, eye).item() == pytest.approx(expected, rel=1e-6)
    assert set(objective.logged) == {"clip", "logit_scale"}
    assert float(objective.logged["logit_scale"]) == pytest.approx(10.0)


@pytest.mark.parametrize("weight_ab", [0.5, 0.3, 1.0, 0.0])
def test_clip_matches_naive_reference_values_and_gradients(weight_ab):
    a, b, theta = leaves(
        randn(6, 5, seed=1), randn(6, 5, seed=2), torch.tensor(1.7, dtype=torch.float64)
    )
    loss = clip_loss(a, b, theta.exp(), weight_ab=weight_ab)
    loss.backward()
    ra, rb, rtheta = leaves(a, b, theta)
    reference = naive_clip(ra, rb, rtheta.exp(), weight_ab)
    reference.backward()
    torch.testing.assert_close(loss, reference)
    for got, want in ((a, ra), (b, rb), (theta, rtheta)):
        torch.testing.assert_close(got.grad, want.grad)


def test_clip_gradcheck_of_inputs_and_logit_scale():
    a, b, scale = leaves(
        randn(4, 3, seed=3), randn(4, 3, seed=4), torch.tensor(3.0, dtype=torch.float64)
    )
    assert torch.autograd.gradcheck(
        lambda a, b, s: clip_loss(a, b, s, weight_ab=0.7), (a, b, scale)
    )
    # the logit scale's gradient by central finite differences of the naive dense loss
    h = 1e-6
    with torch.no_grad():
        fd = (naive_clip(a, b, 3.0 + h, 0.7) - naive_clip(a, b, 3.0 - h, 0.7)) / (2 * h)
    (grad,) = torch.autograd.grad(clip_loss(a, b, scale, weight_ab=0.7), scale)
    assert float(grad) == pytest.approx(float(fd), rel=1e-7)


def test_clip_directions_swap_and_one_direction():
    a, b = randn(5, 4, seed=5), randn(5, 4, seed=6)
    one_way = clip_loss(a, b, 7.0, weight_ab=1.0)
    logits = 7.0 * F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    torch.testing.assert_close(one_way, F.cross_entropy(logits, torch.arange(5)))
    torch.testing.assert_close(
        clip_loss(a, b, 7.0, weight_ab=0.2), clip_loss(b, a, 7.0, weight_ab=0.8)
    )
    terms = clip_directions(a, b, 7.0)
    torch.testing.assert_close(terms["a_to_b"], one_way)
    torch.testing.assert_close(terms["b_to_a"], clip_loss(b, a, 7.0, weight_ab=1.0))
    # un-normalised: plain dot products
    torch.testing.assert_close(
        clip_loss(a, b, 0.5, normalize=False), naive_clip(a, b, 0.5, normalize=False)
    )


def test_clip_tiled_path_gives_the_dense_values_and_gradients(monkeypatch):
    a, b, theta = leaves(
        randn(40, 6, seed=7), randn(40, 6, seed=8), torch.tensor(2.5, dtype=torch.float64)
    )
    dense = clip_loss(a, b, theta.exp(), weight_ab=0.6)
    dense_grads = torch.autograd.grad(dense, (a, b, theta))
    monkeypatch.setattr(infonce_module, "AUTO_TILED_LOGITS", 10)  # "auto" now takes the tiled path
    tiled = clip_loss(a, b, theta.exp(), weight_ab=0.6)
    tiled_grads = torch.autograd.grad(tiled, (a, b, theta))
    torch.testing.assert_close(tiled, dense)
    for got, want in zip(tiled_grads, dense_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_clip_errors():
    a = randn(4, 3)
    with pytest.raises(ContrastkitError, match="matched rows"):
        clip_loss(a, randn(5, 3), 10.0)
    with pytest.raises(ContrastkitError, match="2-D float"):
        clip_loss(a[0], a[0], 10.0)
    with pytest.raises(ContrastkitError, match=r"weight_ab must lie in \[0, 1\]"):
        clip_loss(a, a, 10.0, weight_ab=1.5)
    with pytest.raises(ContrastkitError, match="finite number > 0"):
        clip_loss(a, a, -1.0)
    with pytest.raises(ContrastkitError, match="one-element float tensor"):
        clip_loss(a, a, torch.ones(2))
    with pytest.raises(ContrastkitError, match="Unknown CLIP direction"):
        clip_directions(a, a, 1.0, directions=("a_to_c",))
    with pytest.raises(ContrastkitError, match="weight_ab"):
        CLIPLoss(weight_ab=-0.1)


# -- contrastive-gap terms (§5b, §5d.2–3) -----------------------------------------------------
def test_gap_terms_identical_sets():
    x = randn(7, 5, seed=9)
    terms = gap_terms(x, 3 * x)  # normalised inside: I = T
    xn = F.normalize(x, dim=1)
    assert float(terms["alignment"]) == pytest.approx(0.0, abs=1e-12)
    # over i ≠ j the cross-set distances are the in-set ones, each pair counted twice: exact
    torch.testing.assert_close(terms["cross_uniformity"], uniformity(xn), rtol=0, atol=1e-12)
    torch.testing.assert_close(terms["uniformity"], uniformity(xn), rtol=0, atol=1e-12)
    # with the matched pairs (distance 0) the mean gains B ones out of B²: no longer equal
    with_matched = cross_uniformity(xn, xn)
    expected = torch.log((uniformity(xn).exp() * 7 * 6 + 7) / 49)
    torch.testing.assert_close(with_matched, expected)
    assert float(with_matched) > float(uniformity(xn)) + 0.1


def test_gap_terms_orthonormal_hand_values_and_gradients():
    eye = torch.eye(4, dtype=torch.float64)
    terms = gap_terms(eye, eye)
    # every squared distance is 2 ⇒ U = log e^{−4} = −4 (§5d.3)
    assert float(terms["uniformity"]) == pytest.approx(-4.0)
    assert float(terms["cross_uniformity"]) == pytest.approx(-4.0)
    a, b = leaves(randn(5, 3, seed=10), randn(5, 3, seed=11))
    for name in ("uniformity", "cross_uniformity", "alignment"):
        assert torch.autograd.gradcheck(lambda a, b, name=name: gap_terms(a, b)[name], (a, b))
    # alignment by hand: mean squared distance of the normalised pairs
    an, bn = F.normalize(a, dim=1), F.normalize(b, dim=1)
    torch.testing.assert_close(gap_terms(a, b)["alignment"], ((an - bn) ** 2).sum(1).mean())
    # finite gradients where the pairs coincide
    x = randn(4, 3, seed=12).requires_grad_(True)
    sum(gap_terms(x, x).values()).backward()
    assert torch.isfinite(x.grad).all()


def test_cross_uniformity_naive_reference_and_errors():
    x, y = randn(4, 3, seed=13), randn(6, 3, seed=14)
    naive = torch.log(
        torch.tensor(
            [[math.exp(-1.5 * float((xi - yj).pow(2).sum())) for yj in y] for xi in x]
        ).mean()
    )
    torch.testing.assert_close(cross_uniformity(x, y, t=1.5), naive.double())
    with pytest.raises(ContrastkitError, match="same number"):
        cross_uniformity(x, y, exclude_matched=True)
    with pytest.raises(ContrastkitError, match="one dimension"):
        cross_uniformity(x, randn(4, 2))
    with pytest.raises(ContrastkitError, match="t must be"):
        cross_uniformity(x, y, t=0)
    with pytest.raises(ContrastkitError, match="B ≥ 2"):
        gap_terms(x[:1], x[:1])


def test_clip_loss_with_gap_terms():
    a, b = leaves(randn(6, 4, seed=15), randn(6, 4, seed=16))
    cuaxu = CLIPLoss(
        temperature=0.05, uniformity=True, cross_uniformity=True, alignment=True
    ).double()
    loss = cuaxu(a, b)
    terms = gap_terms(a, b)
    expected = clip_loss(a, b, 20.0) + sum(terms.values())
    torch.testing.assert_close(loss, expected)
    assert set(cuaxu.logged) == {
        "clip",
        "uniformity",
        "cross_uniformity",
        "alignment",
        "logit_scale",
    }
    cua = CLIPLoss(temperature=0.05, uniformity=True, alignment=True).double()
    torch.testing.assert_close(cua(a, b), expected - terms["cross_uniformity"])
    shifted = CLIPLoss(temperature=0.05, scaled_denominator=True).double()
    torch.testing.assert_close(shifted(a, b), clip_loss(a, b, 20.0) - math.log(6))
    # the learnable scale is a parameter that receives a gradient
    loss.backward()
    assert cuaxu.logit_scale.log_scale.grad is not None
    assert float(cuaxu.logit_scale.log_scale.grad.abs()) > 0


# -- logit scale (§5b, §5d.4) -----------------------------------------------------------------
def test_logit_scale_clamp_after_an_optimizer_step():
    objective = CLIPLoss(temperature=0.07).double()
    scale = objective.logit_scale
    assert scale().item() == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        scale.log_scale.fill_(10.0)
    optimizer = torch.optim.SGD(objective.parameters(), lr=1e-6)  # |dL/dθ| ~ s = e^10
    a, b = randn(4, 3, seed=17), randn(4, 3, seed=18)
    objective(a, b).backward()
    optimizer.step()
    assert scale.log_scale.item() != pytest.approx(10.0)  # the step moved θ
    assert scale.log_scale.item() > math.log(100)
    objective.after_optimizer_step()
    assert scale.log_scale.item() == pytest.approx(math.log(100), rel=1e-12)
    with torch.no_grad():
        scale.log_scale.fill_(-3.0)
    scale.after_optimizer_step()
    assert scale.log_scale.item() == 0.0  # lower bound: s ≥ 1


def test_logit_scale_fixed_and_errors():
    fixed = LogitScale(0.01, learnable=False)
    assert list(fixed.parameters()) == [] and "log_scale" in dict(fixed.named_buffers())
    assert float(fixed()) == pytest.approx(100.0)
    assert CLIPLoss(learnable_temperature=False).logit_scale.learnable is False
    with pytest.raises(ContrastkitError, match="raise max_scale"):
        LogitScale(0.005)
    with pytest.raises(ContrastkitError, match="max_scale"):
        LogitScale(0.5, max_scale=0.5)
    with pytest.raises(ContrastkitError, match="temperature"):
        LogitScale(2.0)


# -- ConVIRT (§6) ------------------------------------------------------------------------------
def test_convirt_lambda_half_is_clip_with_fixed_temperature():
    v, u = leaves(randn(6, 4, seed=19), randn(6, 4, seed=20))
    loss = ConVIRTLoss(temperature=0.1, lam=0.5)(v, u)
    loss.backward()
    rv, ru = leaves(v, u)
    reference = CLIPLoss(temperature=0.1, learnable_temperature=False).double()(rv, ru)
    reference.backward()
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(v.grad, rv.grad)
    torch.testing.assert_close(u.grad, ru.grad)


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.75, 1.0])
def test_convirt_orthonormal_hand_value(lam):
    eye = torch.eye(2, dtype=torch.float64)
    objective = ConVIRTLoss(temperature=1.0, lam=lam)
    assert float(objective(eye, eye)) == pytest.approx(0.313262, abs=1e-6)
    assert float(objective(eye, eye)) == pytest.approx(math.log1p(math.exp(-1)), rel=1e-12)


def test_convirt_directions_swap_and_scale_invariance():
    v, u = randn(5, 3, seed=21), randn(5, 3, seed=22)
    image_to_text = ConVIRTLoss(temperature=0.1, lam=1.0)
    logits = F.normalize(v, dim=1) @ F.normalize(u, dim=1).T / 0.1
    torch.testing.assert_close(image_to_text(v, u), F.cross_entropy(logits, torch.arange(5)))
    assert set(image_to_text.logged) == {"v_to_u"}
    torch.testing.assert_close(ConVIRTLoss(lam=0.75)(v, u), ConVIRTLoss(lam=0.25)(u, v))
    stretched = v * torch.rand(5, 1, dtype=torch.float64).add(0.5) * 10
    torch.testing.assert_close(ConVIRTLoss()(stretched, u), ConVIRTLoss()(v, u))
    with pytest.raises(ContrastkitError, match="lam"):
        ConVIRTLoss(lam=2.0)
    with pytest.raises(ContrastkitError, match="temperature"):
        ConVIRTLoss(temperature=0.0)


# -- CoCoSoDa (§11) ----------------------------------------------------------------------------
INTER = [
    ("c_q", "n_q", "nl"),
    ("c_q", "n_k", "nl_key"),
    ("n_q", "c_q", "code"),
    ("n_q", "c_k", "code_key"),
]
INTRA = [("c_q", "c_k", "code_key"), ("n_q", "n_k", "nl_key")]


def naive_cocosoda(inputs, queues, tau, scale, ts, intra):
    """Explicit logits [ts·A Pᵀ, A Qᵀ]·scale/τ, [B, B + K] per term, CE over all stacked rows."""
    unit = {k: F.normalize(v, dim=1) for k, v in inputs.items()}
    rows = []
    for a, p, q in INTER + (INTRA if intra else []):
        in_batch = ts * unit[a] @ unit[p].T
        queue = unit[a] @ F.normalize(queues[q], dim=1).T if queues else in_batch[:, :0]
        rows.append(torch.cat([in_batch, queue], dim=1) * scale / tau)
    logits = torch.cat(rows)
    return F.cross_entropy(logits, torch.arange(len(inputs["c_q"])).repeat(len(rows)))


def cocosoda_inputs(b: int, d: int, seed: int) -> dict[str, torch.Tensor]:
    return {k: randn(b, d, seed=seed + i) for i, k in enumerate(("c_q", "n_q", "c_k", "n_k"))}


def call(objective, inputs):
    return objective(inputs["c_q"], inputs["n_q"], inputs["c_k"], inputs["n_k"])


@pytest.mark.parametrize(("ts", "scale", "expected_exponent"), [(1.0, 20.0, 2.0), (1.5, 20.0, 3.0)])
def test_cocosoda_empty_queue_orthonormal_closed_form(ts, scale, expected_exponent):
    # §11d.1: K = 0, orthonormal embeddings: each term is log(1 + (B − 1) e^{−ts·scale/τ})
    b = 4
    eye = torch.eye(b, dtype=torch.float64)
    objective = CoCoSoDaLoss(b, queue_size=0, temperature=10.0, logit_scale=scale, time_score=ts)
    loss = objective(eye, eye, eye, eye)
    assert float(loss) == pytest.approx(
        math.log1p((b - 1) * math.exp(-expected_exponent)), rel=1e-12
    )
    # the release's scale 20/0.07: the in-batch negatives vanish
    release = CoCoSoDaLoss(b, queue_size=0)
    assert float(release(eye, eye, eye, eye)) == pytest.approx(0.0, abs=1e-100)


def test_cocosoda_orthogonal_queue_closed_form():
    # K queue rows orthogonal to every embedding: each adds e^{0} like an in-batch negative
    b, k = 3, 4
    eye = torch.eye(b + k, dtype=torch.float64)
    objective = CoCoSoDaLoss(b + k, queue_size=k, temperature=1.0, logit_scale=2.0).double()
    for queue in objective.queues.values():
        queue.rows = eye[b:].clone()
    x = eye[:b]
    assert float(call(objective, dict(c_q=x, n_q=x, c_k=x, n_k=x))) == pytest.approx(
        math.log1p((b + k - 1) * math.exp(-2.0)), rel=1e-12
    )


@pytest.mark.parametrize("intra", [False, True])
@pytest.mark.parametrize("queue_size", [0, 8])
def test_cocosoda_matches_naive_reference(intra, queue_size):
    objective = CoCoSoDaLoss(
        6, queue_size=queue_size, temperature=0.5, logit_scale=2.0, time_score=1.3, intra=intra
    ).double()
    queues = {k: q().clone() for k, q in objective.queues.items()}
    inputs = dict(
        zip(("c_q", "n_q", "c_k", "n_k"), leaves(*cocosoda_inputs(4, 6, 30).values()), strict=True)
    )
    loss = call(objective, inputs)
    loss.backward()
    reference_inputs = dict(zip(inputs, leaves(*inputs.values()), strict=True))
    reference = naive_cocosoda(reference_inputs, queues, 0.5, 2.0, 1.3, intra)
    reference.backward()
    torch.testing.assert_close(loss, reference)
    for name in ("c_q", "n_q"):
        torch.testing.assert_close(inputs[name].grad, reference_inputs[name].grad)
    # no gradient reaches the keys (detached inside) or the queues
    assert inputs["c_k"].grad is None and inputs["n_k"].grad is None
    assert all(not q().requires_grad for q in objective.queues.values())
    assert set(objective.logged) == ({"inter", "intra"} if intra else {"inter"})


def test_cocosoda_intra_adds_two_b_rows():
    inputs = cocosoda_inputs(4, 6, 40)
    with_intra = call(CoCoSoDaLoss(6, queue_size=0, temperature=0.5, intra=True).double(), inputs)
    without = call(CoCoSoDaLoss(6, queue_size=0, temperature=0.5).double(), inputs)
    unit = {k: F.normalize(v, dim=1) for k, v in inputs.items()}
    intra_terms = [
        F.cross_entropy(unit[a] @ unit[p].T * 20 / 0.5, torch.arange(4)) for a, p, _ in INTRA
    ]
    # mean over 6B rows = (4B rows of inter + 2B rows of intra) / 6B
    torch.testing.assert_close(with_intra, (4 * without + sum(intra_terms)) / 6)


def test_cocosoda_queues_are_fifo_and_filled_from_the_right_inputs():
    b = 2
    objective = CoCoSoDaLoss(3, queue_size=6).double()
    objective_uneven = CoCoSoDaLoss(3, queue_size=5).double()
    batches = [cocosoda_inputs(b, 3, 50 + 10 * step) for step in range(4)]
    for step, inputs in enumerate(batches):
        call(objective, inputs)
        call(objective_uneven, inputs)
        if step == 2:  # K/B = 3 pushes: exactly the last three batches, newest first
            for queue, source in zip(
                CoCoSoDaLoss.QUEUES, ("c_q", "n_q", "c_k", "n_k"), strict=True
            ):
                expected = F.normalize(torch.cat([batches[s][source] for s in (2, 1, 0)]), dim=1)
                torch.testing.assert_close(objective.queues[queue](), expected)
                # B ∤ K: the oldest batch still held is cut to its first row
                torch.testing.assert_close(objective_uneven.queues[queue](), expected[:5])
    # one more push: the first batch leaves
    expected = F.normalize(torch.cat([batches[s]["c_q"] for s in (3, 2, 1)]), dim=1)
    torch.testing.assert_close(objective.queues["code"](), expected)


def test_cocosoda_queue_init_is_seeded_and_unit():
    first, second = CoCoSoDaLoss(5, queue_size=7), CoCoSoDaLoss(5, queue_size=7)
    for name in CoCoSoDaLoss.QUEUES:
        torch.testing.assert_close(first.queues[name](), second.queues[name]())
        torch.testing.assert_close(first.queues[name]().norm(dim=1), torch.ones(7))
    assert not torch.equal(first.queues["code"](), first.queues["nl"]())


def test_cocosoda_errors():
    objective = CoCoSoDaLoss(4, queue_size=0)
    x = torch.randn(3, 4)
    with pytest.raises(ContrastkitError, match="one shape"):
        objective(x, x, x, torch.randn(2, 4))
    with pytest.raises(ContrastkitError, match="one shape"):
        objective(x[:, :3], x[:, :3], x[:, :3], x[:, :3])
    with pytest.raises(ContrastkitError, match="2-D float"):
        objective(x[0], x, x, x)
    with pytest.raises(ContrastkitError, match="queue_size"):
        CoCoSoDaLoss(4, queue_size=-1)
    with pytest.raises(ContrastkitError, match="time_score"):
        CoCoSoDaLoss(4, time_score=0.0)


# -- two gloo ranks against one process -------------------------------------------------------
WORLD, LOCAL = 2, 3


def clip_worker(rank: int) -> dict:
    a_all, b_all = randn(WORLD * LOCAL, 4, seed=60), randn(WORLD * LOCAL, 4, seed=61)
    rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
    a, b, theta = leaves(a_all[rows], b_all[rows], torch.tensor(1.2, dtype=torch.float64))
    loss = clip_loss(a, b, theta.exp(), weight_ab=0.3)
    loss.backward()
    return {"loss": loss.item(), "a": a.grad, "b": b.grad, "theta": theta.grad}


def test_clip_two_ranks_equal_one_process_on_the_whole_batch():
    ranks = run_on_ranks(clip_worker, WORLD)
    a, b, theta = leaves(
        randn(WORLD * LOCAL, 4, seed=60),
        randn(WORLD * LOCAL, 4, seed=61),
        torch.tensor(1.2, dtype=torch.float64),
    )
    loss = clip_loss(a, b, theta.exp(), weight_ab=0.3)
    loss.backward()
    assert sum(ranks[r]["loss"] for r in range(WORLD)) / WORLD == pytest.approx(
        loss.item(), rel=1e-12
    )
    for rank in range(WORLD):
        rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
        # a rank's row gradients are d(sum of the ranks' losses)/d(its rows); DDP divides by WORLD
        torch.testing.assert_close(ranks[rank]["a"] / WORLD, a.grad[rows])
        torch.testing.assert_close(ranks[rank]["b"] / WORLD, b.grad[rows])
    # the scale is not gathered: DDP's average of the ranks' gradients is the global gradient
    torch.testing.assert_close(sum(ranks[r]["theta"] for r in range(WORLD)) / WORLD, theta.grad)
