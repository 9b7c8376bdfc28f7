"""SupCon's L_out on the InfoNCE engine (labels-multimodal-other.md §1): the spec's values and
limits against a naive double loop, gradients, the SupCon + NT-Xent sum, the cross-entropy
baseline, label errors, two gloo ranks, and ``contrastkit fit --labels``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gloo import run_on_ranks

from contrastkit.config import load_config
from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, info_nce, nt_xent
from contrastkit.methods.registry import build_method, needs_labels, positives_of, with_labels
from contrastkit.objectives import (
    CrossEntropyLoss,
    StepContext,
    SupConInstanceLoss,
    SupConLoss,
)
from contrastkit.objectives.supervised import supcon_loss
from contrastkit.train.cli import main


def naive_supcon(
    features: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float,
    base_temperature: float | None = None,
    mode: str = "all",
    count_without_positives: bool = True,
) -> torch.Tensor:
    """The reference's semantics, one anchor and one positive at a time (no engine, no masks)."""
    n_samples, n_views = features.shape[:2]
    labels = torch.arange(n_samples) if labels is None else labels
    z = torch.cat([features[:, v] for v in range(n_views)])
    y = labels.repeat(n_views)
    factor = temperature / (base_temperature or temperature)
    terms = []
    for a in range(n_views * n_samples if mode == "all" else n_samples):
        logits = [z[a] @ z[p] / temperature for p in range(len(z))]
        log_denominator = torch.logsumexp(
            torch.stack([logits[q] for q in range(len(z)) if q != a]), 0
        )
        positives = [p for p in range(len(z)) if p != a and y[p] == y[a]]
        if positives:
            mean = sum(logits[p] - log_denominator for p in positives) / len(positives)
            terms.append(-factor * mean)
        elif count_without_positives:
            terms.append(torch.zeros((), dtype=z.dtype))
    return torch.stack(terms).mean()


def random_features(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=generator, dtype=torch.float64), dim=-1)


def test_hand_example_of_the_spec():
    z = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]]])
    loss = supcon_loss(z, torch.tensor([0, 0, 1]), temperature=1.0, base_temperature=1.0)
    assert loss.item() == pytest.approx(0.208841, abs=1e-6)
    assert 2 / 3 * math.log(1 + math.exp(-1)) == pytest.approx(0.208841, abs=1e-6)
    excluded = supcon_loss(
        z, torch.tensor([0, 0, 1]), temperature=1.0, count_anchors_without_positives=False
    )
    assert excluded.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_unique_labels_are_nt_xent():
    features = random_features(4, 2, 3)
    reference = nt_xent(features[:, 0], features[:, 1], temperature=0.5)
    for labels in (None, torch.tensor([3, 1, 0, 2])):
        loss = supcon_loss(features, labels, temperature=0.5)
        torch.testing.assert_close(loss, reference)
        torch.testing.assert_close(loss, naive_supcon(features, labels, 0.5))


@pytest.mark.parametrize("mode", ["all", "one"])
@pytest.mark.parametrize("count", [True, False])
def test_matches_the_naive_loop(mode, count):
    features = random_features(6, 3, 4, seed=1)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    loss = supcon_loss(
        features,
        labels,
        temperature=0.3,
        base_temperature=0.07,
        contrast_mode=mode,
        count_anchors_without_positives=count,
    )
    expected = naive_supcon(features, labels, 0.3, 0.07, mode, count)
    torch.testing.assert_close(loss, expected)


def test_one_view_and_a_class_seen_once():
    features = random_features(5, 1, 4, seed=2)
    labels = torch.tensor([0, 0, 1, 1, 2])  # class 2 has no positive with one view
    for count in (True, False):
        loss = supcon_loss(features, labels, temperature=0.2, count_anchors_without_positives=count)
        torch.testing.assert_close(loss, naive_supcon(features, labels, 0.2, None, "all", count))
    objective = SupConLoss(0.2)
    objective(features[:, 0], Pairs.labels(labels, 1), StepContext(labels=labels))
    assert objective.logged["no_positive"].item() == pytest.approx(0.2)


def test_all_rows_positive_gives_zero():
    features = random_features(2, 1, 3)
    loss = supcon_loss(features, torch.tensor([4, 4]), temperature=0.5)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_permuting_the_batch_and_scaling_base_temperature():
    features = random_features(6, 2, 4, seed=3)
    labels = torch.tensor([0, 1, 0, 2, 1, 2])
    loss = supcon_loss(features, labels, temperature=0.2, base_temperature=0.2)
    order = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        supcon_loss(features[order], labels[order], temperature=0.2, base_temperature=0.2), loss
    )
    doubled = supcon_loss(features, labels, temperature=0.2, base_temperature=0.4)
    torch.testing.assert_close(doubled, loss / 2)


def test_one_mode_is_all_mode_restricted_to_the_first_view():
    features = random_features(5, 2, 4, seed=4)
    labels = torch.tensor([0, 1, 0, 1, 1])
    one = supcon_loss(features, labels, temperature=0.5, contrast_mode="one")
    rows = torch.cat([features[:, 0], features[:, 1]])
    per_anchor = info_nce(rows, Pairs.labels(labels, 2), temperature=0.5, reduction="none")
    torch.testing.assert_close(one, per_anchor[:5].mean())


def test_gradient_matches_the_naive_double_loop():
    features = random_features(5, 2, 4, seed=5).requires_grad_(True)
    labels = torch.tensor([0, 1, 0, 1, 2])
    supcon_loss(features, labels, temperature=0.4).backward()
    engine = features.grad.clone()
    features.grad = None
    naive_supcon(features, labels, 0.4).backward()
    torch.testing.assert_close(engine, features.grad)


def test_tiled_path_equals_dense():
    features = random_features(7, 2, 5, seed=6)
    labels = torch.tensor([0, 1, 0, 1, 2, 2, 0])
    dense = supcon_loss(features, labels, temperature=0.3, backend="dense")
    tiled = supcon_loss(features, labels, temperature=0.3, backend="tiled")
    torch.testing.assert_close(dense, tiled)


def test_objective_uses_context_labels_and_normalises():
    features = random_features(4, 2, 3, seed=7) * 5.0  # not unit norm: the objective normalises
    labels = torch.tensor([0, 1, 1, 0])
    rows = torch.cat([features[:, 0], features[:, 1]])
    loss = SupConLoss(0.3)(rows, Pairs.views(4, 2), StepContext(labels=labels))
    torch.testing.assert_close(loss, naive_supcon(F.normalize(features, dim=-1), labels, 0.3))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (None, "needs class labels"),
        (torch.tensor([0, 1, 0, 1, 0, 1, 0, 1]), "one label per sample"),  # one per view
        (torch.tensor([0.0, 1.0, 0.0, 1.0]), "integer class ids"),
        (torch.tensor([0.0, float("nan"), 0.0, 1.0]), "contain NaN"),
        (torch.tensor([True, False, True, False]), "integer class ids"),
        (torch.zeros(4, 1, dtype=torch.long), "one label per sample"),
    ],
)
def test_bad_labels_are_one_clear_error(labels, message):
    rows = torch.randn(8, 3)
    with pytest.raises(ContrastkitError, match=message):
        SupConLoss()(rows, Pairs.views(4, 2), StepContext(labels=labels))


def test_supcon_added_to_nt_xent():
    features = random_features(6, 2, 4, seed=8)
    rows = torch.cat([features[:, 0], features[:, 1]])
    labels = torch.tensor([0, 1, 0, 2, 1, 2])
    objective = SupConInstanceLoss(0.2, supcon_weight=0.5, instance_weight=2.0)
    loss = objective(rows, Pairs.views(6, 2), StepContext(labels=labels))
    expected = 2.0 * nt_xent(features[:, 0], features[:, 1], temperature=0.2) + 0.5 * naive_supcon(
        features, labels, 0.2
    )
    torch.testing.assert_close(loss, expected)
    assert set(objective.logged) == {"instance", "supcon"}


def test_cross_entropy_baseline():
    torch.manual_seed(0)
    objective = CrossEntropyLoss(dim=3, num_classes=4).double()
    rows = torch.randn(6, 3, dtype=torch.float64)
    labels = torch.tensor([0, 3, 2])
    loss = objective(rows, Pairs.labels(labels, 2), StepContext(labels=labels))
    expected = F.cross_entropy(objective.classifier(rows), labels.repeat(2))
    torch.testing.assert_close(loss, expected)
    assert 0 <= objective.logged["accuracy"].item() <= 1
    with pytest.raises(ContrastkitError, match="num_classes=4 but got label 7"):
        CrossEntropyLoss(3, 4)(rows.float(), None, StepContext(labels=torch.tensor([0, 7, 1])))


WORLD, LOCAL = 2, 3
GLOBAL_LABELS = torch.tensor([0, 1, 0, 2, 1, 3])  # class 3 alone: no positive with one view


def gloo_batch() -> torch.Tensor:
    return random_features(WORLD * LOCAL, 2, 4, seed=9)


def supcon_on_rank(rank: int) -> dict:
    features = gloo_batch()[rank * LOCAL : (rank + 1) * LOCAL].clone().requires_grad_(True)
    labels = GLOBAL_LABELS[rank * LOCAL : (rank + 1) * LOCAL]
    out = {}
    for count in (True, False):
        loss = supcon_loss(
            features[:, :1], labels, temperature=0.3, count_anchors_without_positives=count
        )
        (grad,) = torch.autograd.grad(loss, features)
        out[count] = (loss.item(), grad)
    loss = supcon_loss(features, None, temperature=0.3)  # SimCLR: sample ids, unique per rank
    out["views"] = (loss.item(), torch.autograd.grad(loss, features)[0])
    return out


def test_two_gloo_ranks_equal_one_process():
    ranks = run_on_ranks(supcon_on_rank, WORLD)
    for count in (True, False, "views"):
        features = gloo_batch().requires_grad_(True)
        reference = (
            supcon_loss(features, None, temperature=0.3)
            if count == "views"
            else supcon_loss(
                features[:, :1],
                GLOBAL_LABELS,
                temperature=0.3,
                count_anchors_without_positives=count,
            )
        )
        (grad,) = torch.autograd.grad(reference, features)
        mean = sum(ranks[r][count][0] for r in range(WORLD)) / WORLD
        assert mean == pytest.approx(reference.item(), rel=1e-9)
        for r in range(WORLD):  # DDP averages the ranks' gradients
            rows = slice(r * LOCAL, (r + 1) * LOCAL)
            torch.testing.assert_close(ranks[r][count][1] / WORLD, grad[rows])


def test_labels_switch_in_the_registry():
    simclr = load_config("simclr")
    assert positives_of(simclr) == "views" and not needs_labels(simclr)
    supervised = with_labels(simclr, 10)
    assert positives_of(supervised) == "labels" and needs_labels(supervised)
    method = build_method(supervised, channels=1, image_size=8)
    assert method.positives == "labels"
    hydra = with_labels(load_config("hydra"), 7)
    assert hydra.objective.options["num_classes"] == 7 and positives_of(hydra) == "views"
    assert needs_labels(load_config("supcon")) and needs_labels(load_config("ce"))
    with pytest.raises(ContrastkitError, match="does not take its positives from labels"):
        with_labels(load_config("moco"), 10)


def test_cli_fit_with_labels(tmp_path, capsys):
    out = tmp_path / "supervised"
    args = ["fit", "--labels", "--out", str(out), "--threads", "1", "--no-progress"]
    settings = ["--epochs", "1", "train.batch_size=256", "eval.report=false"]
    assert main([*args, *settings, "eval.linear_probe=false"]) == 0
    saved = load_config(out / "config.yaml")
    assert saved.objective.positives == "labels" and saved.data.source == "digits"
    assert "knn_accuracy" in capsys.readouterr().out


def test_cli_rejects_unlabelled_data(tmp_path, capsys):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, x=np.random.default_rng(0).random((40, 8, 8), dtype=np.float32))
    for extra in (["--labels"], ["--config", "supcon"]):
        out = tmp_path / f"run{len(extra)}"
        code = main(["fit", *extra, "--data", f"npz:{path}", "--out", str(out), "--epochs", "1"])
        assert code == 2
        assert "labelled data" in capsys.readouterr().err
        assert not out.exists()
    code = main(["fit", "--labels", "--config", "moco", "--epochs", "1"])
    assert code == 2 and "cannot apply" in capsys.readouterr().err
