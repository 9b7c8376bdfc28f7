"""Word and document similarity benchmarks on the files gensim ships in ``gensim/test/test_data``.

* WordSim-353 (Finkelstein et al. 2002, "Placing search in context", 353 word pairs, human
  relatedness 0–10) and SimLex-999 (Hill, Reichart & Korhonen 2015, 999 pairs, human
  similarity 0–10): Spearman's ρ (the papers' measure) and Pearson's r between the cosine of the
  two words' embeddings and the human score, as gensim's ``KeyedVectors.evaluate_word_pairs``.
* The Lee corpus (Lee, Pincombe & Welsh 2005, "An empirical evaluation of models of text
  document similarity"): 50 news documents and their mean human pairwise similarity in
  ``[0, 1]``; compared on the 1225 pairs ``i < j`` (the file stores only that upper triangle and
  the unit diagonal), as in gensim's Lee-corpus tutorial.

``encode`` is any function from a list of texts to an ``[n, D]`` array (torch or numpy), e.g. a
sentence-transformers model's ``encode``. Cosines of zero vectors are 0 (an encoder may map
unknown words to zeros: this equals gensim's ``dummy4unknown=True``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from contrastkit.errors import ContrastkitError, unknown_name
from contrastkit.eval.inputs import check_features

__all__ = [
    "WORD_PAIR_SETS",
    "lee_similarity",
    "load_lee",
    "load_word_pairs",
    "sentence_benchmarks",
    "word_similarity",
]

#: name → (file in gensim/test/test_data, number of pairs it holds)
WORD_PAIR_SETS = {"wordsim353": ("wordsim353.tsv", 353), "simlex999": ("simlex999.txt", 999)}
_LEE_DOCS, _LEE_MATRIX, _LEE_N = "lee.cor", "similarities0-1.txt", 50

Encoder = Callable[[list[str]], Any]


def _data_file(name: str) -> Path:
    """The path of ``name`` in gensim's test data (found without importing gensim)."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise ContrastkitError(
            "The similarity benchmarks read their data from gensim's test files; install it with "
            "`pip install gensim`."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data" / name
    if not path.is_file():
        raise ContrastkitError(
            f"gensim is installed but its test file {name} is missing ({path}); reinstall it "
            "with `pip install --force-reinstall gensim`."
        )
    return path


def load_word_pairs(name: str) -> tuple[list[str], list[str], np.ndarray]:
    """``(first words, second words, human scores)`` of ``"wordsim353"`` or ``"simlex999"``.

    The files are tab-separated ``word1, word2, score`` lines after ``#`` comment lines (the
    format ``KeyedVectors.evaluate_word_pairs`` reads); scores are float64 in ``[0, 10]``.
    """
    if name not in WORD_PAIR_SETS:
        raise unknown_name("word similarity benchmark", str(name), WORD_PAIR_SETS)
    filename, expected = WORD_PAIR_SETS[name]
    path = _data_file(filename)
    first, second, scores = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        try:
            if len(fields) != 3:
                raise ValueError
            w1, w2, score = fields[0].strip(), fields[1].strip(), float(fields[2])
        except ValueError:
            raise ContrastkitError(
                f"Line {number} of {path} is not 'word<TAB>word<TAB>score'; reinstall gensim "
                "to restore the file."
            ) from None
        first.append(w1)
        second.append(w2)
        scores.append(score)
    if len(scores) != expected:
        raise ContrastkitError(
            f"{path} holds {len(scores)} pairs instead of {expected}; reinstall gensim to "
            "restore the file."
        )
    return first, second, np.asarray(scores, dtype=np.float64)


def load_lee() -> tuple[list[str], np.ndarray]:
    """The 50 Lee documents and their ``[50, 50]`` mean human similarity matrix (float64).

    ``lee.cor`` holds one document per line (Latin-1: it contains a byte 0xA3, "£");
    ``similarities0-1.txt`` holds the upper triangle with a unit diagonal and zeros below, which
    is mirrored here, so the returned matrix is symmetric with ones on the diagonal.
    """
    docs_path, matrix_path = _data_file(_LEE_DOCS), _data_file(_LEE_MATRIX)
    raw = docs_path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    docs = [line.strip() for line in text.splitlines() if line.strip()]
    matrix = np.loadtxt(matrix_path, dtype=np.float64)
    if len(docs) != _LEE_N or matrix.shape != (_LEE_N, _LEE_N):
        raise ContrastkitError(
            f"The Lee corpus files hold {len(docs)} documents and a {matrix.shape} matrix instead "
            f"of {_LEE_N} and ({_LEE_N}, {_LEE_N}); reinstall gensim to restore them."
        )
    upper = np.triu(matrix, k=1)
    return docs, upper + upper.T + np.diag(np.diag(matrix))


def _embed(encode: Encoder, texts: list[str], what: str) -> torch.Tensor:
    if not callable(encode):
        raise ContrastkitError(
            f"encode must be a function from a list of texts to embeddings, got {encode!r}."
        )
    emb = check_features(encode(list(texts)), f"encode({what})")
    if len(emb) != len(texts):
        raise ContrastkitError(
            f"encode returned {len(emb)} rows for {len(texts)} {what}; it must return one "
            "embedding per text, in order."
        )
    return emb.detach().cpu().double()


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit norm; zero rows stay zero (their cosine with anything is 0)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def _correlations(model: np.ndarray, human: np.ndarray, what: str) -> dict[str, float]:
    if np.ptp(model) == 0:
        raise ContrastkitError(
            f"The encoder gives every pair of {what} the same cosine ({model[0]:.4g}), so the "
            "correlations are undefined; check that encode returns distinct embeddings."
        )
    return {
        "spearman": float(stats.spearmanr(model, human).statistic),
        "pearson": float(stats.pearsonr(model, human).statistic),
        "n": float(len(human)),
    }


def word_similarity(encode: Encoder, name: str) -> dict[str, float]:
    """Spearman and Pearson correlation of embedding cosines with human word-pair scores.

    ``encode`` is called twice: on the first words and on the second words of the ``name``
    benchmark (:func:`load_word_pairs`), in file order. Returns ``spearman``, ``pearson`` and
    ``n`` (pairs used: all of them).
    """
    first, second, human = load_word_pairs(name)
    u = _unit(_embed(encode, first, f"{name} first words"))
    v = _unit(_embed(encode, second, f"{name} second words"))
    if u.shape[1] != v.shape[1]:
        raise ContrastkitError(
            f"encode returned dims {u.shape[1]} and {v.shape[1]} for the two word lists; it must "
            "embed every text into one space."
        )
    return _correlations((u * v).sum(dim=1).numpy(), human, f"{name} words")


def lee_similarity(encode: Encoder) -> dict[str, float]:
    """Spearman and Pearson correlation of document cosines with the Lee human similarities.

    ``encode`` is called once on the 50 documents; the 1225 pairs ``i < j`` (upper triangle)
    are compared. Returns ``spearman``, ``pearson`` and ``n`` (1225).
    """
    docs, human = load_lee()
    z = _unit(_embed(encode, docs, "Lee documents"))
    i, j = np.triu_indices(len(docs), k=1)
    cos = (z @ z.T).numpy()
    return _correlations(cos[i, j], human[i, j], "Lee documents")


def sentence_benchmarks(encode: Encoder) -> dict[str, float]:
    """WordSim-353, SimLex-999 and Lee, keys such as ``"wordsim353/spearman"``, ``"lee/n"``."""
    results = {name: word_similarity(encode, name) for name in WORD_PAIR_SETS}
    results["lee"] = lee_similarity(encode)
    return {f"{bench}/{key}": value for bench, res in results.items() for key, value in res.items()}
