"""Tests for contrastkit.data: named sources, shared validation, splits."""

from __future__ import annotations

import gzip
import os
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from contrastkit.data import (
    ImageData,
    available_sources,
    image_data_from_arrays,
    load_data,
    register_source,
)
from contrastkit.data import registry as data_registry
from contrastkit.data.fashion_mnist import DEFAULT_DIR
from contrastkit.errors import ContrastkitError

RNG = np.random.default_rng(0)


def raises(phrase: str) -> pytest.RaisesContext:
    """Expect a ContrastkitError whose message contains ``phrase`` (a regex)."""
    return pytest.raises(ContrastkitError, match=phrase)


def one_sentence(exc: pytest.ExceptionInfo) -> None:
    message = str(exc.value)
    assert "\n" not in message and message.endswith("."), message


def labelled(n_per_class: int = 6, classes: int = 3, shape: tuple[int, ...] = (8, 8)):
    y = np.repeat(np.arange(classes), n_per_class)
    x = RNG.integers(0, 256, size=(len(y), *shape), dtype=np.uint8)
    return x, y


def save_npz(tmp_path: Path, **arrays) -> str:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return f"npz:{path}"


# --- registry ---------------------------------------------------------------------------------


def test_available_sources_lists_builtins():
    names = available_sources()
    for name in ("digits", "fashion-mnist", "folder:PATH", "npz:PATH", "torchvision:cifar10"):
        assert name in names


@pytest.mark.parametrize(
    ("spec", "suggestion"),
    [
        ("digts", "'digits'"),
        ("fashion_mnist", "'fashion-mnist'"),
        ("cifar10", "'torchvision:cifar10'"),
        ("torchvision:cifr100", "'torchvision:cifar100'"),
    ],
)
def test_unknown_source_suggests_closest(spec, suggestion):
    with raises(f"did you mean {suggestion}") as exc:
        load_data(spec)
    one_sentence(exc)
    if ":" not in spec:
        assert "npz:PATH" in str(exc.value)


def test_path_without_prefix_suggests_source(tmp_path):
    with raises(f"did you mean 'folder:{tmp_path}'"):
        load_data(str(tmp_path))


@pytest.mark.parametrize(
    ("spec", "phrase"),
    [("", "non-empty"), ("digits:x", "takes no argument"), ("npz", "needs PATH")],
)
def test_malformed_specs(spec, phrase):
    with raises(phrase):
        load_data(spec)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, True])
def test_test_fraction_outside_unit_interval(fraction):
    with raises("strictly between 0 and 1") as exc:
        load_data("digits", test_fraction=fraction)
    one_sentence(exc)


@pytest.mark.parametrize(("option", "value"), [("image_size", 0), ("seed", -1)])
def test_bad_options(option, value):
    with raises(option):
        load_data("digits", **{option: value})


def test_register_source(monkeypatch):
    monkeypatch.setattr(data_registry, "_SOURCES", dict(data_registry._SOURCES))
    calls = []

    def loader(arg, **options):
        calls.append((arg, options))
        return image_data_from_arrays(*labelled(), name=f"toy:{arg}", seed=options["seed"])

    register_source("Toy", loader, examples=["toy:NAME"])
    assert "toy:NAME" in available_sources()
    data = load_data("toy:abc", seed=3)
    assert data.name == "toy:abc"
    assert calls == [
        ("abc", {"seed": 3, "test_fraction": 0.2, "image_size": None, "download": False})
    ]
    with raises("without ':'"):
        register_source("a:b", loader)


# --- digits -----------------------------------------------------------------------------------


def test_digits_shapes_ranges_and_stratification():
    data = load_data("digits")
    assert isinstance(data, ImageData) and data.name == "digits"
    assert data.x_train.shape == (1437, 1, 8, 8) and data.x_test.shape == (360, 1, 8, 8)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert float(data.x_train.min()) >= 0.0 and float(data.x_train.max()) == 1.0
    assert (data.channels, data.image_size, data.num_classes) == (1, 8, 10)
    assert data.has_labels and data.classes == tuple(str(i) for i in range(10))
    full = torch.bincount(torch.cat([data.y_train, data.y_test]), minlength=10).float()
    test = torch.bincount(data.y_test, minlength=10).float()
    assert torch.all((test - 0.2 * full).abs() <= 1)  # stratified: ±1 image per class
    assert "train=1437" in repr(data)


def test_digits_seed_reproducibility():
    a, b, c = load_data(seed=1), load_data(seed=1), load_data(seed=2)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_test, c.x_test)
    small = load_data(test_fraction=0.5)
    assert len(small.x_test) == 899


def test_digits_image_size_resizes():
    data = load_data("digits", image_size=16)
    assert data.x_train.shape[1:] == (1, 16, 16)
    assert float(data.x_train.min()) >= 0.0 and float(data.x_train.max()) <= 1.0


# --- fashion-mnist ----------------------------------------------------------------------------


def test_fashion_mnist_real_files(monkeypatch):
    monkeypatch.delenv("CONTRASTKIT_FASHION_MNIST_DIR", raising=False)
    data = load_data("fashion-mnist")
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert (data.channels, data.image_size, data.num_classes) == (1, 28, 10)
    assert torch.equal(torch.bincount(data.y_train), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(data.y_test), torch.full((10,), 1000))
    assert data.classes[0] == "T-shirt/top" and data.classes[-1] == "Ankle boot"
    assert float(data.x_train.min()) == 0.0 and float(data.x_train.max()) == 1.0
    again = load_data("fashion-mnist")  # cached decode, fresh tensors
    assert again.x_train is not data.x_train and torch.equal(again.y_test, data.y_test)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_env_dir_and_plain_idx(tmp_path, monkeypatch):
    images = RNG.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    labels = np.arange(20) % 10
    for split in ("train", "t10k"):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte", images)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte", labels)
    gz = tmp_path / "train-images-idx3-ubyte"
    with open(gz, "rb") as src, gzip.open(f"{gz}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    monkeypatch.setenv("CONTRASTKIT_FASHION_MNIST_DIR", str(tmp_path))
    data = load_data("fashion-mnist")
    assert data.x_train.shape == (20, 1, 28, 28) and data.num_classes == 10
    assert torch.allclose(data.x_test[0, 0] * 255, torch.from_numpy(images[0]).float())


def test_fashion_mnist_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTRASTKIT_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no torchvision copy in ~/.cache either
    with raises("apt-get install dataset-fashion-mnist") as exc:
        load_data("fashion-mnist")
    one_sentence(exc)
    assert "download=True" in str(exc.value)
    (tmp_path / "partial").mkdir()
    shutil.copy(Path(DEFAULT_DIR) / "t10k-labels-idx1-ubyte.gz", tmp_path / "partial")
    monkeypatch.setenv("CONTRASTKIT_FASHION_MNIST_DIR", str(tmp_path / "partial"))
    with raises("lacks train-images-idx3-ubyte"):
        load_data("fashion-mnist")


# --- folder -----------------------------------------------------------------------------------


def _png(path: Path, size=(8, 8), mode="L", value=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    shape = (size[1], size[0], channels) if channels == 3 else (size[1], size[0])
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode=None).convert(mode).save(path)


def _class_folder(root: Path, mode="L", per_class=5, classes=("cat", "dog")) -> Path:
    for k, name in enumerate(classes):
        for i in range(per_class):
            _png(root / name / f"{i}.png", mode=mode, value=50 * k + i)
    return root


def test_folder_labelled_grayscale(tmp_path):
    _class_folder(tmp_path)
    (tmp_path / "notes.txt").write_text("ignored")
    data = load_data(f"folder:{tmp_path}", test_fraction=0.4)
    assert data.classes == ("cat", "dog") and data.num_classes == 2
    assert data.x_train.shape == (6, 1, 8, 8) and data.x_test.shape == (4, 1, 8, 8)
    assert torch.equal(torch.bincount(data.y_test), torch.tensor([2, 2]))
    dog = data.x_train[data.y_train == 1]
    assert float(dog.min()) >= 50 / 255 - 1e-6


def test_folder_flat_rgb_unlabelled(tmp_path):
    for i in range(5):
        _png(tmp_path / f"{i}.png", mode="RGB" if i == 0 else "L", value=10 * i)
    data = load_data(f"folder:{tmp_path}")
    assert not data.has_labels and data.y_train is None and data.y_test is None
    assert data.num_classes is None and data.classes is None
    assert data.channels == 3 and len(data.x_train) == 4 and len(data.x_test) == 1


def test_folder_mismatched_sizes(tmp_path):
    _png(tmp_path / "a.png", size=(8, 8))
    _png(tmp_path / "b.png", size=(12, 10))
    _png(tmp_path / "c.png", size=(8, 8))
    with raises("pass image_size") as exc:
        load_data(f"folder:{tmp_path}")
    one_sentence(exc)
    data = load_data(f"folder:{tmp_path}", image_size=6)
    assert data.x_train.shape[1:] == (1, 6, 6)


def test_folder_corrupt_file_is_named(tmp_path):
    _class_folder(tmp_path)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with raises("broken.png") as exc:
        load_data(f"folder:{tmp_path}")
    one_sentence(exc)


@pytest.mark.parametrize(
    ("setup", "phrase"),
    [
        (lambda root: None, "holds no images"),
        (lambda root: _class_folder(root, classes=("only",)), "at least 2 classes"),
        (lambda root: (_class_folder(root), _png(root / "loose.png")), "loose images"),
        (lambda root: _class_folder(root, per_class=1), "only 1 image"),
    ],
)
def test_folder_bad_layouts(tmp_path, setup, phrase):
    setup(tmp_path)
    with raises(phrase) as exc:
        load_data(f"folder:{tmp_path}")
    one_sentence(exc)


def test_folder_missing_directory(tmp_path):
    with raises("no directory"):
        load_data(f"folder:{tmp_path / 'nope'}")


# --- npz and arrays ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "channels"),
    [
        ((18, 8, 8), 1),
        ((18, 1, 8, 8), 1),
        ((18, 3, 8, 8), 3),
        ((18, 8, 8, 3), 3),
        ((18, 8, 8, 1), 1),
    ],
)
def test_npz_layouts(tmp_path, shape, channels):
    x = RNG.integers(0, 256, size=shape, dtype=np.uint8)
    y = np.repeat([3, 7, 9], 6)
    data = load_data(save_npz(tmp_path, x=x, y=y))
    assert data.x_train.shape == (14, channels, 8, 8) and data.x_test.shape == (4, channels, 8, 8)
    assert data.classes == ("3", "7", "9") and set(data.y_train.tolist()) == {0, 1, 2}
    assert float(data.x_train.max()) <= 1.0
    if shape == (18, 8, 8, 3):  # channels-last is transposed, not reshaped
        full = torch.cat([data.x_train, data.x_test])
        assert any(
            torch.allclose(img, torch.from_numpy(x[0]).permute(2, 0, 1) / 255) for img in full
        )


def test_npz_fixed_split_and_floats(tmp_path):
    x, y = labelled()
    xt = RNG.random((4, 8, 8)).astype(np.float64)
    spec = save_npz(
        tmp_path, x=x.astype(np.float32) / 255, y=y, x_test=xt, y_test=np.array([0, 1, 2, 2])
    )
    data = load_data(spec, seed=5, test_fraction=0.5)
    assert len(data.x_train) == 18 and len(data.x_test) == 4
    assert torch.allclose(data.x_test[:, 0].double(), torch.from_numpy(xt), atol=1e-6)
    assert data.y_test.tolist() == [0, 1, 2, 2] and data.x_test.dtype == torch.float32


def test_npz_unlabelled(tmp_path):
    data = load_data(save_npz(tmp_path, x=RNG.random((10, 4, 4))), test_fraction=0.3)
    assert not data.has_labels and (len(data.x_train), len(data.x_test)) == (7, 3)


def _bad(**over):
    x, y = labelled()
    return {"x": x, "y": y, **over}


BAD_NPZ = {
    "no x": ({"images": np.zeros((4, 8, 8))}, "no array named 'x'"),
    "empty": (_bad(x=np.zeros((0, 8, 8), np.uint8), y=np.zeros(0, int)), "empty"),
    "ndim": (_bad(x=np.zeros((18, 64), np.uint8)), "reshape"),
    "channels": (_bad(x=np.zeros((18, 5, 8, 8), np.uint8)), "C in \\{1, 3\\}"),
    "dtype": (_bad(x=np.zeros((18, 8, 8), np.int64)), "must be uint8"),
    "nan": (_bad(x=np.full((18, 8, 8), np.nan)), "NaN or infinite"),
    "inf": (_bad(x=np.full((18, 8, 8), np.inf)), "NaN or infinite"),
    "length": (_bad(y=np.arange(17)), "17 labels for 18 images"),
    "float labels": (_bad(y=np.repeat([0.0, 1.0, 2.0], 6)), "labels must be integers"),
    "string labels": (_bad(y=np.repeat(["a", "b", "c"], 6)), "labels must be integers"),
    "2d labels": (_bad(y=np.zeros((18, 1), int)), "ravel"),
    "one class": (_bad(y=np.zeros(18, int)), "at least 2 classes"),
    "singleton class": (_bad(y=np.r_[np.zeros(17, int), 1]), "only 1 image"),
    "non-square": (_bad(x=np.zeros((18, 8, 6), np.uint8)), "must be square"),
    "y_test alone": (_bad(y_test=np.zeros(3, int)), "no x_test"),
    "test shape": (_bad(x_test=np.zeros((3, 6, 6), np.uint8), y_test=np.arange(3)), "same shape"),
    "test labels": (_bad(x_test=np.zeros((3, 8, 8), np.uint8)), "y and y_test"),
}


@pytest.mark.parametrize("case", list(BAD_NPZ))
def test_npz_bad_inputs(tmp_path, case):
    arrays, phrase = BAD_NPZ[case]
    with raises(phrase) as exc:
        load_data(save_npz(tmp_path, **arrays))
    one_sentence(exc)


def test_npz_split_too_small(tmp_path):
    x, y = labelled(n_per_class=2, classes=3)
    with raises("too few for a stratified split"):
        load_data(save_npz(tmp_path, x=x, y=y), test_fraction=0.2)
    with raises("leaves the train split empty"):
        load_data(save_npz(tmp_path, x=x[:3]), test_fraction=0.9)


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (None, "no file"),
        (b"not a zip", "Cannot read"),
        ("npy", "single .npy"),
        ("obj", "Python objects"),
    ],
)
def test_npz_unreadable(tmp_path, content, phrase):
    path = tmp_path / "data.npz"
    if content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros((4, 8, 8)))
    elif content == "obj":
        np.savez(path, x=np.array([np.zeros(2), np.zeros(3)], dtype=object))
    elif content is not None:
        path.write_bytes(content)
    with raises(phrase) as exc:
        load_data(f"npz:{path}")
    one_sentence(exc)


def test_image_data_from_arrays_numpy_and_torch():
    x, y = labelled(n_per_class=10)
    a = image_data_from_arrays(x, y, seed=1)
    b = image_data_from_arrays(torch.from_numpy(x), torch.from_numpy(y), seed=1)
    assert (
        a.name == "arrays" and torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    )
    assert torch.equal(torch.bincount(a.y_test), torch.tensor([2, 2, 2]))
    rgb = torch.rand(6, 10, 12, 3, dtype=torch.float16)
    c = image_data_from_arrays(rgb, x_test=rgb[:2], image_size=8, name="mine")
    assert c.x_train.shape == (6, 3, 8, 8) and c.x_test.shape == (2, 3, 8, 8) and c.name == "mine"
    xf, xtf = torch.rand(6, 1, 4, 4), torch.rand(2, 1, 4, 4)
    d = image_data_from_arrays(xf, x_test=xtf)
    xf.zero_()  # the result does not alias caller memory
    assert float(d.x_train.sum()) > 0 and torch.equal(d.x_test, xtf)
    with raises("must be uint8"):
        image_data_from_arrays(torch.zeros(4, 8, 8, dtype=torch.int32))
    with raises("ragged"):
        image_data_from_arrays([np.zeros((8, 8)), np.zeros((4, 4))])


# --- torchvision ------------------------------------------------------------------------------


def test_torchvision_missing_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTRASTKIT_DATA_DIR", str(tmp_path))
    with raises("needs internet to download; pass download=True") as exc:
        load_data("torchvision:cifar10")
    one_sentence(exc)
    assert str(tmp_path) in str(exc.value)


@pytest.mark.parametrize(
    ("name", "cls", "error"),
    [
        ("cifar10", "CIFAR10", urllib.error.URLError("no network")),
        ("stl10", "STL10", RuntimeError("Error downloading")),
    ],
)
def test_torchvision_download_fails(tmp_path, monkeypatch, name, cls, error):
    import torchvision.datasets

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(torchvision.datasets, cls, fail)
    monkeypatch.setenv("CONTRASTKIT_DATA_DIR", str(tmp_path))
    with raises("needs internet to download") as exc:
        load_data(f"torchvision:{name}", download=True)
    one_sentence(exc)


def test_torchvision_uses_official_split(tmp_path, monkeypatch):
    import torchvision.datasets

    class FakeCIFAR:
        def __init__(self, root, train, download):
            self.classes = ["plane", "car"]
            assert Path(root) == tmp_path and download is False
            n = 6 if train else 4
            self.data = np.zeros((n, 32, 32, 3), np.uint8)
            self.targets = [i % 2 for i in range(n)]

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR)
    monkeypatch.setenv("CONTRASTKIT_DATA_DIR", str(tmp_path))
    data = load_data("torchvision:CIFAR10")
    assert data.x_train.shape == (6, 3, 32, 32) and len(data.x_test) == 4
    assert data.classes == ("plane", "car") and data.name == "torchvision:cifar10"


def test_default_data_root(monkeypatch):
    from contrastkit.data.torchvision_sources import data_root

    monkeypatch.delenv("CONTRASTKIT_DATA_DIR", raising=False)
    assert data_root() == Path(os.path.expanduser("~/.cache/contrastkit/torchvision"))
