"""A real code-search corpus from the running Python installation (CodeSearchNet-style pairs).

CodeSearchNet (Husain et al. 2019, "CodeSearchNet Challenge", §2.1) pairs each documented
function with the first paragraph of its docstring as the natural-language query, and the
function's code with the docstring removed as the target; CoCoSoDa (spec B §11) trains on those
pairs. Here the functions come from the standard library (or any folders of ``.py`` files), so
the corpus is real code, needs no download, and is deterministic for a given Python build.

Extraction (``ast``): every ``def`` / ``async def`` at any depth (methods and nested functions
included) with a docstring. query = the docstring's first paragraph (``ast.get_docstring`` with
``clean=True``, cut at the first blank line, whitespace collapsed); code = the source from the
``def`` line to the end of the body (decorators left out), with the docstring's lines removed and
the function's indentation removed. Pairs are grouped by module and split by module, so no module
is in two splits.
"""

from __future__ import annotations

import ast
import logging
import numbers
import os
import re
import sysconfig
import tokenize
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contrastkit.data.paired import PairedData, PairedSplits, split_pairs
from contrastkit.errors import ContrastkitError

__all__ = [
    "SKIP_DIRS",
    "build_code_search_corpus",
    "collect_code_pairs",
    "corpus_summary",
]

logger = logging.getLogger(__name__)

#: Directory names that are not walked below a root: tests, the IDLE GUI, the deprecated 2to3
#: tool, installed third-party packages and byte-code caches (hidden directories are skipped too).
SKIP_DIRS = frozenset(
    {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "__pycache__"}
)

_PARAGRAPH = re.compile(r"\n[ \t]*\n")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ContrastkitError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _check_roots(roots: Any) -> list[Path]:
    if roots is None:
        return [Path(sysconfig.get_paths()["stdlib"])]
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    if not isinstance(roots, Sequence) or not roots:
        raise ContrastkitError(
            f"roots must be a non-empty list of folders of .py files (or None for the standard "
            f"library), got {roots!r}."
        )
    out = []
    for root in roots:
        if not isinstance(root, (str, os.PathLike)):
            raise ContrastkitError(f"Each root must be a path, got {type(root).__name__}.")
        path = Path(root).expanduser()
        if not (path.is_dir() or (path.is_file() and path.suffix == ".py")):
            raise ContrastkitError(
                f"Code-search root {path} is neither a folder nor a .py file; check the path."
            )
        out.append(path)
    return out


def _module_files(roots: list[Path]) -> list[tuple[str, Path]]:
    """``(dotted module name, file)`` for every ``.py`` file, sorted, each file once."""
    found: set[tuple[str, Path]] = set()
    for root in roots:
        if root.is_file():
            found.add((root.stem, root.resolve()))
            continue
        prefix = [root.name] if (root / "__init__.py").is_file() else []
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")]
            rel = Path(folder).relative_to(root).parts
            for file in files:
                if not file.endswith(".py") or file.startswith("."):
                    continue
                parts = [*prefix, *rel, file[:-3]]
                if parts[-1] == "__init__":
                    parts.pop()
                name = ".".join(parts) or root.name
                found.add((name, (Path(folder) / file).resolve()))
    # A file reachable from two roots (nested roots) keeps its smallest module name, so the
    # result does not depend on the order of the roots.
    seen: set[Path] = set()
    out = []
    for name, path in sorted(found, key=lambda item: (item[0], str(item[1]))):
        if path not in seen:
            seen.add(path)
            out.append((name, path))
    return out


def _is_trivial(stmt: ast.stmt) -> bool:
    """``pass``, ``...`` or ``raise NotImplementedError[(...)]``."""
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return stmt.value.value is Ellipsis
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def _cut(line: str, start: int | None = None, end: int | None = None) -> str:
    """``line`` sliced by UTF-8 byte offsets, as ``ast`` column offsets are."""
    return line.encode("utf-8")[start:end].decode("utf-8")


def _function_code(node: _Function, lines: list[str]) -> str | None:
    """The source of ``node`` from its ``def`` line, without its docstring, dedented.

    Written by hand instead of ``ast.get_source_segment`` because that re-splits the whole file
    on every call (about 50 s for the standard library instead of well under one).
    ``None`` when the def or its docstring shares a line with other code.
    """
    doc = node.body[0]
    if node.end_lineno is None or node.end_col_offset is None or doc.end_lineno is None:
        return None
    first, last = node.lineno - 1, node.end_lineno - 1
    indent = _cut(lines[first], end=node.col_offset)
    if indent.strip() or doc.lineno == node.lineno:
        return None
    if _cut(lines[doc.lineno - 1], end=doc.col_offset).strip():
        return None
    rest = _cut(lines[doc.end_lineno - 1], start=doc.end_col_offset or 0).strip()
    if rest and not rest.startswith("#"):
        return None
    segment = lines[first : last + 1]
    segment[-1] = _cut(segment[-1], end=node.end_col_offset)
    keep = segment[: doc.lineno - 1 - first]
    after = segment[doc.end_lineno - first :]
    while after and not after[0].strip():
        after.pop(0)
    # Remove exactly the def line's indentation (textwrap.dedent would dedent nothing when a
    # multi-line string in the body starts at column 0).
    code = [line[len(indent) :] if line.startswith(indent) else line for line in keep + after]
    return "\n".join(code).rstrip()


_Function = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(body: list[ast.stmt]) -> list[_Function]:
    """Every function definition in ``body`` at any depth, in source order.

    Hand-written instead of ``ast.walk``: functions are statements, so only statement lists need
    walking, which halves the time on the standard library (``ast.walk`` visits every
    expression node too).
    """
    out: list[_Function] = []
    stack = list(reversed(body))
    while stack:
        stmt = stack.pop()
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append(stmt)
        children: list[ast.stmt] = []
        for field in ("body", "handlers", "orelse", "finalbody", "cases"):
            for child in getattr(stmt, field, None) or ():
                if isinstance(child, ast.stmt):
                    children.append(child)
                elif isinstance(child, (ast.ExceptHandler, ast.match_case)):
                    children.extend(child.body)
        stack.extend(reversed(children))
    return out


def _file_pairs(
    source: str, min_words: int, max_words: int, min_lines: int, max_chars: int, stats: dict
) -> list[tuple[str, str]]:
    tree = ast.parse(source)
    lines = source.split("\n")  # ast counts lines by \n only (the file was read with newline=None)
    pairs = []
    for node in _functions(tree.body):
        stats["functions"] += 1
        doc = ast.get_docstring(node, clean=True)
        if not doc:
            continue
        stats["with_docstring"] += 1
        query = " ".join(_PARAGRAPH.split(doc.strip(), maxsplit=1)[0].split())
        if not min_words <= len(query.split()) <= max_words:
            stats["dropped_query_length"] += 1
            continue
        if all(_is_trivial(stmt) for stmt in node.body[1:]):
            stats["dropped_trivial_body"] += 1
            continue
        code = _function_code(node, lines)
        if code is None:
            stats["dropped_inline"] += 1
            continue
        if sum(1 for line in code.split("\n") if line.strip()) < min_lines:
            stats["dropped_code_lines"] += 1
            continue
        if len(code) > max_chars:
            stats["dropped_code_chars"] += 1
            continue
        pairs.append((query, code))
    return pairs


def collect_code_pairs(
    roots: Sequence[str | Path] | None = None,
    *,
    min_query_words: int = 3,
    max_query_words: int = 64,
    min_code_lines: int = 2,
    max_code_chars: int = 2000,
) -> tuple[PairedData, dict[str, int]]:
    """All (query, code) pairs under ``roots`` (unsplit) and counts of what was kept and why not.

    ``a`` = queries, ``b`` = codes, ``groups`` = dotted module names; pairs are in sorted module
    order, then source order. Files that cannot be read or parsed are skipped and counted in
    ``stats["files_skipped"]``. Exact duplicate codes (after whitespace normalisation) and exact
    duplicate queries are dropped, keeping the first. See :func:`build_code_search_corpus`.
    """
    paths = _check_roots(roots)
    min_words = _positive_int("min_query_words", min_query_words)
    max_words = _positive_int("max_query_words", max_query_words)
    min_lines = _positive_int("min_code_lines", min_code_lines)
    max_chars = _positive_int("max_code_chars", max_code_chars)
    if min_words > max_words:
        raise ContrastkitError(
            f"min_query_words ({min_words}) is larger than max_query_words ({max_words}); "
            "swap them."
        )
    stats = dict.fromkeys(
        (
            "files",
            "files_skipped",
            "functions",
            "with_docstring",
            "dropped_query_length",
            "dropped_trivial_body",
            "dropped_inline",
            "dropped_code_lines",
            "dropped_code_chars",
            "dropped_duplicate_code",
            "dropped_duplicate_query",
            "pairs",
        ),
        0,
    )
    queries: list[str] = []
    codes: list[str] = []
    groups: list[str] = []
    seen_codes: set[str] = set()
    seen_queries: set[str] = set()
    for module, path in _module_files(paths):
        stats["files"] += 1
        try:
            with tokenize.open(path) as f:  # honours PEP 263 coding cookies
                source = f.read()
            pairs = _file_pairs(source, min_words, max_words, min_lines, max_chars, stats)
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
            # unreadable, undecodable, invalid syntax, null bytes (ValueError before 3.12)
            stats["files_skipped"] += 1
            continue
        for query, code in pairs:
            key = " ".join(code.split())
            if key in seen_codes:
                stats["dropped_duplicate_code"] += 1
            elif query in seen_queries:
                stats["dropped_duplicate_query"] += 1
            else:
                seen_codes.add(key)
                seen_queries.add(query)
                queries.append(query)
                codes.append(code)
                groups.append(module)
    stats["pairs"] = len(queries)
    name = "codesearch:" + ",".join(sorted({str(p.resolve()) for p in paths}))
    return PairedData(a=queries, b=codes, groups=groups, name=name), stats


def _cap(splits: PairedSplits, max_pairs: int, seed: int) -> PairedSplits:
    """Sample ``max_pairs`` pairs in all, each split keeping its share (largest remainder)."""
    parts = [splits.train, splits.valid, splits.test]
    sizes = np.array([0 if p is None else len(p) for p in parts])
    total = int(sizes.sum())
    if max_pairs >= total:
        return splits
    quota = sizes * max_pairs / total
    take = np.floor(quota).astype(int)
    for k in np.argsort(-(quota - take), kind="stable")[: max_pairs - int(take.sum())]:
        take[k] += 1
    rng = np.random.default_rng(seed)
    out = [
        None if p is None else p.subset(np.sort(rng.choice(len(p), size=t, replace=False)))
        for p, t in zip(parts, take, strict=True)
    ]
    return PairedSplits(train=out[0], valid=out[1], test=out[2])


def build_code_search_corpus(
    roots: Sequence[str | Path] | None = None,
    *,
    min_query_words: int = 3,
    max_query_words: int = 64,
    min_code_lines: int = 2,
    max_code_chars: int = 2000,
    max_pairs: int | None = None,
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
) -> PairedSplits:
    """(query, code) pairs from the ``.py`` files under ``roots``, split by module.

    Args:
        roots: folders (or single ``.py`` files) to walk; default: the standard library
            (``sysconfig.get_paths()["stdlib"]``). Sub-folders named in :data:`SKIP_DIRS` and
            hidden ones are not walked; files are visited in sorted module order.
        min_query_words, max_query_words: inclusive range of the query's word count.
        min_code_lines: least number of non-blank code lines (the ``def`` line counts).
        max_code_chars: most characters of code (after the docstring is removed).
        max_pairs: when given, a seeded sample of this many pairs drawn *after* the split, each
            split keeping its share, so the module split is the same with and without a cap.
        seed: seeds the split and the ``max_pairs`` sample.
        fractions: (train, valid, test) shares of the pairs; see
            :func:`~contrastkit.data.paired.split_pairs` (whole modules go to one split).

    Functions whose body (after the docstring) is empty or only ``pass``, ``...`` or
    ``raise NotImplementedError`` are skipped, as are functions whose ``def`` line or
    docstring shares a line with other code. ``a`` = queries, ``b`` = codes, ``groups`` =
    modules. :func:`collect_code_pairs` gives the unsplit pairs and the counts of what was
    dropped; those counts are logged at INFO level here.
    """
    if max_pairs is not None:
        max_pairs = _positive_int("max_pairs", max_pairs)
    data, stats = collect_code_pairs(
        roots,
        min_query_words=min_query_words,
        max_query_words=max_query_words,
        min_code_lines=min_code_lines,
        max_code_chars=max_code_chars,
    )
    logger.info("code-search corpus %s: %s", data.name, stats)
    if len(data) < 2:
        raise ContrastkitError(
            f"Found {len(data)} documented functions under {data.name.split(':', 1)[1]} "
            f"({stats['files']} files, {stats['files_skipped']} unreadable); point roots at "
            "folders with documented Python code or relax the filters."
        )
    splits = split_pairs(data, fractions=fractions, seed=seed, by_group=True)
    return splits if max_pairs is None else _cap(splits, max_pairs, seed)


def corpus_summary(splits: PairedSplits) -> dict[str, int]:
    """Pairs and distinct groups (modules) per split, and in all.

    Keys: ``train_pairs``, ``valid_pairs``, ``test_pairs``, ``pairs``, ``train_modules``,
    ``valid_modules``, ``test_modules``, ``modules`` (a missing valid split counts 0).
    """
    if not isinstance(splits, PairedSplits):
        raise ContrastkitError(f"corpus_summary needs PairedSplits, got {type(splits).__name__}.")
    out: dict[str, int] = {}
    modules: set[str] = set()
    for part in ("train", "valid", "test"):
        data = getattr(splits, part)
        groups = set() if data is None or data.groups is None else set(data.groups)
        modules |= groups
        out[f"{part}_pairs"] = 0 if data is None else len(data)
        out[f"{part}_modules"] = len(groups)
    out["pairs"] = out["train_pairs"] + out["valid_pairs"] + out["test_pairs"]
    out["modules"] = len(modules)
    return out
