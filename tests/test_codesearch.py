"""Tests for contrastkit.data.codesearch on the real standard library and a hand-written tree."""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import pytest

from contrastkit.data.codesearch import (
    build_code_search_corpus,
    collect_code_pairs,
    corpus_summary,
)
from contrastkit.data.paired import PairedData, PairedSplits
from contrastkit.errors import ContrastkitError

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def stdlib_splits() -> PairedSplits:
    return build_code_search_corpus()


def _parts(splits: PairedSplits):
    return [p for p in (splits.train, splits.valid, splits.test) if p is not None]


def test_stdlib_corpus_is_large_clean_and_split_by_module(stdlib_splits):
    summary = corpus_summary(stdlib_splits)
    assert summary["pairs"] > 1000 and summary["modules"] > 100
    assert summary["test_pairs"] > 50 and summary["valid_pairs"] > 50
    assert 0.6 < summary["train_pairs"] / summary["pairs"] < 0.95
    queries = [q for p in _parts(stdlib_splits) for q in p.a]
    codes = [c for p in _parts(stdlib_splits) for c in p.b]
    assert len(set(queries)) == len(queries)
    assert len({" ".join(c.split()) for c in codes}) == len(codes)
    modules = [set(p.groups) for p in _parts(stdlib_splits)]
    assert not (modules[0] & modules[1]) and not (modules[0] & modules[2])
    assert not (modules[1] & modules[2])
    assert not any(m.split(".")[0] in ("test", "idlelib", "lib2to3") for m in set().union(*modules))
    for query, code in zip(queries, codes, strict=True):
        assert 3 <= len(query.split()) <= 64 and query == " ".join(query.split())
        assert len(code) <= 2000 and sum(1 for line in code.split("\n") if line.strip()) >= 2
        # each code is one complete, dedented function without its docstring
        tree = ast.parse(code)
        assert len(tree.body) == 1
        assert isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef))
        assert ast.get_docstring(tree.body[0]) is None
        assert code.startswith(("def ", "async def "))


def test_stdlib_corpus_is_deterministic(stdlib_splits):
    assert build_code_search_corpus() == stdlib_splits


def test_known_stdlib_function(stdlib_splits):
    # json.dumps: the first paragraph of its docstring is the query, its body is the code
    pairs = {
        q: (c, g) for p in _parts(stdlib_splits) for q, c, g in zip(p.a, p.b, p.groups, strict=True)
    }
    query = "Serialize ``obj`` to a JSON formatted ``str``."
    code, module = pairs[query]
    assert module == "json"
    assert code.startswith("def dumps(obj, *, skipkeys=False,")
    assert "Serialize" not in code and "cls is None" in code


def test_split_does_not_depend_on_root_order():
    roots = [STDLIB / "json", STDLIB / "email", STDLIB / "argparse.py", STDLIB / "http"]
    forward = build_code_search_corpus(roots, seed=1)
    backward = build_code_search_corpus(roots[::-1], seed=1)
    assert forward == backward
    # a nested root adds no duplicates: each file is read once
    nested = build_code_search_corpus([*roots, STDLIB / "email" / "mime"], seed=1)
    for part in ("train", "valid", "test"):
        a, b = getattr(nested, part), getattr(forward, part)
        assert (a.a, a.b, a.groups) == (b.a, b.b, b.groups)
    assert {g.split(".")[0] for p in _parts(forward) for g in p.groups} == {
        "json",
        "email",
        "argparse",
        "http",
    }


def test_max_pairs_samples_each_split_proportionally():
    roots = [STDLIB / "json", STDLIB / "email", STDLIB / "argparse.py", STDLIB / "http"]
    full = build_code_search_corpus(roots, seed=2, fractions=(0.6, 0.2, 0.2))
    capped = build_code_search_corpus(roots, seed=2, fractions=(0.6, 0.2, 0.2), max_pairs=40)
    sizes = corpus_summary(full)
    assert corpus_summary(capped)["pairs"] == 40
    for part in ("train", "valid", "test"):
        big, small = getattr(full, part), getattr(capped, part)
        # the same module split; each split keeps its share of the 40 (largest remainder)
        assert set(small.a) <= set(big.a)
        assert abs(len(small) - 40 * sizes[f"{part}_pairs"] / sizes["pairs"]) < 1
        pairs = dict(zip(big.a, big.b, strict=True))
        assert all(pairs[q] == c for q, c in zip(small.a, small.b, strict=True))
    assert (
        build_code_search_corpus(roots, seed=2, fractions=(0.6, 0.2, 0.2), max_pairs=10**6) == full
    )


MODULE = '''\
"""A module docstring is not a pair."""
import functools


def add(a, b):
    """Add two numbers and return the sum.

    Later paragraphs are not part of the query.
    """

    total = a + b
    return total


def only_doc():
    """This function has only a docstring."""


def just_pass():
    """This function body is only pass."""
    pass


def ellipsis_body():
    """This function body is only an ellipsis."""
    ...


def not_implemented(x):
    """Subclasses must implement this method."""
    raise NotImplementedError("subclass")


def short_doc(x):
    """Too short."""
    return x


def no_doc(x):
    return x


class Greeter:
    """A class docstring is not a pair."""

    @functools.lru_cache
    def greet(self, name):
        """Return   a friendly
        greeting for name."""
        # decorators are left out, comments kept
        return f"Hello, {name}!"

    async def fetch(self, url):
        """Fetch the page at url asynchronously."""
        text = """
a multi-line string at column 0"""
        return await self.get(url, text)


def outer(n):
    """Build a counter function starting at n."""
    def inner():
        """Increment the shared counter by one step."""
        nonlocal n
        n += 1
        return n
    return inner
'''

DUPLICATES = '''\
def add_again(a, b):
    """Add two numbers and return the sum."""
    total = a + b
    return total * 1


def add(a, b):
    """A different description of the same code."""
    total   =   a + b
    return total
'''

EXPECTED = [
    ("Add two numbers and return the sum.", "def add(a, b):\n    total = a + b\n    return total"),
    (
        "Return a friendly greeting for name.",
        "def greet(self, name):\n"
        "    # decorators are left out, comments kept\n"
        '    return f"Hello, {name}!"',
    ),
    (
        "Fetch the page at url asynchronously.",
        'async def fetch(self, url):\n    text = """\na multi-line string at column 0"""\n'
        "    return await self.get(url, text)",
    ),
    (
        "Build a counter function starting at n.",
        "def outer(n):\n"
        "    def inner():\n"
        '        """Increment the shared counter by one step."""\n'
        "        nonlocal n\n"
        "        n += 1\n"
        "        return n\n"
        "    return inner",
    ),
    (
        "Increment the shared counter by one step.",
        "def inner():\n    nonlocal n\n    n += 1\n    return n",
    ),
    ("Déjà vu: decode a Latin-1 source file.", "def latin(x):\n    return x"),
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "pkg" / "tests").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("", encoding="utf-8")
    (root / "pkg" / "mod.py").write_text(MODULE, encoding="utf-8")
    (root / "pkg" / "zdup.py").write_text(DUPLICATES, encoding="utf-8")
    (root / "pkg" / "tests" / "test_mod.py").write_text(
        'def test_add():\n    """A test module is never read."""\n    assert True\n',
        encoding="utf-8",
    )
    (root / "pkg" / "broken.py").write_text(
        'def broken(:\n    """A syntax error skips the file."""\n', encoding="utf-8"
    )
    (root / "pkg" / "binary.py").write_bytes(
        b'def bad():\n    """Invalid UTF-8 \xff\xfe here."""\n    return 1\n'
    )
    (root / "latin.py").write_bytes(
        (
            "# -*- coding: latin-1 -*-\n"
            "def latin(x):\n"
            '    """Déjà vu: decode a Latin-1 source file."""\n'
            "    return x\n"
        ).encode("latin-1")
    )
    return root


def test_hand_written_tree_gives_exactly_the_expected_pairs(tree):
    data, stats = collect_code_pairs([tree])
    # sorted module order (latin < pkg.mod < pkg.zdup), then source order inside a module
    assert list(zip(data.a, data.b, strict=True)) == [EXPECTED[5], *EXPECTED[:5]]
    assert data.groups == ["latin"] + ["pkg.mod"] * 5
    assert stats["files"] == 6  # __init__, mod, zdup, broken, binary, latin; tests/ not walked
    assert stats["files_skipped"] == 2  # the syntax error and the invalid UTF-8
    assert stats["dropped_trivial_body"] == 4  # only_doc, just_pass, ellipsis_body, not_implemented
    assert stats["dropped_query_length"] == 1  # short_doc
    assert stats["dropped_duplicate_query"] == 1  # add_again
    assert stats["dropped_duplicate_code"] == 1  # the second add: same code up to whitespace
    assert stats["pairs"] == 6


def test_filters(tree):
    data, _ = collect_code_pairs([tree], min_query_words=7)
    assert set(data.a) == {
        "Add two numbers and return the sum.",
        "Increment the shared counter by one step.",
        "Build a counter function starting at n.",
        "Déjà vu: decode a Latin-1 source file.",
    }
    data, _ = collect_code_pairs([tree], max_query_words=6)
    assert all(len(q.split()) <= 6 for q in data.a) and "Too short." not in data.a
    data, stats = collect_code_pairs([tree], min_code_lines=4)
    assert all(sum(1 for line in c.split("\n") if line.strip()) >= 4 for c in data.b)
    # add, greet, latin and both functions of zdup (fetch and inner have 4 lines)
    assert stats["dropped_code_lines"] == 5
    data, stats = collect_code_pairs([tree], max_code_chars=60)
    assert all(len(c) <= 60 for c in data.b) and stats["dropped_code_chars"] > 0


def test_build_on_tree_and_single_file_root(tree):
    splits = build_code_search_corpus([tree], fractions=(1.0, 0.0, 0.0))
    assert splits.valid is None and len(splits.test) == 0
    data, _ = collect_code_pairs([tree])
    assert splits.train == data
    single, _ = collect_code_pairs([tree / "pkg" / "mod.py"])
    assert set(single.groups) == {"mod"} and len(single) == 5
    # a one-module corpus cannot fill a test split
    with pytest.raises(ContrastkitError, match="too few to give the"):
        build_code_search_corpus([tree / "pkg" / "mod.py"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"roots": []}, "non-empty list"),
        ({"roots": ["/no/such/folder"]}, "neither a folder nor a .py file"),
        ({"roots": [3]}, "must be a path"),
        ({"min_query_words": 0}, "min_query_words must be a positive integer"),
        ({"max_code_chars": 1.5}, "max_code_chars must be a positive integer"),
        ({"min_query_words": 9, "max_query_words": 3}, "larger than max_query_words"),
        ({"max_pairs": 0}, "max_pairs must be a positive integer"),
        ({"fractions": (0.5, 0.6)}, "fractions must be"),
    ],
)
def test_argument_errors(tree, kwargs, match):
    kwargs.setdefault("roots", [tree])
    with pytest.raises(ContrastkitError, match=match):
        build_code_search_corpus(**kwargs)


def test_no_documented_functions(tmp_path):
    (tmp_path / "plain.py").write_text("def f(x):\n    return x\n", encoding="utf-8")
    with pytest.raises(ContrastkitError, match="Found 0 documented functions"):
        build_code_search_corpus([tmp_path])


def test_corpus_summary_counts():
    splits = PairedSplits(
        train=PairedData(a=["q1", "q2", "q3"], b=["c1", "c2", "c3"], groups=["m", "m", "n"]),
        valid=None,
        test=PairedData(a=["q4"], b=["c4"], groups=["o"]),
    )
    assert corpus_summary(splits) == {
        "train_pairs": 3,
        "train_modules": 2,
        "valid_pairs": 0,
        "valid_modules": 0,
        "test_pairs": 1,
        "test_modules": 1,
        "pairs": 4,
        "modules": 3,
    }
    with pytest.raises(ContrastkitError, match="needs PairedSplits"):
        corpus_summary([1, 2])
