"""Tests for contrastkit.eval.similarity on the real WordSim-353, SimLex-999 and Lee files."""

from __future__ import annotations

import importlib
from collections import defaultdict

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors
from gensim.test.utils import datapath
from scipy import stats
from sklearn.feature_extraction.text import TfidfVectorizer

from contrastkit.errors import ContrastkitError
from contrastkit.eval import (
    lee_similarity,
    load_lee,
    load_word_pairs,
    sentence_benchmarks,
    word_similarity,
)

torch.set_num_threads(1)

sim_module = importlib.import_module("contrastkit.eval.similarity")


def _lookup(table: dict[str, np.ndarray]):
    return lambda texts: np.stack([table[t] for t in texts])


def _perfect_encoder(pairs: list[tuple[str, str, float]]):
    """Unit vectors whose cosine for every listed pair is its human score / R² (identical words:
    1): one coordinate per unordered pair, set to 1 in one word and to the score in the other,
    plus one private coordinate per word that pads every norm to R. Two words share no other
    coordinate, so the cosine order is the human order. A pair listed twice (WordSim-353 has
    'money/cash' 9.15 and 9.08) gets the mean of its scores."""
    targets: dict[frozenset, list[float]] = defaultdict(list)
    for w1, w2, s in pairs:
        if w1 != w2:
            targets[frozenset((w1, w2))].append(s)
    words = sorted({w for w1, w2, _ in pairs for w in (w1, w2)})
    index = {w: i for i, w in enumerate(words)}
    keys = sorted(targets, key=sorted)
    x = np.zeros((len(words), len(keys) + len(words)))
    for k, key in enumerate(keys):
        first, second = sorted(key)
        x[index[first], k] = 1.0
        x[index[second], k] = np.mean(targets[key])
    r2 = (x**2).sum(axis=1).max() + 1.0
    x[np.arange(len(words)), len(keys) + np.arange(len(words))] = np.sqrt(r2 - (x**2).sum(axis=1))
    return _lookup({w: x[i] for w, i in index.items()}), targets, r2


@pytest.mark.parametrize(
    ("name", "n", "first"),
    [("wordsim353", 353, ("love", "sex", 6.77)), ("simlex999", 999, ("old", "new", 1.58))],
)
def test_word_pair_loaders(name, n, first):
    w1, w2, scores = load_word_pairs(name)
    assert len(w1) == len(w2) == len(scores) == n
    assert (w1[0], w2[0], scores[0]) == first
    assert scores.dtype == np.float64 and scores.min() >= 0 and scores.max() <= 10
    assert all(w and "\t" not in w and "#" not in w for w in w1 + w2)


def test_word_pair_loader_errors():
    with pytest.raises(ContrastkitError, match="did you mean 'wordsim353'"):
        load_word_pairs("wordsim")


def test_missing_gensim_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sim_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ContrastkitError, match="pip install gensim"):
        load_word_pairs("wordsim353")


def test_lee_loader_matches_the_files():
    docs, human = load_lee()
    assert len(docs) == 50 and all(len(d) > 200 for d in docs)
    assert docs[0].startswith("The national executive of the strife-torn Democrats")
    assert any("£" in d for d in docs)  # the Latin-1 byte 0xA3 decodes to a pound sign
    assert human.shape == (50, 50)
    # the file itself holds the upper triangle and a unit diagonal, zeros below ...
    raw = np.loadtxt(datapath("similarities0-1.txt"))
    assert np.all(np.tril(raw, -1) == 0) and np.all(np.diag(raw) == 1)
    assert np.all(raw[np.triu_indices(50, 1)] > 0)
    # ... which the loader mirrors into a symmetric matrix
    np.testing.assert_array_equal(human, human.T)
    np.testing.assert_array_equal(np.triu(human), raw)
    assert np.all(np.diag(human) == 1) and human.min() >= 0 and human.max() <= 1


@pytest.mark.parametrize("name", ["wordsim353", "simlex999"])
def test_perfect_encoder_gives_spearman_one(name):
    w1, w2, human = load_word_pairs(name)
    encode, targets, r2 = _perfect_encoder(list(zip(w1, w2, human, strict=True)))
    result = word_similarity(encode, name)
    # the model's cosine for each row: mean human score of that unordered pair / R², or 1
    model = np.array(
        [
            1.0 if a == b else np.mean(targets[frozenset((a, b))]) / r2
            for a, b in zip(w1, w2, strict=True)
        ]
    )
    # (spearman only up to rounding: equal human scores give cosines equal up to the last bits,
    # which breaks their ties in some order)
    assert result["spearman"] == pytest.approx(stats.spearmanr(model, human).statistic, abs=1e-4)
    assert result["pearson"] == pytest.approx(stats.pearsonr(model, human).statistic, abs=1e-9)
    assert result["spearman"] > 0.999
    assert result["n"] == len(human)
    # an encoder built from the reversed scores is anti-correlated: the sign is kept
    reverse, _, _ = _perfect_encoder(list(zip(w1, w2, 10.0 - human, strict=True)))
    assert word_similarity(reverse, name)["spearman"] < -0.95  # tiger/tiger stays at cosine 1


@pytest.mark.parametrize("name", ["wordsim353", "simlex999"])
def test_random_encoder_is_uncorrelated(name):
    w1, w2, _ = load_word_pairs(name)
    rng = np.random.default_rng(0)
    table = {w: rng.normal(size=32) for w in sorted(set(w1) | set(w2))}
    result = word_similarity(_lookup(table), name)
    assert abs(result["spearman"]) < 0.15 and abs(result["pearson"]) < 0.15


@pytest.mark.parametrize("name", ["wordsim353", "simlex999"])
def test_matches_gensim_evaluate_word_pairs(name):
    """Cross-check parsing and correlations against gensim's own evaluator, with random vectors for
    all words, then with 30% of the words unknown (zero vectors = gensim's dummy4unknown)."""
    filename = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}[name]
    w1, w2, _ = load_word_pairs(name)
    words = sorted(set(w1) | set(w2))
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(len(words), 16)).astype(np.float32)
    kv = KeyedVectors(vector_size=16)
    kv.add_vectors(words, vectors)
    pearson, spearman, oov = kv.evaluate_word_pairs(datapath(filename), case_insensitive=False)
    assert oov == 0
    ours = word_similarity(lambda t: kv[t], name)
    assert ours["spearman"] == pytest.approx(spearman.statistic, abs=1e-6)
    assert ours["pearson"] == pytest.approx(pearson.statistic, abs=1e-6)

    known = [w for w in words if rng.random() > 0.3]
    kv_part = KeyedVectors(vector_size=16)
    kv_part.add_vectors(known, kv[known])
    pearson, spearman, oov = kv_part.evaluate_word_pairs(
        datapath(filename), case_insensitive=False, dummy4unknown=True
    )
    assert oov > 10
    zeros = np.zeros(16, dtype=np.float32)
    ours = word_similarity(
        lambda t: np.stack([kv_part[w] if kv_part.has_index_for(w) else zeros for w in t]), name
    )
    assert ours["spearman"] == pytest.approx(spearman.statistic, abs=1e-6)
    assert ours["pearson"] == pytest.approx(pearson.statistic, abs=1e-6)


def test_lee_perfect_random_and_tfidf():
    docs, human = load_lee()
    i, j = np.triu_indices(50, 1)
    # perfect: one coordinate per document pair (1 in the first, h_ij in the second) plus a
    # private norm-padding coordinate: cosine = h_ij / R², a linear map of the human score
    x = np.zeros((50, len(i) + 50))
    x[i, np.arange(len(i))] = 1.0
    x[j, np.arange(len(i))] = human[i, j]
    r2 = (x**2).sum(axis=1).max() + 1.0
    x[np.arange(50), len(i) + np.arange(50)] = np.sqrt(r2 - (x**2).sum(axis=1))
    perfect = lee_similarity(_lookup(dict(zip(docs, x, strict=True))))
    assert perfect["pearson"] == pytest.approx(1.0, abs=1e-12)
    assert perfect["spearman"] > 0.995  # many tied human scores, tie order set by rounding
    assert perfect["n"] == 1225
    # the lower triangle is not used: a symmetric model matrix compared on i<j only
    rng = np.random.default_rng(0)
    rand = lee_similarity(_lookup({d: rng.normal(size=64) for d in docs}))
    assert abs(rand["spearman"]) < 0.15 and abs(rand["pearson"]) < 0.15
    # a real bag-of-words baseline agrees with the humans; shuffled documents do not
    tfidf = TfidfVectorizer(stop_words="english").fit(docs)
    real = lee_similarity(lambda d: tfidf.transform(d).toarray())
    assert real["pearson"] > 0.45 and real["spearman"] > 0.2
    table = dict(zip(docs, tfidf.transform(docs).toarray()[rng.permutation(50)], strict=True))
    shuffled = lee_similarity(_lookup(table))
    assert abs(shuffled["pearson"]) < 0.15


def test_sentence_benchmarks_keys_and_values():
    w1, w2, _ = load_word_pairs("wordsim353")
    s1, s2, _ = load_word_pairs("simlex999")
    docs, _ = load_lee()
    rng = np.random.default_rng(2)
    table = {t: rng.normal(size=8) for t in sorted(set(w1 + w2 + s1 + s2 + docs))}
    encode = _lookup(table)
    out = sentence_benchmarks(encode)
    assert list(out) == [
        f"{b}/{k}" for b in ("wordsim353", "simlex999", "lee") for k in ("spearman", "pearson", "n")
    ]
    assert out["wordsim353/spearman"] == word_similarity(encode, "wordsim353")["spearman"]
    assert out["lee/pearson"] == lee_similarity(encode)["pearson"]
    assert (out["wordsim353/n"], out["simlex999/n"], out["lee/n"]) == (353, 999, 1225)


def test_encoder_validation():
    with pytest.raises(ContrastkitError, match="encode must be a function"):
        word_similarity("not a function", "wordsim353")
    with pytest.raises(ContrastkitError, match="one embedding per text"):
        word_similarity(lambda t: np.ones((3, 4)), "wordsim353")
    with pytest.raises(ContrastkitError, match="NaN"):
        lee_similarity(lambda t: np.full((len(t), 4), np.nan))
    with pytest.raises(ContrastkitError, match="2-D"):
        lee_similarity(lambda t: np.ones(len(t)))
    with pytest.raises(ContrastkitError, match="same cosine"):
        lee_similarity(lambda t: np.ones((len(t), 4)))
    calls = iter([np.ones((353, 4)), np.ones((353, 5))])
    with pytest.raises(ContrastkitError, match="dims 4 and 5"):
        word_similarity(lambda t: next(calls), "wordsim353")
