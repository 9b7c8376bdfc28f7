"""Tests for contrastkit.views: kornia batch augmentations and MultiView."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contrastkit.errors import ContrastkitError
from contrastkit.views import (
    RECIPES,
    MultiView,
    blur_kernel_size,
    build_augmentation,
    normalize_images,
)

torch.set_num_threads(1)

SIZES = (8, 28, 32)
CHANNELS = (1, 3)
AUG_RECIPES = ("simclr", "small-gray")


def _images(b: int, c: int, s: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(b, c, s, s, generator=torch.Generator().manual_seed(123)).to(dtype)


def _views(aug: nn.Module, x: torch.Tensor, seed: int, n_views: int = 2) -> torch.Tensor:
    torch.manual_seed(seed)
    return MultiView(aug, n_views)(x)


@pytest.mark.parametrize("recipe", [*AUG_RECIPES, "none"])
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("size", SIZES)
def test_shape_dtype_range_and_layout(recipe: str, channels: int, size: int) -> None:
    x = _images(6, channels, size)
    out = _views(
        build_augmentation(recipe, image_size=size, channels=channels), x, seed=0, n_views=3
    )
    assert out.shape == (18, channels, size, size)
    assert out.dtype == x.dtype and out.device == x.device
    assert torch.isfinite(out).all()
    assert out.min() >= -1e-4 and out.max() <= 1 + 1e-4
    if recipe == "none":  # view-major: rows v*B:(v+1)*B are view v of samples 0..B-1
        assert torch.equal(out, torch.cat([x, x, x]))
    else:
        assert not torch.equal(out[:6], out[6:12])


def test_view_major_layout_per_sample() -> None:
    # Each sample gets a constant distinct colour; with crops+flips only, each view keeps it.
    b = 5
    x = torch.linspace(0.1, 0.9, b).reshape(b, 1, 1, 1).expand(b, 1, 16, 16).contiguous()
    aug = build_augmentation("small-gray", image_size=16, channels=1, jitter_strength=0.0)
    out = _views(aug, x, seed=1, n_views=3)
    for v in range(3):
        torch.testing.assert_close(out[v * b : (v + 1) * b], x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("recipe", AUG_RECIPES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_seed_reproducibility(recipe: str, channels: int) -> None:
    x = _images(8, channels, 28)
    aug = build_augmentation(recipe, image_size=28, channels=channels)
    a, b = _views(aug, x, seed=7), _views(aug, x, seed=7)
    c = _views(aug, x, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_preserved(dtype: torch.dtype) -> None:
    x = _images(4, 3, 32, dtype)
    out = build_augmentation("simclr", image_size=32, channels=3)(x)
    assert out.dtype == dtype and out.shape == x.shape
    assert torch.isfinite(out.float()).all()


def test_output_size_follows_image_size() -> None:
    aug = build_augmentation("simclr", image_size=24, channels=3)
    assert aug(_images(2, 3, 32)).shape == (2, 3, 24, 24)


def test_simclr_pipeline_matches_paper() -> None:
    rgb = build_augmentation("simclr", image_size=224, channels=3)
    names = [type(m).__name__ for m in rgb.pipeline.children()]
    assert names == [
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "ColorJitter",
        "RandomGrayscale",
        "RandomGaussianBlur",
    ]
    jitter = rgb.pipeline[2]
    strengths = (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
    assert strengths == (0.4, 0.4, 0.4, 0.1)
    assert jitter.p == 0.8 and rgb.pipeline[3].p == 0.2 and rgb.pipeline[4].p == 0.5
    gray = build_augmentation("simclr", image_size=32, channels=1)
    gray_names = [type(m).__name__ for m in gray.pipeline.children()]
    assert "RandomGrayscale" not in gray_names
    assert (gray.pipeline[2].saturation, gray.pipeline[2].hue) == (0.0, 0.0)


@pytest.mark.parametrize(("size", "kernel"), [(8, 3), (28, 3), (32, 3), (96, 9), (224, 23)])
def test_blur_kernel_is_ten_percent_and_odd(size: int, kernel: int) -> None:
    assert blur_kernel_size(size) == kernel


def test_overrides_change_pipeline() -> None:
    aug = build_augmentation(
        "small-gray", image_size=28, channels=1, flip=False, blur=True, crop_scale=(0.5, 1.0)
    )
    names = [type(m).__name__ for m in aug.pipeline.children()]
    assert "RandomHorizontalFlip" not in names and "RandomGaussianBlur" in names
    assert aug.config["crop_scale"] == (0.5, 1.0)
    assert RECIPES["small-gray"]["flip"] is True  # defaults untouched


@pytest.mark.parametrize(
    ("recipe", "overrides", "match"),
    [
        ("simclr", {"bogus": 1}, "Unknown override"),
        ("small-gray", {"grayscale_p": 0.2}, "Unknown override"),
        ("none", {"flip": False}, "Unknown override"),
        ("simclr", {"crop_scale": (0.9, 0.1)}, "crop_scale"),
        ("simclr", {"flip": "yes"}, "flip"),
        ("simclr", {"jitter_p": 1.5}, "jitter_p"),
    ],
)
def test_bad_overrides(recipe: str, overrides: dict, match: str) -> None:
    with pytest.raises(ContrastkitError, match=match):
        build_augmentation(recipe, image_size=28, channels=1, **overrides)


def test_unknown_recipe_lists_valid() -> None:
    with pytest.raises(ContrastkitError, match="simclr, small-gray, none"):
        build_augmentation("byol", image_size=32, channels=3)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.rand(3, 28, 28), r"\[B, C, H, W\]"),
        ((torch.rand(2, 1, 28, 28) * 255).to(torch.uint8), "floating-point"),
        (torch.full((2, 1, 28, 28), float("nan")), "NaN"),
        (torch.rand(2, 3, 28, 28), "1-channel"),
        (torch.rand(2, 1, 28, 28) * 4 - 2, r"in \[0, 1\]"),
        (torch.rand(0, 1, 28, 28), "non-empty"),
    ],
)
@pytest.mark.parametrize("wrap", [False, True])
def test_invalid_input(x: torch.Tensor, match: str, wrap: bool) -> None:
    aug = build_augmentation("small-gray", image_size=28, channels=1)
    with pytest.raises(ContrastkitError, match=match):
        (MultiView(aug) if wrap else aug)(x)


def test_multiview_with_plain_module_and_bad_n_views() -> None:
    x = _images(3, 1, 8)
    out = MultiView(nn.Identity(), n_views=2)(x)
    assert torch.equal(out, torch.cat([x, x]))
    with pytest.raises(ContrastkitError, match="NaN"):
        MultiView(nn.Identity())(x * float("nan"))
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ContrastkitError, match="n_views"):
            MultiView(nn.Identity(), n_views=bad)


def test_normalize_images() -> None:
    x = _images(2, 3, 8)
    out = normalize_images(x, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    torch.testing.assert_close(out, (x - 0.5) / 0.25)
    torch.testing.assert_close(normalize_images(x, 0.5, 0.25), out)
    with pytest.raises(ContrastkitError, match="one per channel"):
        normalize_images(x, (0.5, 0.5), 0.25)
    with pytest.raises(ContrastkitError, match="positive"):
        normalize_images(x, 0.5, 0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_and_reproducibility() -> None:
    x = _images(8, 3, 32).cuda()
    aug = build_augmentation("simclr", image_size=32, channels=3)
    a, b = _views(aug, x, seed=3), _views(aug, x, seed=3)
    assert a.device == x.device and torch.equal(a, b)
    assert not torch.equal(a, _views(aug, x, seed=4))


def test_multiview_can_skip_the_value_check_but_not_the_shape_check() -> None:
    augment = build_augmentation("none", image_size=8, channels=1)
    unchecked = MultiView(augment, n_views=2, check_values=False)
    assert unchecked(torch.full((2, 1, 8, 8), 2.0)).shape == (
        4,
        1,
        8,
        8,
    )  # out of range, not checked
    with pytest.raises(ContrastkitError, match="in \\[0, 1\\]"):
        MultiView(augment, n_views=2)(torch.full((2, 1, 8, 8), 2.0))
    with pytest.raises(ContrastkitError, match="shaped"):
        unchecked(torch.rand(2, 8, 8))
