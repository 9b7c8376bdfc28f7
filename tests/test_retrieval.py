"""Tests for contrastkit.eval.retrieval: paired retrieval metrics and CLIP-style zero-shot."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from contrastkit.errors import ContrastkitError
from contrastkit.eval import (
    bidirectional_retrieval,
    class_prompt_embeddings,
    retrieval_metrics,
    retrieval_ranks,
    zero_shot_accuracy,
    zero_shot_predict,
)

torch.set_num_threads(1)

# Similarities S[i, j] of query i to item j (queries = S, items = identity, so S @ I = S):
# row 0: correct 0.9 is the largest -> rank 1
# row 1: correct 0.3 is below 0.8 and 0.6 -> rank 3
# row 2: correct 0.7 ties with item 1 -> rank 2 (pessimistic; an optimistic rule would say 1)
S = np.array([[0.9, 0.1, 0.5], [0.8, 0.3, 0.6], [0.2, 0.7, 0.7]])
EYE = np.eye(3)


def naive_ranks(q: np.ndarray, x: np.ndarray, normalize: bool) -> np.ndarray:
    """Reference: full float64 similarity matrix and a per-query loop."""
    q, x = q.astype(np.float64), x.astype(np.float64)
    if normalize:
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = q @ x.T
    return np.array(
        [1 + sum(s[i, j] >= s[i, i] for j in range(len(x)) if j != i) for i in range(len(q))]
    )


@pytest.mark.parametrize("normalize", [True, False])
def test_hand_computed_ranks_and_metrics(normalize):
    # Row scaling does not change the order within a row, so cosine and dot agree here.
    assert retrieval_ranks(S, EYE, normalize=normalize).tolist() == [1, 3, 2]
    m = retrieval_metrics(S, EYE, ks=(1, 2, 3), normalize=normalize)
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@2"] == pytest.approx(2 / 3)
    assert m["recall@3"] == pytest.approx(1.0)
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)  # 11/18
    assert m["median_rank"] == 2.0
    assert list(m) == ["recall@1", "recall@2", "recall@3", "mrr", "median_rank"]


def test_median_of_even_count_is_mean_of_middle_ranks():
    s = np.array([[0.9, 0.1, 0.5, 0.0], [0.8, 0.3, 0.6, 0.0], [0.2, 0.7, 0.7, 0.0], [0, 0, 0, 1.0]])
    # ranks [1, 3, 2, 1] -> sorted [1, 1, 2, 3] -> median 1.5
    assert retrieval_ranks(s, np.eye(4), normalize=False).tolist() == [1, 3, 2, 1]
    assert retrieval_metrics(s, np.eye(4), normalize=False)["median_rank"] == 1.5


def test_cosine_versus_dot_product():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    items = np.array(
        [[1.0, 0.0], [2.0, 0.5]]
    )  # item 1 has the larger dot, item 0 the larger cosine
    assert retrieval_ranks(q, items, normalize=True).tolist() == [1, 1]
    assert retrieval_ranks(q, items, normalize=False).tolist() == [2, 1]


def test_ties_are_pessimistic():
    n = 6
    collapsed = np.ones((n, 4))  # a collapsed encoder: every score is equal
    assert retrieval_ranks(collapsed, collapsed).tolist() == [n] * n
    m = retrieval_metrics(collapsed, collapsed, ks=(1, 5, 6))
    assert m["recall@1"] == 0.0 and m["recall@5"] == 0.0 and m["recall@6"] == 1.0
    assert m["mrr"] == pytest.approx(1 / n)
    assert m["median_rank"] == n
    # zero vectors normalise to zero: all cosines 0, also the worst rank
    assert retrieval_ranks(np.zeros((3, 2)), np.zeros((3, 2))).tolist() == [3, 3, 3]


def test_identical_sets_are_perfect():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 32))
    m = retrieval_metrics(a, a.copy())
    assert m == {"recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0, "mrr": 1.0, "median_rank": 1.0}


def test_permuted_items_give_chance_level():
    n, repeats = 1000, 20
    harmonic = sum(1.0 / r for r in range(1, n + 1))
    mrr, expected, recall100, median = [], [], [], []
    for seed in range(repeats):
        rng = np.random.default_rng(seed)
        a = rng.normal(size=(n, 64)).astype(np.float32)
        perm = rng.permutation(n)
        b = a[perm]  # b[i] = a[perm[i]]: the copy of a[i] sits elsewhere, at rank 1
        # a fixed point (perm[i] == i) has rank 1; otherwise the correct item is an unrelated
        # random vector, uniform over ranks 2..n, so E[1/rank] = (H_n - 1) / (n - 1).
        fixed = int((perm == np.arange(n)).sum())
        expected.append((fixed + (n - fixed) * (harmonic - 1) / (n - 1)) / n)
        m = retrieval_metrics(a, b, ks=(1, 100))
        assert m["recall@1"] == fixed / n
        mrr.append(m["mrr"])
        recall100.append(m["recall@100"])
        median.append(m["median_rank"])
    # one run's MRR has a relative spread of about 12%; the mean of 20 about 3%
    assert np.mean(mrr) == pytest.approx(np.mean(expected), rel=0.1)
    assert np.mean(recall100) == pytest.approx(99 / (n - 1), rel=0.1)
    assert np.mean(median) == pytest.approx((n + 2) / 2, rel=0.05)


def test_chunked_equals_unchunked_and_naive_reference():
    rng = np.random.default_rng(2)
    # small integer vectors: exact dot products in float32, with many exact ties
    q = rng.integers(-2, 3, size=(203, 3)).astype(np.float32)
    x = rng.integers(-2, 3, size=(203, 3)).astype(np.float32)
    ref = naive_ranks(q, x, normalize=False)
    for chunk in (1, 7, 64, 203, 4096):
        assert (
            retrieval_ranks(q, x, normalize=False, chunk_size=chunk).numpy().tolist()
            == ref.tolist()
        )
    full = retrieval_metrics(q, x, normalize=False, chunk_size=4096)
    assert retrieval_metrics(q, x, normalize=False, chunk_size=5) == full
    assert full["mrr"] == pytest.approx(float(np.mean(1.0 / ref)))
    # cosine path against the float64 reference on continuous data (no ties)
    qc, xc = rng.normal(size=(150, 8)), rng.normal(size=(150, 8))
    assert retrieval_ranks(qc, xc, chunk_size=11).tolist() == naive_ranks(qc, xc, True).tolist()


def test_torch_and_numpy_inputs_agree():
    rng = np.random.default_rng(3)
    q, x = rng.normal(size=(40, 5)), rng.normal(size=(40, 5))
    assert retrieval_metrics(torch.from_numpy(q), torch.from_numpy(x)) == retrieval_metrics(q, x)


def test_recall_at_k_larger_than_n_is_one():
    assert retrieval_metrics(S, EYE, ks=(50,))["recall@50"] == 1.0


def test_bidirectional_keys_and_directions():
    m = bidirectional_retrieval(S, EYE, ks=(1,), normalize=False)
    assert set(m) == {
        "a_to_b/recall@1",
        "a_to_b/mrr",
        "a_to_b/median_rank",
        "b_to_a/recall@1",
        "b_to_a/mrr",
        "b_to_a/median_rank",
    }
    assert m["a_to_b/mrr"] == pytest.approx(11 / 18)
    # b -> a ranks use S transposed: [[.9,.8,.2],[.1,.3,.7],[.5,.6,.7]] -> ranks [1, 2, 1]
    assert m["b_to_a/recall@1"] == pytest.approx(2 / 3)
    assert m["b_to_a/mrr"] == pytest.approx((1 + 1 / 2 + 1) / 3)
    assert m["b_to_a/median_rank"] == 1.0


@pytest.mark.parametrize(
    ("queries", "items", "kwargs", "match"),
    [
        (np.ones((3, 2)), np.ones((4, 2)), {}, "3 rows but items has 4"),
        (np.ones((3, 2)), np.ones((3, 5)), {}, "dim 2 but items have dim 5"),
        (np.ones(3), np.ones(3), {}, "2-D"),
        (np.zeros((0, 2)), np.zeros((0, 2)), {}, "empty"),
        (np.array([[1.0, np.nan]]), np.ones((1, 2)), {}, "NaN"),
        (np.ones((2, 2)), np.array([[1.0, np.inf], [1, 1]]), {}, "NaN or infinite"),
        (np.ones((2, 2)), np.ones((2, 2)), {"ks": (0,)}, "positive integer"),
        (np.ones((2, 2)), np.ones((2, 2)), {"ks": (1.5,)}, "positive integer"),
        (np.ones((2, 2)), np.ones((2, 2)), {"ks": (True,)}, "positive integer"),
        (np.ones((2, 2)), np.ones((2, 2)), {"ks": "1"}, "list of positive integers"),
        (np.ones((2, 2)), np.ones((2, 2)), {"ks": ()}, "ks is empty"),
        (np.ones((2, 2)), np.ones((2, 2)), {"chunk_size": 0}, "chunk_size"),
    ],
)
def test_retrieval_validation(queries, items, kwargs, match):
    with pytest.raises(ContrastkitError, match=match):
        retrieval_metrics(queries, items, **kwargs)


def test_single_ks_integer_is_accepted():
    assert retrieval_metrics(S, EYE, ks=2)["recall@2"] == pytest.approx(2 / 3)


def _angle(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_zero_shot_constructed_case():
    classes = np.array([_angle(0), _angle(120), _angle(240)])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=60)
    # each point within 50 degrees of its class direction, at a random radius
    angles = labels * 120 + rng.uniform(-50, 50, size=60)
    feats = np.array([_angle(a) for a in angles]) * rng.uniform(0.1, 5, size=(60, 1))
    assert zero_shot_predict(feats, classes).tolist() == labels.tolist()
    assert zero_shot_accuracy(feats, classes, labels) == 1.0
    wrong = labels.copy()
    wrong[:15] = (wrong[:15] + 1) % 3
    assert zero_shot_accuracy(feats, classes, wrong) == pytest.approx(45 / 60)


def test_zero_shot_cosine_versus_dot_and_ties():
    classes = np.array([[10.0, 0.0], [0.0, 1.0]])
    x = np.array([[0.5, 0.6]])
    assert zero_shot_predict(x, classes).tolist() == [1]  # cosine: 0.6 > 0.5 (after /|x|)
    assert zero_shot_predict(x, classes, normalize=False).tolist() == [0]  # dot: 5 > 0.6
    assert zero_shot_predict(np.array([[1.0, 1.0]]), np.eye(2)).tolist() == [0]  # tie -> first


def test_zero_shot_validation():
    with pytest.raises(ContrastkitError, match="dim 3 but class_embeddings have dim 2"):
        zero_shot_predict(np.ones((2, 3)), np.eye(2))
    with pytest.raises(ContrastkitError, match="class 2 but class_embeddings has only 2"):
        zero_shot_accuracy(np.eye(2), np.eye(2), [0, 2])
    with pytest.raises(ContrastkitError, match="3 entries but the matching features have 2"):
        zero_shot_accuracy(np.eye(2), np.eye(2), [0, 1, 1])
    with pytest.raises(ContrastkitError, match="integer class indices"):
        zero_shot_accuracy(np.eye(2), np.eye(2), [0.0, 1.0])


# A fake text encoder with known outputs: the two templates give vectors of different norms, so
# normalising before averaging (CLIP's prompt ensembling) changes the result.
_TABLE = {
    "a cat": [3.0, 0.0, 0.0],
    "the cat": [0.0, 1.0, 0.0],
    "a dog": [0.0, 0.0, 2.0],
    "the dog": [0.0, 4.0, 0.0],
}


def _encode(texts: list[str]) -> np.ndarray:
    return np.array([_TABLE[t] for t in texts])


def test_class_prompt_embeddings_normalise_average_renormalise():
    emb = class_prompt_embeddings(_encode, ["cat", "dog"], ["a {}", "the {}"])
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(emb, [[s, s, 0.0], [0.0, s, s]], atol=1e-6)
    # a plain mean of unnormalised vectors would give [0.95, 0.32, 0] for "cat"
    assert emb[0, 0] == pytest.approx(s)
    # callable templates work like string ones
    same = class_prompt_embeddings(_encode, ["cat", "dog"], [lambda c: f"a {c}", "the {}"])
    np.testing.assert_allclose(same, emb)
    # and the result plugs into zero-shot prediction
    assert zero_shot_predict(np.array([[1.0, 0.1, 0.0], [0.0, 0.1, 1.0]]), emb).tolist() == [0, 1]


def test_class_prompt_embeddings_validation():
    with pytest.raises(ContrastkitError, match="no '\\{\\}'"):
        class_prompt_embeddings(_encode, ["cat"], ["a photo"])
    with pytest.raises(ContrastkitError, match="repeats 'cat'"):
        class_prompt_embeddings(_encode, ["cat", "cat"], ["a {}"])
    with pytest.raises(ContrastkitError, match="non-empty list of class names"):
        class_prompt_embeddings(_encode, [], ["a {}"])
    with pytest.raises(ContrastkitError, match="templates must be"):
        class_prompt_embeddings(_encode, ["cat"], "a {}")
    with pytest.raises(ContrastkitError, match="one embedding row per text"):
        class_prompt_embeddings(lambda texts: np.ones((1, 3)), ["cat"], ["a {}", "the {}"])
    with pytest.raises(ContrastkitError, match="NaN"):
        class_prompt_embeddings(lambda texts: np.full((1, 3), np.nan), ["cat"], ["a {}"])
    with pytest.raises(ContrastkitError, match="encode must be a function"):
        class_prompt_embeddings(None, ["cat"], ["a {}"])
