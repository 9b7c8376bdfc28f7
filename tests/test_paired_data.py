"""Tests for contrastkit.data.paired: paired CSV/TSV, captioned folders and grouped splits."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contrastkit.data.paired import (
    PairedData,
    PairedSplits,
    load_captioned_folder,
    load_pairs_csv,
    resolve_paths,
    split_pairs,
)
from contrastkit.errors import ContrastkitError

ROWS = [
    ["images/a.png", "A cat, sitting on a mat.", "pets"],
    ["images/b.png", 'A "quoted" dog\nover two lines', "pets"],
    ["images/c.png", "  a red car  ", "cars"],
]


def _write(
    path: Path, rows: list[list[str]], delimiter: str = ",", header=("filepath", "title", "group")
) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------------------------------------
# CSV / TSV


def test_csv_round_trip_default_columns(tmp_path):
    data = load_pairs_csv(_write(tmp_path / "pairs.csv", ROWS))
    assert data.a == ["images/a.png", "images/b.png", "images/c.png"]
    assert data.b == ["A cat, sitting on a mat.", 'A "quoted" dog\nover two lines', "a red car"]
    assert data.groups is None and len(data) == 3
    assert data.name == str(tmp_path / "pairs.csv")


def test_tsv_sep_from_extension_and_column_selection(tmp_path):
    path = _write(tmp_path / "pairs.tsv", ROWS, delimiter="\t")
    data = load_pairs_csv(path, "title", "filepath", group_column="group")
    assert data.a[0] == "A cat, sitting on a mat." and data.b[0] == "images/a.png"
    assert data.groups == ["pets", "pets", "cars"]
    # read as comma-separated, the tab file has one column
    with pytest.raises(ContrastkitError, match="1 column with sep=','"):
        load_pairs_csv(path, sep=",")


def test_explicit_sep_bom_and_blank_lines(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text(
        "\ufeffcaption;image\n\nhello there;x.png\n\n  ;\nbye now;y.png\n", encoding="utf-8"
    )
    with pytest.raises(ContrastkitError, match=r"Line 5 of .* empty 'caption' cell"):
        load_pairs_csv(path, sep=";")
    path.write_text("\ufeffcaption;image\n\nhello there;x.png\n\nbye now;y.png\n", encoding="utf-8")
    data = load_pairs_csv(path, sep=";")
    assert data.a == ["hello there", "bye now"] and data.b == ["x.png", "y.png"]


@pytest.mark.parametrize(
    ("content", "kwargs", "match"),
    [
        (None, {}, "no such file"),
        ("filepath,title\n", {}, "holds 0 pairs"),
        ("filepath,title\nx.png,one\n", {}, "holds 1 pairs .* at least 2"),
        ("", {}, "is empty"),
        ("filepath,title\nx.png,one\ny.png,two\n", {"b_column": "titel"}, "did you mean 'title'"),
        ("filepath,title\nx.png,one\ny.png,two\n", {"a_column": "path"}, "no column 'path'"),
        ("filepath,title\nx.png,one\ny.png,two\n", {"group_column": "grp"}, "group_column"),
        ("filepath,title\nx.png,one\ny.png,\n", {}, "Line 3 .* empty 'title' cell"),
        ("filepath,title\nx.png,one\ny.png\n", {}, "Line 3 .* empty 'title' cell"),
        ("filepath,title\nx.png,one\ny.png,two\n", {"b_column": "filepath"}, "both 'filepath'"),
        ("filepath,title\nx.png,one\ny.png,two\n", {"sep": ",,"}, "one character"),
        (",title\nx.png,one\ny.png,two\n", {}, "column 1 has no name"),
        ("title,title\nx.png,one\ny.png,two\n", {}, "'title' appears twice"),
        ("filepath,title\nx.png,one\n,\ny.png,two\n", {}, "Line 3 .* empty 'filepath' cell"),
    ],
)
def test_csv_errors(tmp_path, content, kwargs, match):
    path = tmp_path / "pairs.csv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ContrastkitError, match=match):
        load_pairs_csv(path, **kwargs)


def test_csv_not_utf8_and_directory(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("a,b\ncaf\xe9,x\nthé,y\n".encode("latin-1"))
    with pytest.raises(ContrastkitError, match="not UTF-8"):
        load_pairs_csv(path)
    with pytest.raises(ContrastkitError, match="directory"):
        load_pairs_csv(tmp_path)


def test_resolve_paths(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / "images" / name).write_bytes(b"")
    data = load_pairs_csv(_write(tmp_path / "pairs.csv", ROWS))
    resolved = resolve_paths(data, "a", tmp_path)
    assert resolved.a == [
        str((tmp_path / "images" / n).resolve()) for n in ("a.png", "b.png", "c.png")
    ]
    assert resolved.b == data.b and resolved.name == data.name
    # absolute paths stay as they are; column b works the same way
    swapped = PairedData(a=data.b, b=resolved.a)
    assert resolve_paths(swapped, column="b", root=tmp_path / "images").b == resolved.a
    # a relative root is resolved against the current directory by default
    with pytest.raises(ContrastkitError, match=r"3 of 3 files in column 'a'.*images/a.png"):
        resolve_paths(data, "a", tmp_path / "images")
    (tmp_path / "images" / "b.png").unlink()
    with pytest.raises(ContrastkitError, match=r"1 of 3 files .* 'images/b.png'"):
        resolve_paths(data, "a", tmp_path)
    with pytest.raises(ContrastkitError, match="'a' or 'b'"):
        resolve_paths(data, "c", tmp_path)
    with pytest.raises(ContrastkitError, match="not a directory"):
        resolve_paths(data, "a", tmp_path / "nowhere")
    arrays = PairedData(a=[np.zeros((2, 2, 3))] * 2, b=["x", "y"])
    with pytest.raises(ContrastkitError, match="ndarray items, not paths"):
        resolve_paths(arrays, "a", tmp_path)


def test_resolve_paths_default_root_is_cwd(tmp_path, monkeypatch):
    (tmp_path / "x.png").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    data = PairedData(a=["x.png"], b=["a caption"])
    assert resolve_paths(data).a == [str((tmp_path / "x.png").resolve())]


# ---------------------------------------------------------------------------------------------
# Captioned folder


def _captioned(tmp_path: Path) -> Path:
    root = tmp_path / "captioned"
    (root / "sub").mkdir(parents=True)
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    Image.fromarray(rgb).save(root / "b_rgb.png")
    (root / "b_rgb.txt").write_text("  an rgb gradient\n", encoding="utf-8")
    gray = np.array([[0, 128], [255, 7]], dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(root / "a_gray.png")
    (root / "a_gray.txt").write_text("a gray square", encoding="utf-8")
    rgba = np.zeros((3, 3, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 100
    Image.fromarray(rgba, mode="RGBA").save(root / "sub" / "c_rgba.PNG")
    (root / "sub" / "c_rgba.txt").write_text("a translucent red square", encoding="utf-8")
    (root / "notes.txt").write_text("a caption file without image is ignored", encoding="utf-8")
    (root / ".hidden.png").write_bytes(b"not an image")  # hidden files are skipped
    return root


def test_captioned_folder(tmp_path):
    data = load_captioned_folder(_captioned(tmp_path))
    assert data.b == ["a gray square", "an rgb gradient", "a translucent red square"]
    assert [x.shape for x in data.a] == [(2, 2, 3), (4, 5, 3), (3, 3, 3)]
    assert all(x.dtype == np.uint8 for x in data.a)
    # grayscale is replicated into three channels, RGB is read back exactly, alpha is dropped
    np.testing.assert_array_equal(
        data.a[0], np.repeat(np.array([[0, 128], [255, 7]])[..., None], 3, axis=2)
    )
    np.testing.assert_array_equal(data.a[1], np.arange(60, dtype=np.uint8).reshape(4, 5, 3))
    np.testing.assert_array_equal(data.a[2][..., 0], 200)
    np.testing.assert_array_equal(data.a[2][..., 1:], 0)
    assert data.groups is None and len(data) == 3


def test_captioned_folder_errors(tmp_path):
    root = _captioned(tmp_path)
    (root / "a_gray.txt").unlink()
    with pytest.raises(ContrastkitError, match=r"a_gray.png has no caption file a_gray.txt"):
        load_captioned_folder(root)
    (root / "a_gray.txt").write_text(" \n", encoding="utf-8")
    with pytest.raises(ContrastkitError, match=r"a_gray.txt is empty"):
        load_captioned_folder(root)
    (root / "a_gray.txt").write_text("fine again", encoding="utf-8")
    (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "broken.txt").write_text("a broken image", encoding="utf-8")
    with pytest.raises(ContrastkitError, match=r"Cannot read image file .*broken.jpg"):
        load_captioned_folder(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "caption.txt").write_text("orphan caption", encoding="utf-8")
    with pytest.raises(ContrastkitError, match="holds no images"):
        load_captioned_folder(empty)
    with pytest.raises(ContrastkitError, match="No directory"):
        load_captioned_folder(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------
# PairedData and split_pairs


def test_paired_data_validation_and_subset():
    data = PairedData(
        a=("q1", "q2", "q3"), b=["c1", "c2", "c3"], groups=["m", "m", "n"], name="toy"
    )
    assert isinstance(data.a, list) and len(data) == 3
    sub = data.subset([2, 0])
    assert (sub.a, sub.b, sub.groups, sub.name) == (["q3", "q1"], ["c3", "c1"], ["n", "m"], "toy")
    assert len(data.subset(np.array([], dtype=np.int64))) == 0
    assert len(data.subset([])) == 0
    with pytest.raises(ContrastkitError, match="index 3 is out of range for 3 pairs"):
        data.subset([0, 3])
    with pytest.raises(ContrastkitError, match="integers"):
        data.subset([0.5])
    with pytest.raises(ContrastkitError, match="2 items in a but 1 in b"):
        PairedData(a=["x", "y"], b=["z"])
    with pytest.raises(ContrastkitError, match="1 groups for 2 pairs"):
        PairedData(a=["x", "y"], b=["z", "w"], groups=["g"])
    with pytest.raises(ContrastkitError, match="list of strings"):
        PairedData(a=["x", "y"], b=["z", "w"], groups=[1, 2])
    with pytest.raises(ContrastkitError, match="must be a list of items"):
        PairedData(a="xy", b=["z", "w"])


def _grouped(n_groups: int, per_group: int) -> PairedData:
    groups = [f"g{g:03d}" for g in range(n_groups) for _ in range(per_group)]
    return PairedData(
        a=[f"q{i}" for i in range(len(groups))],
        b=[f"c{i}" for i in range(len(groups))],
        groups=groups,
    )


def _assignment(splits: PairedSplits) -> dict[str, str]:
    return {
        q: part
        for part in ("train", "valid", "test")
        if getattr(splits, part) is not None
        for q in getattr(splits, part).a
    }


def test_split_pairs_grouped():
    data = _grouped(100, 3)
    splits = split_pairs(data, fractions=(0.8, 0.1, 0.1), seed=0)
    # equal groups: the midpoint rule gives exactly 80 / 10 / 10 groups
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (240, 30, 30)
    groups = {part: set(getattr(splits, part).groups) for part in ("train", "valid", "test")}
    assert not groups["train"] & groups["valid"] and not groups["train"] & groups["test"]
    assert not groups["valid"] & groups["test"]
    # every pair exactly once, a[i] still with b[i], rows in their original order
    assignment = _assignment(splits)
    assert sorted(assignment) == sorted(data.a)
    for part in (splits.train, splits.valid, splits.test):
        assert (
            [int(q[1:]) for q in part.a]
            == [int(c[1:]) for c in part.b]
            == sorted(int(q[1:]) for q in part.a)
        )
    # deterministic, seed-dependent, and independent of the row order
    assert _assignment(split_pairs(data, seed=0)) == assignment
    assert _assignment(split_pairs(data, seed=1)) != assignment
    reverse = data.subset(np.arange(len(data))[::-1])
    assert _assignment(split_pairs(reverse, seed=0)) == assignment


def test_split_pairs_grouped_unequal_groups_meet_row_fractions():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 20, size=300)
    groups = [f"m{g}" for g, s in enumerate(sizes) for _ in range(s)]
    data = PairedData(a=list(range(len(groups))), b=list(range(len(groups))), groups=groups)
    splits = split_pairs(data, fractions=(0.7, 0.2, 0.1), seed=3)
    n = len(data)
    # the midpoint rule meets each share up to one group (at most 19 rows)
    assert abs(len(splits.train) - 0.7 * n) <= 19
    assert abs(len(splits.valid) - 0.2 * n) <= 19
    assert abs(len(splits.test) - 0.1 * n) <= 19


def test_split_pairs_ungrouped():
    data = PairedData(a=list(range(10)), b=list(range(10)), groups=["same"] * 10)
    splits = split_pairs(data, fractions=(0.8, 0.1, 0.1), seed=0, by_group=False)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (8, 1, 1)
    assert sorted(splits.train.a + splits.valid.a + splits.test.a) == list(range(10))
    two = split_pairs(data, fractions=(0.7, 0.3), seed=0, by_group=False)
    assert two.valid is None and (len(two.train), len(two.test)) == (7, 3)
    # no groups given: by_group has nothing to group by
    plain = PairedData(a=list(range(10)), b=list(range(10)))
    assert _assignment(split_pairs(plain, seed=4)) == _assignment(
        split_pairs(plain, seed=4, by_group=False)
    )
    # a zero test fraction leaves an empty test split, a zero valid fraction no valid split
    only_train = split_pairs(plain, fractions=(1.0, 0.0, 0.0))
    assert len(only_train.train) == 10 and only_train.valid is None and len(only_train.test) == 0


def test_split_pairs_errors():
    data = _grouped(3, 2)
    with pytest.raises(ContrastkitError, match="3 groups, too few to give the test split"):
        split_pairs(data, fractions=(0.8, 0.1, 0.1))
    for bad in [
        (0.5, 0.5, 0.5),
        (0.0, 0.5, 0.5),
        (1.2, -0.1, -0.1),
        (1.0,),
        "0.8",
        (0.8, float("nan"), 0.2),
    ]:
        with pytest.raises(ContrastkitError, match="fractions must be"):
            split_pairs(data, fractions=bad)
    with pytest.raises(ContrastkitError, match="seed must be"):
        split_pairs(data, seed=-1)
    with pytest.raises(ContrastkitError, match="needs PairedData"):
        split_pairs([1, 2, 3])
    tiny = PairedData(a=["x", "y"], b=["z", "w"])
    with pytest.raises(ContrastkitError, match="2 pairs, too few to give the train split"):
        split_pairs(tiny, fractions=(0.1, 0.45, 0.45), by_group=False)
