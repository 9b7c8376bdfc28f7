"""Tests for contrastkit.eval: weighted kNN (InstDisc) and the linear probe."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from contrastkit.errors import ContrastkitError
from contrastkit.eval import knn_accuracy, knn_predict, linear_probe

torch.set_num_threads(1)

lp_module = importlib.import_module("contrastkit.eval.linear_probe")


def _angle(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


# One class-0 point at cosine 1 from the query, two class-1 points at cosine 0.5.
TRAIN_X = torch.tensor([_angle(0), _angle(60), _angle(-60), _angle(180)])
TRAIN_Y = torch.tensor([0, 1, 1, 2])
QUERY = torch.tensor([[1.0, 0.0]])


def naive_knn(train_x, train_y, test_x, k, temperature, num_classes):
    """Reference: a per-query loop over python floats, in float64."""
    train_x = np.asarray(train_x, dtype=np.float64)
    test_x = np.asarray(test_x, dtype=np.float64)
    train_x = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    test_x = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
    preds = []
    for q in test_x:
        sims = train_x @ q
        order = np.argsort(-sims)[: min(k, len(train_x))]
        votes = [0.0] * num_classes
        for j in order:
            votes[int(train_y[j])] += math.exp(sims[j] / temperature)
        preds.append(int(np.argmax(votes)))
    return np.array(preds)


def test_knn_weighted_vote_by_hand():
    # k=3, tau=0.1: class 0 scores e^10 ~ 22026, class 1 scores 2 e^5 ~ 297 -> class 0, although
    # an unweighted majority vote would pick class 1.
    assert knn_predict(TRAIN_X, TRAIN_Y, QUERY, k=3, temperature=0.1).tolist() == [0]
    # k=3, tau=10: class 0 scores e^0.1 ~ 1.105, class 1 scores 2 e^0.05 ~ 2.103 -> class 1.
    assert knn_predict(TRAIN_X, TRAIN_Y, QUERY, k=3, temperature=10.0).tolist() == [1]
    # k=2: neighbours are the class-0 point (s=1) and one class-1 point (s=0.5) -> class 0.
    assert knn_predict(TRAIN_X, TRAIN_Y, QUERY, k=2, temperature=10.0).tolist() == [0]
    # k=1 is nearest-neighbour classification.
    assert knn_predict(TRAIN_X, TRAIN_Y, -QUERY, k=1).tolist() == [2]


def test_knn_is_invariant_to_feature_scale():
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(50, 8, generator=gen)
    labels = torch.randint(0, 4, (50,), generator=gen)
    test = torch.randn(20, 8, generator=gen)
    base = knn_predict(train, labels, test, k=7)
    train_scales = torch.rand(50, 1, generator=gen) * 100 + 0.01
    test_scales = torch.rand(20, 1, generator=gen) * 100 + 0.01
    scaled = knn_predict(train * train_scales, labels, test * test_scales, k=7)
    assert torch.equal(base, scaled)


def test_knn_ties_go_to_smallest_class():
    train = torch.tensor([[0.0, 1.0], [0.0, -1.0]])  # both at cosine 0 from the query
    assert knn_predict(train, torch.tensor([3, 1]), QUERY, k=2).tolist() == [1]
    assert knn_predict(train, torch.tensor([1, 3]), QUERY, k=2).tolist() == [1]


def test_knn_k_larger_than_train_size():
    preds_big = knn_predict(TRAIN_X, TRAIN_Y, QUERY, k=1000, temperature=10.0)
    preds_all = knn_predict(TRAIN_X, TRAIN_Y, QUERY, k=len(TRAIN_X), temperature=10.0)
    assert torch.equal(preds_big, preds_all)
    assert preds_big.dtype == torch.int64 and preds_big.shape == (1,)


def test_knn_chunked_matches_unchunked_and_naive_loop():
    gen = torch.Generator().manual_seed(1)
    train = torch.randn(300, 16, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 5, (300,), generator=gen)
    test = torch.randn(97, 16, generator=gen, dtype=torch.float64)
    whole = knn_predict(train, labels, test, k=20, temperature=0.07, chunk_size=10_000)
    chunked = knn_predict(train, labels, test, k=20, temperature=0.07, chunk_size=7)
    assert torch.equal(whole, chunked)
    expected = naive_knn(train, labels, test, k=20, temperature=0.07, num_classes=5)
    np.testing.assert_array_equal(whole.numpy(), expected)


def test_knn_accepts_numpy_and_small_temperature():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(80, 6)).astype(np.float32)
    labels = rng.integers(0, 3, size=80)
    test = rng.normal(size=(30, 6)).astype(np.float32)
    # tau = 0.01: exp(s/tau) up to e^100 overflows float32 without the max-shift.
    preds = knn_predict(train, labels, test, k=10, temperature=0.01, num_classes=7)
    expected = naive_knn(train, labels, test, k=10, temperature=0.01, num_classes=7)
    np.testing.assert_array_equal(preds.numpy(), expected)


def test_knn_accuracy():
    gen = torch.Generator().manual_seed(3)
    centers = torch.randn(3, 10, generator=gen) * 3
    train_y = torch.randint(0, 3, (120,), generator=gen)
    test_y = torch.randint(0, 3, (40,), generator=gen)
    train = centers[train_y] + torch.randn(120, 10, generator=gen)
    test = centers[test_y] + torch.randn(40, 10, generator=gen)
    preds = knn_predict(train, train_y, test, k=15)
    acc = knn_accuracy(train, train_y, test, test_y, k=15)
    assert acc == pytest.approx((preds == test_y).double().mean().item())
    assert acc > 0.9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_features": torch.randn(5)}, "2-D"),
        ({"test_features": torch.randn(2, 3)}, "dim"),
        ({"train_labels": torch.tensor([0, 1])}, "entries"),
        ({"train_labels": torch.tensor([0.0, 1.0, 1.0, 2.0])}, "integer"),
        ({"train_labels": torch.tensor([0, -1, 1, 2])}, "non-negative"),
        ({"train_features": torch.tensor([[float("nan"), 0.0]] * 4)}, "NaN"),
        (
            {"train_features": torch.zeros(0, 2), "train_labels": torch.zeros(0, dtype=torch.long)},
            "empty",
        ),
        ({"k": 0}, "k"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"num_classes": 2}, "num_classes"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_knn_bad_inputs(kwargs, match):
    args = {"train_features": TRAIN_X, "train_labels": TRAIN_Y, "test_features": QUERY}
    args.update(kwargs)
    with pytest.raises(ContrastkitError, match=match):
        knn_predict(**args)


def test_knn_accuracy_bad_inputs():
    with pytest.raises(ContrastkitError, match="entries"):
        knn_accuracy(TRAIN_X, TRAIN_Y, QUERY, torch.tensor([0, 1]))
    with pytest.raises(ContrastkitError, match="empty"):
        knn_accuracy(TRAIN_X, TRAIN_Y, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)


def test_linear_probe_digits(digits):
    x_train, x_test, y_train, y_test = digits
    result = linear_probe(x_train, y_train, x_test, y_test)
    assert set(result) == {"accuracy", "C"}
    assert result["accuracy"] > 0.9
    assert result["C"] in lp_module.C_GRID
    # C is chosen on the train set only: scrambling the test labels cannot change it.
    scrambled = np.random.default_rng(0).permutation(y_test)
    assert linear_probe(x_train, y_train, x_test, scrambled)["C"] == result["C"]


def test_linear_probe_fixed_C_and_torch_inputs(digits):
    x_train, x_test, y_train, y_test = (torch.as_tensor(a) for a in digits)
    result = linear_probe(x_train.float(), y_train, x_test.float(), y_test, C=0.5)
    assert result["C"] == 0.5
    assert result["accuracy"] > 0.9


def test_linear_probe_search_subsample(digits, monkeypatch):
    monkeypatch.setattr(lp_module, "SEARCH_MAX_SAMPLES", 300)
    x_train, x_test, y_train, y_test = digits
    result = linear_probe(x_train, y_train, x_test, y_test, seed=1)
    assert result["C"] in lp_module.C_GRID
    assert result["accuracy"] > 0.9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_labels": np.array([0, 1, 0])}, "entries"),
        ({"test_labels": np.array([0])}, "entries"),
        ({"train_features": np.ones(8)}, "2-D"),
        ({"test_features": np.ones((4, 3))}, "dim"),
        ({"train_features": np.full((8, 2), np.nan)}, "NaN"),
        ({"test_features": np.full((4, 2), np.inf)}, "NaN"),
        ({"train_labels": np.zeros(8, dtype=int)}, "two classes"),
        ({"train_features": np.zeros((0, 2)), "train_labels": np.zeros(0)}, "empty"),
        ({"C": 0.0}, "C must"),
        ({"C": float("nan")}, "C must"),
        ({"max_iter": 0}, "max_iter"),
    ],
)
def test_linear_probe_bad_inputs(kwargs, match):
    rng = np.random.default_rng(0)
    args = {
        "train_features": rng.normal(size=(8, 2)),
        "train_labels": np.array([0, 1] * 4),
        "test_features": rng.normal(size=(4, 2)),
        "test_labels": np.array([0, 1, 0, 1]),
    }
    args.update(kwargs)
    with pytest.raises(ContrastkitError, match=match):
        linear_probe(**args)
