"""Diagnostics of an embedding space against hand-computed values, limits and invariances; the
score-statistics callback; ``contrastkit diagnose``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from contrastkit.diagnostics import (
    DEFAULT_TEMPERATURES,
    available_map_methods,
    centroid_distance,
    collapse_std,
    covariance_spectrum,
    cross_uniformity,
    diagnose,
    effective_rank,
    embedding_map,
    expected_calibration_error,
    frechet_bootstrap,
    frechet_distance,
    frechet_distance_from_moments,
    hardness_statistics,
    health_checks,
    linear_separability,
    modality_gap,
    nearest_neighbours,
    neighbour_label_agreement,
    overall,
    probe_calibration,
    reliability_diagram,
    score_statistics,
    singular_values,
    spectrum_summary,
    sphere_geometry,
    summarize_scores,
    temperature_sweep,
)
from contrastkit.diagnostics.summary import load_embeddings
from contrastkit.errors import ContrastkitError
from contrastkit.functional.pairs import Pairs
from contrastkit.train.callbacks import HISTOGRAM_BINS, ScoreStatistics, load_score_histograms
from contrastkit.train.cli import main

torch.set_num_threads(1)
POINTS = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
# instance-dense.md §1 d.1: anchor, its positive and two negatives
ANCHOR = torch.tensor([[1.0, 0.0]])
CANDIDATES = torch.tensor([[0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
ONE_POSITIVE = Pairs(torch.tensor([0]), torch.tensor([0, 1, 2]))
# two samples × two views, view-major: (1,0), (0,1) | (0.6,0.8), (−0.8,0.6)
VIEWS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-0.8, 0.6]])


# -- alignment, uniformity, tolerance (instance-dense.md §1 d.5–7) ----------------------------
def test_sphere_geometry_hand_values_and_normalisation():
    y = np.array([[0.6, 0.8], [0.0, 1.0], [-0.8, 0.6]])
    g = sphere_geometry(POINTS, positives=y)
    assert g["uniformity"] == pytest.approx(-4.396349, abs=1e-6)
    assert g["alignment"] == pytest.approx(0.4, abs=1e-9)
    scaled = sphere_geometry(5 * POINTS, positives=3 * y)  # inputs are normalised first
    assert scaled == pytest.approx(g)
    same = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3)
    assert sphere_geometry(same, labels=[0, 0, 0, 1, 1, 1])["tolerance"] == pytest.approx(1.0)
    assert sphere_geometry(np.ones((5, 3)))["uniformity"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ContrastkitError, match="pair row by row"):
        sphere_geometry(POINTS, positives=y[:2])


def test_uniformity_is_subsampled_under_a_seed():
    x = np.random.default_rng(0).normal(size=(300, 8))
    a = sphere_geometry(x, max_rows=100, seed=1)["uniformity"]
    assert a == sphere_geometry(x, max_rows=100, seed=1)["uniformity"]
    assert a != sphere_geometry(x, max_rows=100, seed=2)["uniformity"]
    # uniform on S^7: about −2t + 2t²/D = −3 (instance-dense.md §1: t = 2)
    assert sphere_geometry(x)["uniformity"] == pytest.approx(-3.0, abs=0.15)


def test_collapse_std_hand_values():
    # ±e1, ±e2: each channel has values (1, −1, 0, 0): std √0.5, × √2 = 1
    cross = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert collapse_std(cross) == pytest.approx(1.0)
    assert collapse_std(np.tile([[0.3, 2.0, -1.0]], (6, 1))) == pytest.approx(0.0, abs=1e-12)


# -- spectrum and effective rank -------------------------------------------------------------
def test_effective_rank_hand_values():
    assert effective_rank([1, 1, 1, 1]) == pytest.approx(4.0)
    assert effective_rank([3, 0, 0]) == pytest.approx(1.0)
    # p = (1/2, 1/4, 1/4): H = 1.5 log 2, exp(H) = 2^1.5
    assert effective_rank([2, 1, 1]) == pytest.approx(2**1.5)
    assert effective_rank([20, 10, 10]) == pytest.approx(2**1.5)  # scale invariant
    assert effective_rank([0, 0]) == 0.0
    with pytest.raises(ContrastkitError, match="non-negative"):
        effective_rank([1, -1])


def test_spectrum_of_a_known_matrix():
    a, b = 3.0, 1.0
    x = np.array([[a, 0], [-a, 0], [0, b], [0, -b]])  # mean 0, covariance diag(a²/2, b²/2)
    np.testing.assert_allclose(covariance_spectrum(x), [a * a / 2, b * b / 2])
    np.testing.assert_allclose(singular_values(x), [a * math.sqrt(2), b * math.sqrt(2)])
    summary = spectrum_summary(x)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))  # p = (3√2, √2) / 4√2
    assert summary["effective_rank"] == pytest.approx(math.exp(entropy))
    assert summary["effective_rank_fraction"] == pytest.approx(math.exp(entropy) / 2)
    assert summary["top_variance_fraction"] == pytest.approx(0.9)
    # centring: a constant offset changes nothing
    np.testing.assert_allclose(covariance_spectrum(x + 7), covariance_spectrum(x), atol=1e-12)
    # the centred identity has N − 1 equal singular values
    assert spectrum_summary(np.eye(8))["effective_rank"] == pytest.approx(7.0)
    assert len(covariance_spectrum(np.eye(3)[:2])) == 3  # zero-padded to D


# -- positive / negative scores (instance-dense.md §9 b) --------------------------------------
def test_score_statistics_hand_values():
    stats = score_statistics(VIEWS, Pairs.views(2, 2))
    np.testing.assert_allclose(stats["positive"], [0.6, 0.6, 0.6, 0.6], atol=1e-12)
    np.testing.assert_allclose(stats["negative_mean"], [-0.4, 0.4, 0.4, -0.4], atol=1e-12)
    np.testing.assert_allclose(stats["negative_var"], [0.16] * 4, atol=1e-12)
    summary = {k: float(v) for k, v in summarize_scores(stats).items()}
    assert summary == pytest.approx(
        {"pos_score_mean": 0.6, "pos_score_var": 0.0, "neg_score_mean": 0.0, "neg_score_var": 0.16},
        abs=1e-7,  # float32 inputs
    )
    # scaled rows give the same cosines
    scaled = score_statistics(VIEWS * torch.tensor([[2.0], [3.0], [0.5], [9.0]]), Pairs.views(2, 2))
    torch.testing.assert_close(scaled["negative_var"], stats["negative_var"])


def _dense_scores(z, c, pairs):
    """Reference: the full score matrix, masked row by row."""
    z, c = F.normalize(z.double(), dim=1), F.normalize(c.double(), dim=1)
    s = z @ c.T
    positive, is_self = pairs.masks(n_columns=len(c))
    negative = ~positive & ~is_self
    rows = [
        (s[i][positive[i]].mean(), s[i][negative[i]].mean(), s[i][negative[i]].var(correction=0))
        for i in range(len(z))
    ]
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize(
    "pairs, extra",
    [
        (Pairs.views(6, 2), 0),
        (Pairs.views(4, 3), 0),
        (Pairs.labels(torch.tensor([0, 1, 0, 2, 1, 0]), 2), 0),
        (Pairs.views(6, 2), 5),  # a queue of extra negatives
        (Pairs.cross(12), None),  # two disjoint sets (MoCo, CLIP)
    ],
)
def test_score_statistics_equal_the_dense_matrix(pairs, extra):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(12, 5, generator=g)
    if extra is None:
        c = torch.randn(12, 5, generator=g)
    else:
        c = torch.cat([z, torch.randn(extra, 5, generator=g)]) if extra else None
    stats = score_statistics(z, pairs, c)
    got = torch.stack([stats["positive"], stats["negative_mean"], stats["negative_var"]], dim=1)
    torch.testing.assert_close(got, _dense_scores(z, z if c is None else c, pairs))


def test_score_statistics_without_positives_and_bad_shapes():
    ids = torch.arange(4)
    stats = score_statistics(VIEWS, Pairs(ids, ids, 0))  # every other row is a negative
    assert stats["positive"].isnan().all()
    assert float(summarize_scores(stats)["pos_score_mean"]) != float(
        summarize_scores(stats)["pos_score_mean"]
    )  # NaN
    with pytest.raises(ContrastkitError, match="anchors"):
        score_statistics(VIEWS[:3], Pairs.views(2, 2))


# -- hardness (instance-dense.md §1 d.1, d.3) -------------------------------------------------
def test_hardness_hand_values():
    h = hardness_statistics(ANCHOR, ONE_POSITIVE, CANDIDATES, temperature=0.5)
    r = [0.880797, 0.119203]  # the spec's relative penalties
    entropy = -sum(p * math.log(p) for p in r)
    assert float(h["entropy"][0]) == pytest.approx(entropy, abs=1e-5)
    assert float(h["normalized_entropy"][0]) == pytest.approx(entropy / math.log(2), abs=1e-5)
    assert float(h["top_k_mass"][0]) == pytest.approx(0.880797, abs=1e-6)
    both = hardness_statistics(ANCHOR, ONE_POSITIVE, CANDIDATES, temperature=0.5, top_k=2)
    assert float(both["top_k_mass"][0]) == pytest.approx(1.0)


def test_temperature_sweep_limits_and_monotonicity():
    torch.manual_seed(0)
    z = torch.randn(32, 6)
    sweep = temperature_sweep(z, Pairs.views(16, 2))
    assert sweep["temperature"] == list(DEFAULT_TEMPERATURES)
    assert np.all(np.diff(sweep["entropy"]) > 0)  # the entropy of r rises with τ
    assert np.all(np.diff(sweep["top_k_mass"]) < 0)
    hot = hardness_statistics(z, Pairs.views(16, 2), temperature=1e4)
    cold = hardness_statistics(z, Pairs.views(16, 2), temperature=1e-3)
    assert float(hot["normalized_entropy"].min()) > 0.9999  # all negatives weigh the same
    assert float(cold["top_k_mass"].mean()) > 0.95  # the nearest negative takes it all
    with pytest.raises(ContrastkitError, match="temperature"):
        hardness_statistics(z, Pairs.views(16, 2), temperature=0)


# -- contrastive gap (labels-multimodal-other.md §5 d) ----------------------------------------
def test_centroid_distance_and_cross_uniformity_hand_values():
    a, b = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[-1.0, 0.0], [0.0, -1.0]])
    c = centroid_distance(a, b)
    assert c["centroid_distance"] == pytest.approx(math.sqrt(2))
    assert c["centroid_cosine"] == pytest.approx(-1.0)
    eye = np.eye(4)
    # I = T: no gap, and cross-uniformity over i ≠ j equals the in-set uniformity, −4 (§5 d.2–3)
    gap = modality_gap(eye, eye, paired=True)
    assert gap["centroid_distance"] == pytest.approx(0.0, abs=1e-12)
    assert gap["alignment"] == pytest.approx(0.0, abs=1e-12)
    assert gap["uniformity_a"] == pytest.approx(-4.0)
    assert gap["cross_uniformity"] == pytest.approx(-4.0)
    # a = (1,0), b = (0,1): one cross pair at squared distance 2
    assert cross_uniformity(a[:1], eye[1:2, :2]) == pytest.approx(-4.0)


def test_linear_separability_limits():
    rng = np.random.default_rng(0)
    x = F.normalize(torch.from_numpy(rng.normal(size=(400, 16))), dim=1).numpy()
    noisy = x + 0.01 * rng.normal(size=x.shape)
    assert 0.35 <= linear_separability(x, noisy, paired=True) <= 0.65
    shifted = x + 3.0 * np.eye(16)[0]  # one large common offset
    assert linear_separability(x, shifted, paired=True) > 0.97
    with pytest.raises(ContrastkitError, match="share one space"):
        modality_gap(x, x[:, :8])


# -- Fréchet distance (labels-multimodal-other.md §13.6) --------------------------------------
def test_frechet_distance_hand_values():
    # ‖(3,4)‖² + tr(I + 4I − 2·2I) = 25 + 2
    assert frechet_distance_from_moments([0, 0], np.eye(2), [3, 4], 4 * np.eye(2)) == pytest.approx(
        27.0
    )
    # equal means: tr(diag(1,4) + diag(9,16) − 2 diag(3, 8)) = 30 − 22
    assert frechet_distance_from_moments(
        [1, 1], np.diag([1.0, 4.0]), [1, 1], np.diag([9.0, 16.0])
    ) == pytest.approx(8.0)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5))
    shift = np.arange(5.0)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift))  # same covariance
    # b = 2a: tr(Σ + 4Σ − 2·2Σ) = tr Σ, plus ‖μ − 2μ‖²
    expected = np.trace(np.cov(a, rowvar=False)) + float(a.mean(0) @ a.mean(0))
    assert frechet_distance(a, 2 * a) == pytest.approx(expected)
    rotation, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    b = rng.normal(size=(150, 5)) + 1
    assert frechet_distance(a @ rotation, b @ rotation) == pytest.approx(frechet_distance(a, b))


def test_frechet_bootstrap_variance():
    u, v = np.array([[1.0, 2.0]]), np.array([[4.0, 6.0]])
    constant = frechet_bootstrap(np.repeat(u, 10, 0), np.repeat(v, 12, 0), n_bootstrap=20)
    np.testing.assert_allclose(constant["samples"], 25.0)  # every replicate: ‖u − v‖²
    assert constant["bootstrap_var"] == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    small = frechet_bootstrap(rng.normal(size=(100, 4)), rng.normal(size=(100, 4)) + 0.5, seed=1)
    large = frechet_bootstrap(rng.normal(size=(1600, 4)), rng.normal(size=(1600, 4)) + 0.5, seed=1)
    assert small["bootstrap_std"] > 0
    assert large["bootstrap_std"] < 0.5 * small["bootstrap_std"]  # ≈ 1/√N: 16× the rows, ¼ std
    again = frechet_bootstrap(rng.normal(size=(50, 3)), rng.normal(size=(60, 3)), seed=3)
    assert again["bootstrap_var"] == pytest.approx(again["bootstrap_std"] ** 2)


# -- calibration (Guo et al. 2017) ------------------------------------------------------------
def test_ece_hand_value_and_reliability_bins():
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.65, 0.35], [0.35, 0.65]])
    y = np.array([0, 1, 0, 1])
    # bin [0.9, 1.0): conf 0.95, acc 0.5; bin [0.6, 0.7): conf 0.65, acc 1; each half the samples
    assert expected_calibration_error(p, y, n_bins=10) == pytest.approx(0.4, abs=1e-6)
    r = reliability_diagram(p, y, n_bins=10)
    assert r["count"].tolist() == [0, 0, 0, 0, 0, 0, 2, 0, 0, 2]
    assert r["accuracy"][9] == 0.5 and r["confidence"][6] == pytest.approx(0.65)
    assert np.isnan(r["accuracy"][0])
    # a perfect, certain classifier is calibrated
    assert expected_calibration_error(np.eye(3), [0, 1, 2]) == pytest.approx(0.0)


def test_reliability_bins_reproduce_torchmetrics_ece():
    rng = np.random.default_rng(0)
    logits = 2 * rng.normal(size=(500, 5))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, 5, 500)
    r = reliability_diagram(p, y)
    filled = r["count"] > 0
    hand = (np.abs(r["accuracy"] - r["confidence"])[filled] * r["count"][filled]).sum() / 500
    assert expected_calibration_error(p, y) == pytest.approx(hand, abs=1e-6)
    with pytest.raises(ContrastkitError, match="sum"):
        expected_calibration_error(p * 2, y)


def test_probe_calibration_on_separable_classes():
    rng = np.random.default_rng(0)
    centres = 6 * np.eye(4)
    y = rng.integers(0, 4, 400)
    x = centres[y] + rng.normal(size=(400, 4))
    cal = probe_calibration(x[:300], y[:300], x[300:], y[300:])
    assert cal["accuracy"] == 1.0
    assert cal["ece"] < 0.05
    assert cal["reliability"]["count"].sum() == 100


# -- maps and neighbours ----------------------------------------------------------------------
def test_pca_map_keeps_a_plane_and_tsne_runs():
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(50, 2)) * [3.0, 1.0]
    basis, _ = np.linalg.qr(rng.normal(size=(10, 2)))
    coords, rows = embedding_map(plane @ basis.T + 5, "pca")
    assert rows.tolist() == list(range(50))
    d_in = np.linalg.norm(plane[:, None] - plane[None], axis=2)
    d_out = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    np.testing.assert_allclose(d_out, d_in, atol=1e-8)  # PCA of a plane is an isometry
    coords, rows = embedding_map(rng.normal(size=(60, 5)), "tsne", max_points=40)
    assert coords.shape == (40, 2) and np.isfinite(coords).all() and len(set(rows)) == 40
    assert {"pca", "tsne"} <= set(available_map_methods())
    with pytest.raises(ContrastkitError, match="did you mean 'tsne'"):
        embedding_map(plane, "tnse")


def test_nearest_neighbours_hand_values():
    refs = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    idx, sim = nearest_neighbours(np.array([[2.0, 0.0], [0.0, 1.0]]), refs, k=2)
    assert idx.tolist() == [[0, 1], [2, 1]]
    np.testing.assert_allclose(sim, [[1.0, 0.8], [1.0, 0.6]])
    idx, _ = nearest_neighbours(refs, refs, k=1, exclude_self=True)
    assert idx[:, 0].tolist() == [1, 0, 1, 2]  # never itself
    clusters = np.concatenate([np.tile([1.0, 0.0], (5, 1)), np.tile([0.0, 1.0], (5, 1))])
    clusters += 0.01 * np.random.default_rng(0).normal(size=clusters.shape)
    assert neighbour_label_agreement(clusters, [0] * 5 + [1] * 5, k=4) == 1.0
    with pytest.raises(ContrastkitError, match="only 4 references"):
        nearest_neighbours(refs, refs, k=5)


# -- health summary ---------------------------------------------------------------------------
HEALTHY = {
    "state": "complete",
    "loss_first": 6.5,
    "loss_last": 4.4,
    "collapse_std": 0.87,
    "uniformity": -2.5,
    "effective_rank": 75.0,
    "effective_rank_fraction": 0.58,
    "score_gap": 0.46,
    "normalized_entropy": 0.72,
    "knn_accuracy": 0.95,
    "chance": 0.1,
    "raw_knn_accuracy": 0.93,
}


def test_health_thresholds():
    checks = health_checks(HEALTHY)
    assert [c.status for c in checks] == ["ok"] * len(checks) and overall(checks) == "ok"
    collapsed = HEALTHY | {
        "collapse_std": 0.03,
        "uniformity": -0.003,
        "score_gap": 0.001,
        "normalized_entropy": 1.0,
        "effective_rank": 1.5,
        "loss_last": 6.5,
        "knn_accuracy": 0.11,
    }
    status = {c.name: c.status for c in health_checks(collapsed)}
    assert status == {
        "training finished": "ok",
        "loss decreased": "fail",
        "complete collapse": "fail",
        "uniformity": "fail",
        "dimensional collapse": "fail",
        "positive–negative gap": "fail",
        "hardness": "warn",
        "kNN above chance": "fail",
        "kNN vs raw inputs": "fail",
    }
    between = {c.name: c.status for c in health_checks(HEALTHY | {"collapse_std": 0.3})}
    assert between["complete collapse"] == "warn"
    assert {c.status for c in health_checks({})} == {"n/a"}
    failed = health_checks({"state": "failed", "message": "loss became nan"})
    assert failed[0].status == "fail" and "nan" in failed[0].detail and overall(failed) == "fail"


# -- diagnose() and the CLI -------------------------------------------------------------------
def test_diagnose_hand_values():
    out = diagnose(np.eye(8), labels=[0, 0, 1, 1, 2, 2, 3, 3])
    assert out["uniformity"] == pytest.approx(-4.0)  # orthonormal: every squared distance is 2
    assert out["effective_rank"] == pytest.approx(7.0)
    assert out["effective_rank_fraction"] == pytest.approx(1.0)
    assert out["tolerance"] == pytest.approx(0.0)
    # every negative at cosine 0: equal penalties, normalised entropy 1
    assert out["hardness_normalized_entropy"] == pytest.approx(1.0)
    assert out["hardness_top1_mass"] == pytest.approx(1 / 7)
    both = diagnose(np.eye(8), other=np.eye(8), paired=True)
    assert both["gap_centroid_distance"] == pytest.approx(0.0, abs=1e-12)
    assert both["frechet_distance"] == pytest.approx(0.0, abs=1e-8)


@pytest.fixture()
def embeddings_file(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    centres = 4 * np.eye(6)
    y_train, y_test = rng.integers(0, 3, 120), rng.integers(0, 3, 60)
    path = tmp_path / "emb.npz"
    np.savez(
        path,
        train_features=centres[y_train] + rng.normal(size=(120, 6)),
        train_labels=y_train,
        test_features=centres[y_test] + rng.normal(size=(60, 6)),
        test_labels=y_test,
    )
    return path


def test_diagnose_cli_table_and_json(embeddings_file, tmp_path, capsys):
    assert main(["diagnose", str(embeddings_file)]) == 0
    table = capsys.readouterr().out
    assert "probe_ece" in table and "frechet_train_vs_this" in table and "uniformity" in table
    other = tmp_path / "other.npz"
    np.savez(other, features=np.random.default_rng(1).normal(size=(40, 6)) + 5)
    assert main(["diagnose", str(embeddings_file), "--other", str(other), "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["n"] == 60 and numbers["gap_linear_separability"] > 0.9
    assert numbers["probe_accuracy"] > 0.9


@pytest.mark.parametrize(
    "content, phrase",
    [
        (None, "does not exist"),
        (b"not a zip", "not an .npz"),
        ({"a": np.zeros((3, 2)), "b": np.zeros((3, 2))}, "name the features"),
        ({"features": np.array([object(), object()], dtype=object)}, "not an .npz"),
    ],
)
def test_diagnose_rejects_bad_files(tmp_path, capsys, content, phrase):
    path = tmp_path / "bad.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, dict):
        np.savez(path, **content)
    with pytest.raises(ContrastkitError, match=phrase):
        load_embeddings(path)
    assert main(["diagnose", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("contrastkit: error:") and err.count("\n") == 1


# -- the score-statistics callback ------------------------------------------------------------
class _Toy(L.LightningModule):
    """Sets ``model.last_step`` like the image model does, with fixed embeddings."""

    def __init__(self, embeddings: torch.Tensor, pairs: Pairs) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.model = SimpleNamespace(last_step=None)
        self.fixed = (embeddings, pairs)

    def training_step(self, batch, batch_idx):
        self.model.last_step = self.fixed
        return (self.weight * batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _train_toy(tmp_path: Path, embeddings: torch.Tensor, pairs: Pairs) -> Path:
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=CSVLogger(tmp_path, name="logs"),
        callbacks=[ScoreStatistics(tmp_path / "scores.npz")],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    loader = DataLoader(TensorDataset(torch.ones(3, 1)), batch_size=1)
    trainer.fit(_Toy(embeddings, pairs), loader)
    return tmp_path / "logs" / "version_0" / "metrics.csv"  # absent when nothing was logged


LIGHTNING_NOISE = "ignore:.*isinstance.treespec, LeafSpec.*"


@pytest.mark.filterwarnings(LIGHTNING_NOISE)
def test_callback_logs_hand_values_and_histograms(tmp_path):
    # a multi-head [V·B, C, D] batch: head 0 holds the hand example
    heads = torch.stack([VIEWS, torch.randn(4, 2)], dim=1)
    metrics = _train_toy(tmp_path, heads, Pairs.views(2, 2))
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("pos_score_mean")]
    assert len(rows) == 3
    for row in rows:
        assert float(row["pos_score_mean"]) == pytest.approx(0.6, abs=1e-6)
        assert float(row["pos_score_var"]) == pytest.approx(0.0, abs=1e-6)
        assert float(row["neg_score_mean"]) == pytest.approx(0.0, abs=1e-6)
        assert float(row["neg_score_var"]) == pytest.approx(0.16, abs=1e-6)
    h = load_score_histograms(tmp_path / "scores.npz")
    assert h["step"].tolist() == [1, 2, 3]
    assert h["positive"].shape == (3, HISTOGRAM_BINS) and (h["positive"].sum(1) == 4).all()

    def near(value: float) -> np.ndarray:  # the bins whose edges hold value ± 1e-6 (on an edge)
        return (h["edges"][:-1] <= value + 1e-6) & (h["edges"][1:] >= value - 1e-6)

    assert (h["positive"][:, near(0.6)].sum(1) == 4).all()  # every anchor's positive is 0.6
    assert (h["negative_mean"][:, near(-0.4)].sum(1) == 2).all()
    assert (h["negative_mean"][:, near(0.4)].sum(1) == 2).all()


@pytest.mark.filterwarnings(LIGHTNING_NOISE)
def test_callback_skips_mismatched_steps_and_keeps_history_on_resume(tmp_path):
    with pytest.warns(UserWarning, match="score statistics skipped"):
        metrics = _train_toy(tmp_path, VIEWS[:3], Pairs.views(2, 2))
    assert not metrics.exists() or "pos_score_mean" not in metrics.read_text()
    path = tmp_path / "history.npz"
    edges = np.linspace(-1, 1, HISTOGRAM_BINS + 1)
    np.savez(path, step=np.array([1, 2, 3, 4]), positive=np.ones((4, HISTOGRAM_BINS)),
             negative_mean=np.ones((4, HISTOGRAM_BINS)), edges=edges)  # fmt: skip
    callback = ScoreStatistics(path)
    callback.on_fit_start(SimpleNamespace(global_step=2), None)  # resumed after step 2
    assert callback._saved["step"].tolist() == [1, 2]
