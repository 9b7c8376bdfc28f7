"""Batched image augmentations (kornia) and multi-view generation for contrastive learning.

Augmentations run on whole batches on the training device: the data loader ships raw float images
``[B, C, H, W]`` in ``[0, 1]`` and :class:`MultiView` turns a batch into ``n_views`` independently
augmented copies, as in SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of
Visual Representations", §2.1 and Appendix A).

Randomness comes from torch's global RNG on the images' device (kornia samples its parameters
there), so ``torch.manual_seed(s)`` before a call reproduces the views exactly on the same device
and dtype; CPU and CUDA draw different numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import kornia.augmentation as K
import torch
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError

__all__ = [
    "RECIPES",
    "Augmentation",
    "MultiCrop",
    "MultiView",
    "blur_kernel_size",
    "build_augmentation",
    "check_images",
    "normalize_images",
]

# Inputs may overshoot [0, 1] by this much (float rounding in upstream conversions).
_RANGE_TOLERANCE = 1e-3


def check_images(
    x: Any, *, channels: int | None = None, what: str = "images", values: bool = True
) -> None:
    """Raise :class:`ContrastkitError` unless ``x`` is a finite float batch ``[B, C, H, W]`` in [0, 1].

    The value checks (``values=True``) cost one reduction over the batch and one host sync; the
    shape/dtype checks are free.
    """
    if not isinstance(x, Tensor):
        raise ContrastkitError(f"Expected {what} as a torch.Tensor, got {type(x).__name__}.")
    if x.ndim != 4:
        raise ContrastkitError(
            f"Expected {what} shaped [B, C, H, W], got a tensor with shape {tuple(x.shape)}."
        )
    if not x.is_floating_point():
        raise ContrastkitError(
            f"Expected floating-point {what} in [0, 1], got dtype {x.dtype}; "
            "convert with x.float() / 255 first."
        )
    if x.shape[0] == 0 or x.numel() == 0:
        raise ContrastkitError(f"Expected a non-empty batch of {what}, got shape {tuple(x.shape)}.")
    if channels is not None and x.shape[1] != channels:
        raise ContrastkitError(
            f"The augmentation was built for {channels}-channel {what} but got {x.shape[1]} "
            f"channels (shape {tuple(x.shape)}); rebuild it with channels={x.shape[1]}."
        )
    if not values:
        return
    lo, hi = torch.aminmax(x.detach())
    finite, low_ok, high_ok = torch.stack(
        [torch.isfinite(x.detach()).all(), lo >= -_RANGE_TOLERANCE, hi <= 1 + _RANGE_TOLERANCE]
    ).tolist()
    if not finite:
        raise ContrastkitError(
            f"The {what} contain NaN or infinite values; check the data pipeline."
        )
    if not (low_ok and high_ok):
        raise ContrastkitError(
            f"Expected {what} in [0, 1] but values span [{lo.item():.3g}, {hi.item():.3g}]; "
            "augment raw images and normalize afterwards (see normalize_images)."
        )


def normalize_images(
    x: Tensor, mean: float | Sequence[float] | Tensor, std: float | Sequence[float] | Tensor
) -> Tensor:
    """Per-channel ``(x - mean) / std`` for ``[B, C, H, W]`` images; scalars apply to all channels."""
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    if mean_t.shape[1] not in (1, x.shape[1]) or std_t.shape[1] not in (1, x.shape[1]):
        raise ContrastkitError(
            f"normalize_images got {mean_t.shape[1]} means and {std_t.shape[1]} stds "
            f"for {x.shape[1]}-channel images; give one value or one per channel."
        )
    if bool((std_t <= 0).any()):
        raise ContrastkitError("normalize_images needs every std to be positive.")
    return (x - mean_t) / std_t


def blur_kernel_size(image_size: int) -> int:
    """SimCLR's blur kernel: 10% of the image side, rounded down to an int, made odd, at least 3."""
    k = max(3, int(0.1 * image_size))
    return k if k % 2 == 1 else k + 1


class Augmentation(nn.Module):
    """A validated kornia pipeline: ``[B, C, H, W]`` in [0, 1] → augmented batch, same device/dtype.

    Crop recipes output ``image_size × image_size``; ``"none"`` returns its input unchanged.
    Half-precision inputs are augmented in float32 and cast back. The kornia samplers follow the
    input's device (the module moves itself on first use on a new device).
    """

    def __init__(
        self,
        pipeline: nn.Module,
        *,
        recipe: str,
        channels: int,
        image_size: int,
        config: dict[str, Any],
    ) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.recipe = recipe
        self.channels = channels
        self.image_size = image_size
        self.config = dict(config)
        self._rng_device = torch.device("cpu")

    def _apply(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Augmentation:
        out = super()._apply(fn, *args, **kwargs)  # kornia moves its samplers along
        self._rng_device = fn(torch.zeros((), device=self._rng_device)).device
        return out

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, channels=self.channels)
        return self.apply_unchecked(x)

    def apply_unchecked(self, x: Tensor) -> Tensor:
        """Augment ``x`` without validating it (for callers that already did)."""
        if x.device != self._rng_device:
            self.pipeline.to(x.device)
            self._rng_device = x.device
        work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        return self.pipeline(work).to(x.dtype)

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.config.items())
        return f"recipe={self.recipe!r}, channels={self.channels}, image_size={self.image_size}, {opts}"


def _pair(name: str, value: Any, lo: float, hi: float) -> tuple[float, float]:
    """Validate ``value`` as ``(a, b)`` with ``lo <= a <= b <= hi``."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ContrastkitError(
            f"Override {name} must be a pair of numbers, got {value!r}."
        ) from None
    if not lo <= a <= b <= hi:
        raise ContrastkitError(
            f"Override {name}={value!r} must satisfy {lo} <= low <= high <= {hi}."
        )
    return a, b


def _prob(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ContrastkitError(f"Override {name} must be a probability in [0, 1], got {value!r}.")
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ContrastkitError(f"Override {name} must be True or False, got {value!r}.")
    return value


def _nonneg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ContrastkitError(f"Override {name} must be a non-negative number, got {value!r}.")
    return float(value)


_VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    "crop_scale": lambda n, v: _pair(n, v, 1e-6, 1.0),
    "crop_ratio": lambda n, v: _pair(n, v, 1e-6, float("inf")),
    "flip": _flag,
    "jitter_strength": _nonneg,
    "jitter_p": _prob,
    "grayscale_p": _prob,
    "blur": _flag,
    "blur_p": _prob,
    "blur_sigma": lambda n, v: _pair(n, v, 1e-6, float("inf")),
}

_COMMON_DEFAULTS: dict[str, Any] = {
    "crop_ratio": (3 / 4, 4 / 3),
    "flip": True,
    "jitter_strength": 0.5,
    "jitter_p": 0.8,
    "blur_p": 0.5,
}

#: Recipe name → default options; the keys are the overrides each recipe accepts.
RECIPES: dict[str, dict[str, Any]] = {
    "simclr": {
        **_COMMON_DEFAULTS,
        "crop_scale": (0.08, 1.0),
        "grayscale_p": 0.2,
        "blur": True,
        "blur_sigma": (0.1, 2.0),
    },
    "small-gray": {
        **_COMMON_DEFAULTS,
        "crop_scale": (0.3, 1.0),
        "blur": False,
        "blur_sigma": (0.1, 1.0),
    },
    "none": {},
}


def _pipeline(cfg: dict[str, Any], *, image_size: int, channels: int, color: bool) -> nn.Module:
    """Crop → flip → colour jitter (→ grayscale) → blur, in SimCLR's order."""
    s = cfg["jitter_strength"]
    rgb = color and channels == 3
    steps: list[nn.Module] = [
        K.RandomResizedCrop(
            (image_size, image_size), scale=cfg["crop_scale"], ratio=cfg["crop_ratio"]
        )
    ]
    if cfg["flip"]:
        steps.append(K.RandomHorizontalFlip(p=0.5))
    if s > 0 and cfg["jitter_p"] > 0:
        # SimCLR's colour distortion of strength s: (0.8s, 0.8s, 0.8s, 0.2s); s=0.5 is its CIFAR
        # setting and gives (0.4, 0.4, 0.4, 0.1). Saturation/hue need RGB.
        sat, hue = (0.8 * s, 0.2 * s) if rgb else (0.0, 0.0)
        steps.append(K.ColorJitter(0.8 * s, 0.8 * s, sat, min(hue, 0.5), p=cfg["jitter_p"]))
    if rgb and cfg.get("grayscale_p", 0) > 0:
        steps.append(K.RandomGrayscale(p=cfg["grayscale_p"]))
    if cfg["blur"] and cfg["blur_p"] > 0:
        k = blur_kernel_size(image_size)
        steps.append(K.RandomGaussianBlur((k, k), cfg["blur_sigma"], p=cfg["blur_p"]))
    return K.ImageSequential(*steps)


def build_augmentation(
    recipe: str, *, image_size: int, channels: int, **overrides: Any
) -> nn.Module:
    """Build a batched augmentation mapping ``[B, C, H, W]`` in [0, 1] to augmented images.

    Recipes (all crops output ``image_size × image_size``):

    * ``"simclr"`` — SimCLR's recipe (Chen et al. 2020, Appendix A): RandomResizedCrop with
      ``crop_scale=(0.08, 1)``, horizontal flip p=0.5, ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) with
      p=0.8 and ``jitter_strength`` s=0.5 (= (0.4, 0.4, 0.4, 0.1), the paper's CIFAR setting; s=1
      is its ImageNet one), RandomGrayscale p=0.2, Gaussian blur p=0.5 with an odd kernel ~10% of
      ``image_size`` (at least 3) and sigma in (0.1, 2.0). For inputs with other than 3 channels
      (e.g. grayscale) saturation, hue and random grayscale are skipped: only brightness/contrast.
    * ``"small-gray"`` — for small grayscale images (8×8 digits, 28×28 MNIST/Fashion-MNIST):
      RandomResizedCrop with the milder ``crop_scale=(0.3, 1)`` (tiny images cannot lose 92% of
      their area and stay recognisable), horizontal flip p=0.5 (set ``flip=False`` for digits,
      where mirroring changes meaning), brightness/contrast jitter 0.4 with p=0.8, no blur by
      default (``blur=True`` adds sigma in (0.1, 1.0), p=0.5).
    * ``"none"`` — identity (input validation only); takes no overrides.

    Overrides: ``crop_scale=(lo, hi)``, ``crop_ratio=(lo, hi)``, ``flip: bool``,
    ``jitter_strength: float`` (s above; 0 disables jitter), ``jitter_p``, ``blur: bool``,
    ``blur_p``, ``blur_sigma=(lo, hi)`` and, for ``"simclr"`` only, ``grayscale_p``. Anything else
    raises :class:`ContrastkitError`.
    """
    if recipe not in RECIPES:
        raise ContrastkitError(
            f"Unknown augmentation recipe {recipe!r}; valid recipes are {', '.join(RECIPES)}."
        )
    for name, value in (("image_size", image_size), ("channels", channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ContrastkitError(f"{name} must be a positive integer, got {value!r}.")
    defaults = RECIPES[recipe]
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        valid = ", ".join(sorted(defaults)) or "none"
        raise ContrastkitError(
            f"Unknown override(s) {', '.join(unknown)} for recipe {recipe!r}; valid overrides: {valid}."
        )
    cfg = {**defaults, **{k: _VALIDATORS[k](k, v) for k, v in overrides.items()}}
    if recipe == "none":
        pipeline: nn.Module = nn.Identity()
    else:
        pipeline = _pipeline(
            cfg, image_size=image_size, channels=channels, color=recipe == "simclr"
        )
    return Augmentation(
        pipeline, recipe=recipe, channels=channels, image_size=image_size, config=cfg
    )


class MultiView(nn.Module):
    """Make ``n_views`` independently augmented views of each image (SimCLR §2.1 uses two).

    ``forward(x)`` returns ``[n_views * B, C, H', W']`` in view-major order: rows ``v*B:(v+1)*B``
    are view ``v`` of samples ``0..B-1``. The batch is repeated and augmented in one call, so every
    row draws its own parameters. ``check_values=False`` skips the per-batch finite/range check
    (a host sync) for data that was validated where it entered.
    """

    def __init__(self, augment: nn.Module, n_views: int = 2, *, check_values: bool = True) -> None:
        super().__init__()
        if isinstance(n_views, bool) or not isinstance(n_views, int) or n_views < 1:
            raise ContrastkitError(f"n_views must be a positive integer, got {n_views!r}.")
        self.augment = augment
        self.n_views = n_views
        self.check_values = check_values  # False where the data layer already checked them

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.augment, Augmentation):
            check_images(x, channels=self.augment.channels, values=self.check_values)
            return self.augment.apply_unchecked(x.repeat(self.n_views, 1, 1, 1))
        check_images(x, values=self.check_values)
        return self.augment(x.repeat(self.n_views, 1, 1, 1))

    @property
    def n_global(self) -> int:
        return self.n_views

    def extra_repr(self) -> str:
        return f"n_views={self.n_views}"


class MultiCrop(nn.Module):
    """Global views plus small low-resolution crops: SwAV's multi-crop (Caron et al. 2020, §3.3).

    ``forward(x)`` returns a list of view-major groups ``[global [G·B, C, H, W], small
    [S·B, C, h, w]]``; the views are numbered globals first (``n_global`` of them), then smalls.
    """

    def __init__(self, global_views: MultiView, small_views: MultiView) -> None:
        super().__init__()
        self.global_views, self.small_views = global_views, small_views

    @property
    def n_views(self) -> int:
        return self.global_views.n_views + self.small_views.n_views

    @property
    def n_global(self) -> int:
        return self.global_views.n_views

    def forward(self, x: Tensor) -> list[Tensor]:
        return [self.global_views(x), self.small_views(x)]
