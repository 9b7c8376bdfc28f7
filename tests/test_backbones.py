"""Tests for contrastkit.nn: backbones and the SimCLR projection head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contrastkit.errors import ContrastkitError
from contrastkit.nn import ProjectionHead, SmallCNN, available_backbones, build_backbone

torch.set_num_threads(1)


def _check_backbone(name: str, channels: int, size: int, expected_dim: int | None = None) -> None:
    module, dim = build_backbone(name, in_channels=channels, image_size=size)
    if expected_dim is not None:
        assert dim == expected_dim
    module.train()
    x = torch.rand(3, channels, size, size, requires_grad=True)
    out = module(x)
    assert out.shape == (3, dim)
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [8, 28, 32])
@pytest.mark.parametrize(("name", "dim"), [("small-cnn", 128), ("resnet18-cifar", 512)])
def test_builtin_backbones(name: str, dim: int, channels: int, size: int) -> None:
    _check_backbone(name, channels, size, dim)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    ("name", "dim"), [("torchvision:resnet18", 512), ("torchvision:mobilenet_v3_small", 1024)]
)
def test_torchvision_backbones(name: str, dim: int, channels: int) -> None:
    _check_backbone(name, channels, 32, dim)


def test_torchvision_other_channels_and_options() -> None:
    _check_backbone("torchvision:squeezenet1_1", 4, 32, 512)  # 1x1 adapter; conv classifier
    module, dim = build_backbone(
        "torchvision:mobilenet_v3_small", in_channels=3, image_size=32, width_mult=0.5
    )
    assert dim == 512 and module(torch.rand(2, 3, 32, 32)).shape == (2, 512)  # option applied
    with pytest.raises(ContrastkitError, match="rejected options"):
        build_backbone("torchvision:resnet18", in_channels=3, image_size=32, bogus=1)


def test_small_cnn_width_and_pooling() -> None:
    module, dim = build_backbone("small-cnn", in_channels=1, image_size=28, width=16)
    assert dim == 64 and module.out_dim == 64
    pools = {s: sum(isinstance(m, nn.MaxPool2d) for m in SmallCNN(1, s)) for s in (8, 28, 32)}
    assert pools == {8: 1, 28: 2, 32: 3}
    convs = [m for m in module if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64]
    grid, dim = build_backbone("small-cnn", in_channels=1, image_size=28, width=16, pool=2)
    assert dim == 64 * 4 and grid(torch.rand(3, 1, 28, 28)).shape == (3, 256)


def test_resnet18_cifar_stem() -> None:
    module, _ = build_backbone("resnet18-cifar", in_channels=1, image_size=32)
    assert module.conv1.kernel_size == (3, 3) and module.conv1.stride == (1, 1)
    assert module.conv1.in_channels == 1
    assert isinstance(module.maxpool, nn.Identity) and isinstance(module.fc, nn.Identity)


def test_build_backbone_restores_training_mode() -> None:
    module, _ = build_backbone("small-cnn", in_channels=1, image_size=8)
    assert module.training


def test_available_backbones() -> None:
    names = available_backbones()
    assert names[:2] == ["small-cnn", "resnet18-cifar"]
    assert "torchvision:resnet18" in names and "torchvision:mobilenet_v3_small" in names
    assert not any("fasterrcnn" in n for n in names)  # classification models only


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("small_cnn", "small-cnn"),
        ("resnet18", "torchvision:resnet18"),
        ("torchvision:resnet181", "torchvision:resnet18"),
        ("torchvision:mobilenet_v3_smal", "torchvision:mobilenet_v3_small"),
    ],
)
def test_unknown_backbone_suggests_closest(name: str, suggestion: str) -> None:
    with pytest.raises(ContrastkitError, match="small-cnn, resnet18-cifar") as info:
        build_backbone(name, in_channels=3, image_size=32)
    assert f"did you mean {suggestion!r}" in str(info.value)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("small-cnn", {"depth": 4}, "only the options width, pool and batch_norm"),
        ("small-cnn", {"width": 0}, "width"),
        ("resnet18-cifar", {"width": 2}, "no options"),
        ("small-cnn", {"in_channels": 0}, "in_channels"),
        ("small-cnn", {"image_size": -1}, "image_size"),
        ("torchvision:inception_v3", {"image_size": 32}, "cannot process"),
    ],
)
def test_backbone_errors(name: str, kwargs: dict, match: str) -> None:
    args = {"in_channels": 3, "image_size": 32, **kwargs}
    with pytest.raises(ContrastkitError, match=match):
        build_backbone(name, **args)


@pytest.mark.parametrize(
    ("num_layers", "batch_norm"), [(1, True), (2, True), (3, True), (3, False)]
)
def test_projection_head(num_layers: int, batch_norm: bool) -> None:
    head = ProjectionHead(
        64, hidden_dim=32, out_dim=16, num_layers=num_layers, batch_norm=batch_norm
    )
    linears = [m for m in head if isinstance(m, nn.Linear)]
    norms = [m for m in head if isinstance(m, nn.BatchNorm1d)]
    relus = [m for m in head if isinstance(m, nn.ReLU)]
    assert len(linears) == num_layers and len(relus) == num_layers - 1
    assert len(norms) == (num_layers - 1 if batch_norm else 0)
    assert linears[0].in_features == 64 and linears[-1].out_features == 16
    assert all(lin.out_features == 32 for lin in linears[:-1])
    assert linears[-1].bias is not None
    x = torch.randn(5, 64, requires_grad=True)
    out = head(x)
    assert out.shape == (5, 16)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_projection_head_defaults_and_errors() -> None:
    head = ProjectionHead(128)
    assert (head.hidden_dim, head.out_dim, head.num_layers) == (512, 128, 2)
    with pytest.raises(ContrastkitError, match=r"\[B, 128\]"):
        head(torch.randn(4, 64))
    for bad in ({"in_dim": 0}, {"in_dim": 8, "num_layers": 0}, {"in_dim": 8, "out_dim": 1.5}):
        with pytest.raises(ContrastkitError):
            ProjectionHead(**bad)
