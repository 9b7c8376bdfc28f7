"""MIL: bags of real images, pooling, SC-MIL, INS and the metrics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from contrastkit import ContrastkitError, nt_xent
from contrastkit.mil import (
    AttentionPool,
    Bags,
    INSModel,
    MaxPool,
    MeanPool,
    MILModel,
    SCMILLoss,
    alpha_schedule,
    bag_auc,
    bag_views,
    candidate_sets,
    fit_ins,
    fit_mil,
    image_bags,
    instance_metrics,
    make_bags,
    mil_metrics,
    moco_loss,
    predict_ins,
    predict_mil,
    pseudo_labels,
    segment_softmax,
    supcon_bags,
    update_confidence,
    weakly_supervised_contrastive,
)


def pool_of(n: int = 400, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g), torch.arange(n) % classes


def supcon_naive(z, labels, temperature, count_all=True):
    """SupCon L_out as a double loop (HobbitLong/SupContrast semantics)."""
    z = F.normalize(z, dim=1)
    total, anchors = z.new_zeros(()), 0
    for a in range(len(z)):
        logits = [z[a] @ z[p] / temperature for p in range(len(z)) if p != a]
        lse = torch.logsumexp(torch.stack(logits), 0)
        pos = [
            z[a] @ z[p] / temperature - lse
            for p in range(len(z))
            if p != a and labels[p] == labels[a]
        ]
        if pos:
            total = total - sum(pos) / len(pos)
            anchors += 1
    return total / (len(z) if count_all else anchors)


# ---------------------------------------------------------------- bags


def test_make_bags_controls_witness_rate_and_imbalance():
    images, labels = pool_of()
    bags = make_bags(
        images,
        labels,
        1,
        n_bags=20,
        bag_size=(5, 9),
        positive_fraction=0.3,
        positive_bag_rate=0.25,
        seed=3,
    )
    sizes = bags.sizes
    assert int(bags.bag_labels.sum()) == 5 and bool(((sizes >= 5) & (sizes <= 9)).all())
    witnesses = torch.zeros(20, dtype=torch.long).index_add(0, bags.bag_index, bags.instance_labels)
    expected = torch.clamp(torch.round(0.3 * sizes.double()), min=1).long() * bags.bag_labels
    assert torch.equal(witnesses, expected)
    assert torch.equal((witnesses > 0).long(), bags.bag_labels)  # positive iff a witness
    assert torch.equal(labels[bags.instance_index] == 1, bags.instance_labels.bool())
    assert len(set(bags.instance_index.tolist())) == bags.n_instances  # no image reused
    again = make_bags(
        images,
        labels,
        1,
        n_bags=20,
        bag_size=(5, 9),
        positive_fraction=0.3,
        positive_bag_rate=0.25,
        seed=3,
    )
    assert torch.equal(again.instance_index, bags.instance_index)
    other = make_bags(images, labels, [1, 2], n_bags=20, seed=4)
    assert not torch.equal(other.instance_index[:20], bags.instance_index[:20])
    batch = bags.batch([2, 0])
    assert batch.n_bags == 2 and len(batch.x) == int(sizes[2] + sizes[0])
    assert torch.equal(batch.bag_index, torch.repeat_interleave(torch.arange(2), sizes[[2, 0]]))


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(positive_fraction=0.0), "positive_fraction"),
        (dict(positive_fraction=1.5), "positive_fraction"),
        (dict(positive_bag_rate=1.0), "positive_bag_rate"),
        (dict(bag_size=0), "without instances"),
        (dict(n_bags=500), "pool has"),
    ],
)
def test_make_bags_rejects_bad_options(options, match):
    images, labels = pool_of()
    with pytest.raises(ContrastkitError, match=match):
        make_bags(images, labels, 1, **{"n_bags": 10, **options})


def test_make_bags_rejects_bad_labels():
    images, labels = pool_of()
    with pytest.raises(ContrastkitError, match="one class per image"):
        make_bags(images, labels[:-1], 1, n_bags=10)
    with pytest.raises(ContrastkitError, match="dtype"):
        make_bags(images, labels.float(), 1, n_bags=10)


def test_bags_without_instances_are_rejected():
    images, _ = pool_of(10)
    with pytest.raises(ContrastkitError, match="Bag 1 has no instances"):
        Bags(
            images,
            torch.arange(4),
            torch.tensor([0, 0, 2, 2]),
            torch.tensor([0, 0, 0]),
            torch.zeros(4, dtype=torch.long),
        )
    with pytest.raises(ContrastkitError, match="disagree"):
        Bags(
            images,
            torch.arange(2),
            torch.tensor([0, 1]),
            torch.tensor([1, 0]),
            torch.tensor([0, 0]),
        )
    with pytest.raises(ContrastkitError, match="no instances"):
        MeanPool()(torch.randn(3, 2), torch.tensor([0, 0, 2]), 3)


def test_image_bags_from_real_digits():
    train, test = image_bags(
        "digits", 3, n_train_bags=30, n_test_bags=20, bag_size=8, positive_fraction=0.25, seed=0
    )
    assert train.images.shape[1:] == (1, 8, 8) and len(test.images) < len(train.images)
    assert int(test.instance_index.max()) < len(test.images)  # test bags use test images only
    assert train.instance_labels[train.bag_labels[train.bag_index] == 1].float().mean() == 0.25


# ---------------------------------------------------------------- pooling


def test_segment_softmax_and_attention_pool():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(7, 5, generator=g)
    index = torch.tensor([0, 0, 0, 1, 2, 2, 2])
    weights = segment_softmax(torch.randn(7, generator=g) * 50, index, 3)
    assert torch.allclose(torch.zeros(3).index_add(0, index, weights), torch.ones(3))
    pool = AttentionPool(5, 8)
    pooled, _ = pool(h, index, 3)
    torch.testing.assert_close(pooled[1], h[3])  # a bag of one is its instance
    perm = torch.tensor([2, 0, 1, 3, 6, 4, 5])  # shuffle within bags
    torch.testing.assert_close(pool(h[perm], index, 3)[0], pooled)
    manual = torch.softmax(pool.scores(h[:3]), 0) @ h[:3]
    torch.testing.assert_close(pooled[0], manual)
    mean, _ = MeanPool()(h, index, 3)
    torch.testing.assert_close(mean[2], h[4:].mean(0))
    top, wins = MaxPool()(h, index, 3)
    torch.testing.assert_close(top[0], h[:3].max(0).values)
    assert torch.allclose(torch.zeros(3).index_add(0, index, wins), torch.ones(3))


# ---------------------------------------------------------------- SC-MIL


def test_supcon_bags_spec_values():
    z = torch.tensor([[1.0, 0], [1, 0], [0, 1]])
    y = torch.tensor([0, 0, 1])
    reference = supcon_bags(z, y, temperature=1.0)
    assert float(reference) == pytest.approx(0.208841, abs=1e-6)  # anchor 2 counted as 0
    excluded = supcon_bags(z, y, temperature=1.0, count_anchors_without_positives=False)
    assert float(excluded) == pytest.approx(0.313262, abs=1e-6)
    # τ/τ_base: doubling τ_base halves the loss
    assert float(supcon_bags(z, y, temperature=1.0, base_temperature=2.0)) == pytest.approx(
        float(reference) / 2
    )
    # all other rows positive: zero loss
    assert float(supcon_bags(torch.randn(2, 3), torch.tensor([4, 4]))) == pytest.approx(0.0)


def test_supcon_bags_simclr_limit_and_gradient():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 3, generator=g, dtype=torch.float64, requires_grad=True)
    unique = torch.arange(4)
    got = supcon_bags(z, unique, n_views=2, temperature=0.5)
    assert got.item() == pytest.approx(nt_xent(z[:4], z[4:], temperature=0.5).item(), rel=1e-10)
    labels = torch.tensor([0, 1, 0, 2])
    got = supcon_bags(z, labels, n_views=2, temperature=0.3)
    want = supcon_naive(z, labels.repeat(2), 0.3)
    assert got.item() == pytest.approx(want.item(), rel=1e-10)
    torch.testing.assert_close(torch.autograd.grad(got, z)[0], torch.autograd.grad(want, z)[0])
    with pytest.raises(ContrastkitError, match="dtype"):
        supcon_bags(z, labels.float(), n_views=2)
    with pytest.raises(ContrastkitError, match="views"):
        supcon_bags(z, labels[:3], n_views=2)


def test_scmil_with_one_instance_per_bag_is_supcon_on_instances():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(16, 6))
    model = MILModel(encoder, 6, pooling="attention", projection_dim=4)
    x = torch.rand(6, 1, 4, 4)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    out = model(x, torch.arange(6), 6)
    torch.testing.assert_close(out.h, encoder(x))
    loss = SCMILLoss(0.2, schedule="supcon")(out.z, out.logits, labels, 0.3, n_views=1)
    want = supcon_naive(model.projection(encoder(x)), labels, 0.2)
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)


def test_scmil_schedule_moves_from_representation_to_classifier():
    parabolic = alpha_schedule("parabolic")
    assert (parabolic(0.0), parabolic(0.5), parabolic(1.0)) == (1.0, 0.75, 0.0)
    assert alpha_schedule(0.3)(0.9) == 0.3
    with pytest.raises(ContrastkitError, match="schedule"):
        alpha_schedule("step")
    torch.manual_seed(0)
    model = MILModel(nn.Sequential(nn.Flatten(), nn.Linear(16, 6)), 6, pooling="mean")
    x, index = torch.rand(8, 1, 4, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    labels = torch.tensor([0, 1])
    out = model(x, index, 4)
    loss = SCMILLoss(0.5, "linear")
    at_end = loss(out.z, out.logits, labels, 1.0, n_views=2)
    assert at_end.item() == pytest.approx(F.cross_entropy(out.logits, labels.repeat(2)).item())
    at_end.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.projection.parameters())
    at_start = loss(out.z, out.logits, labels, 0.0, n_views=2)
    assert at_start.item() == pytest.approx(supcon_bags(out.z, labels, 2, temperature=0.5).item())
    assert float(loss.logged["alpha"]) == 1.0


def test_bag_views_keep_every_bag_nonempty():
    images, labels = pool_of()
    batch = make_bags(images, labels, 1, n_bags=6, bag_size=3, seed=0).batch(range(6))
    _, index, n = bag_views(batch, 2)
    assert n == 12 and torch.equal(index, torch.cat([batch.bag_index, batch.bag_index + 6]))
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        _, index, n = bag_views(batch, 2, keep=0.05, generator=g)
        assert torch.bincount(index, minlength=n).min() >= 1


# ---------------------------------------------------------------- INS


def test_ins_candidates_pseudo_labels_and_confidence():
    bag_labels = torch.tensor([0, 1, 1, 0])
    y = candidate_sets(bag_labels)
    assert y.tolist() == [[1, 0], [1, 1], [1, 1], [1, 0]]
    logits = torch.tensor([[0.0, 5.0], [0.0, 5.0], [5.0, 0.0], [0.0, 9.0]])
    assert pseudo_labels(logits, y).tolist() == [0, 1, 0, 0]  # negative bags never positive
    confidence = torch.tensor([[0.5, 0.5]] * 6)
    scores = torch.tensor([[0.2, 0.8], [0.9, 0.1], [0.3, 0.7], [0.1, 0.9]])
    update_confidence(confidence, torch.tensor([5, 1, 2, 0]), scores, y, phi=0.9)
    assert confidence[5].tolist() == [1.0, 0.0]  # negative bag: reset
    assert confidence[1].tolist() == pytest.approx([0.55, 0.45])  # 0.9·0.5 + 0.1·[1, 0]
    assert confidence[2].tolist() == pytest.approx([0.45, 0.55])
    assert confidence[0].tolist() == [1.0, 0.0]
    assert confidence[3].tolist() == [0.5, 0.5]  # untouched


def test_ins_prototypes_follow_the_sequential_update():
    torch.manual_seed(0)
    model = INSModel(nn.Sequential(nn.Flatten(), nn.Linear(16, 6)), 6, low_dim=3, queue_size=8)
    model.prototypes = F.normalize(torch.randn(2, 3), dim=1)
    q = F.normalize(torch.randn(7, 3), dim=1)
    labels = torch.tensor([1, 0, 1, 1, 0, 1, 1])
    want = model.prototypes.clone()
    for feat, label in zip(q, labels, strict=True):  # INS's loop
        want[label] = want[label] * 0.9 + 0.1 * feat
    model.update_prototypes(q, labels)
    torch.testing.assert_close(model.prototypes, F.normalize(want, dim=1))


def test_ins_contrastive_losses_match_the_reference_code():
    g = torch.Generator().manual_seed(2)
    q = F.normalize(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
    k = F.normalize(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
    queue = F.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=1)
    labels, queue_labels = torch.tensor([0, 1, 1, 0, 0]), torch.tensor([1, 0, 0, 1, 1, 0])
    # INS utils_loss.SupConLoss, mask mode, written out
    features = torch.cat([q, k, queue])
    ids = torch.cat([labels, labels, queue_labels])
    mask = (ids[:5, None] == ids[None, :]).double()
    logits = q @ features.T / 0.07
    not_self = torch.ones_like(mask).scatter_(1, torch.arange(5)[:, None], 0)
    mask = mask * not_self
    log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(1, keepdim=True))
    want = -((mask * log_prob).sum(1) / mask.sum(1)).mean()
    got = weakly_supervised_contrastive(q, k, queue, labels, queue_labels, 0.07)
    assert float(got) == pytest.approx(float(want), rel=1e-10)
    # unsupervised (MoCo) mode: CE([q·k, q·queue]/τ, 0)
    moco = F.cross_entropy(
        torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], 1) / 0.07,
        torch.zeros(5, dtype=torch.long),
    )
    assert float(moco_loss(q, k, queue, 0.07)) == pytest.approx(float(moco), rel=1e-10)


def test_ins_queue_keeps_the_newest_keys():
    model = INSModel(nn.Sequential(nn.Flatten(), nn.Linear(16, 6)), 6, low_dim=3, queue_size=4)
    old = model.queue.clone()
    keys = F.normalize(torch.randn(3, 3), dim=1)
    model.enqueue(keys, torch.tensor([1, 1, 0]))
    torch.testing.assert_close(model.queue, torch.cat([keys, old[:1]]))
    assert model.queue_labels[:3].tolist() == [1, 1, 0]


# ---------------------------------------------------------------- metrics and training


def test_metrics():
    assert bag_auc([0.1, 0.9, 0.4, 0.6], [0, 1, 1, 0]) == roc_auc_score(
        [0, 1, 1, 0], [0.1, 0.9, 0.4, 0.6]
    )
    m = instance_metrics([0.2, 0.7, 0.9, 0.4], [0, 0, 1, 1])
    assert m["instance_accuracy"] == 0.5 and m["instance_balanced_accuracy"] == 0.5
    with pytest.raises(ContrastkitError, match="both"):
        bag_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ContrastkitError, match="one score each"):
        instance_metrics([0.1, 0.2], [1, 0, 1])


def test_mil_training_end_to_end_on_real_digits():
    train, test = image_bags(
        "digits", 3, n_train_bags=24, n_test_bags=16, bag_size=5, positive_fraction=0.4, seed=1
    )

    def encoder() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())

    torch.manual_seed(0)
    model = fit_mil(MILModel(encoder(), 16), train, epochs=2, batch_bags=8)
    bag_scores, instance_scores = predict_mil(model, test)
    assert bag_scores.shape == (16,) and instance_scores.shape == (test.n_instances,)
    result = mil_metrics(bag_scores, test.bag_labels, instance_scores, test.instance_labels)
    assert all(0 <= v <= 1 for v in result.values())
    ins = INSModel(encoder(), 16, low_dim=8, queue_size=32)
    state = fit_ins(ins, train, epochs=2, warmup_epochs=1, batch_size=32)
    negative = state.candidates[:, 1] == 0
    assert torch.equal(
        state.confidence[negative], torch.tensor([[1.0, 0.0]]).expand(int(negative.sum()), 2)
    )
    scores = predict_ins(ins, test)
    assert torch.all(scores["bag_max"] >= scores["bag_mean"])
