"""Encoder backbones: images ``[B, C, H, W]`` → features ``[B, F]`` (SimCLR's f(·), Chen et al. 2020).

Names accepted by :func:`build_backbone`:

* ``"small-cnn"`` — :class:`SmallCNN`, a 3-block CNN for 8×8 to 32×32 images, F = 4·width (128).
* ``"resnet18-cifar"`` — ResNet-18 with the CIFAR stem used by SimCLR for CIFAR-10 (Chen et al.
  2020, Appendix B.9: 3×3 stride-1 conv1, no max-pool), F = 512.
* ``"torchvision:NAME"`` — any ``torchvision.models`` classification model, randomly initialised,
  classifier replaced by Identity (:class:`TorchvisionBackbone`).
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError

__all__ = [
    "SmallCNN",
    "TorchvisionBackbone",
    "available_backbones",
    "build_backbone",
    "resnet18_cifar",
]

_TV_PREFIX = "torchvision:"
_BUILTIN = ("small-cnn", "resnet18-cifar")


class SmallCNN(nn.Sequential):
    """Three conv3×3-BN-ReLU blocks of widths (w, 2w, 4w), then average pooling to a
    ``pool × pool`` grid (``pool=1``: global average pooling); ``batch_norm=False`` drops the
    BatchNorms (the convolutions get biases), so a sample's features do not depend on its batch.

    A 2×2 max-pool follows a block only while the result stays at least 4×4, so 8×8 inputs pool
    once (8→4), 28×28 twice (28→14→7) and 32×32 three times (32→16→8→4). Output: ``[B, 4w]``
    (``width=32`` → 128 features; ``4w·pool²`` in general, keeping coarse layout). Weights and activations use channels-last memory format, which
    makes CPU training markedly faster (≈1.5–1.8k img/s forward+backward at 28×28, batch 256,
    on one CPU thread).
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        width: int = 32,
        pool: int = 1,
        batch_norm: bool = True,
    ) -> None:
        _check_positive_int("width", width)
        _check_positive_int("pool", pool)
        layers: list[nn.Module] = []
        size, channels = image_size, in_channels
        for out_channels in (width, 2 * width, 4 * width):
            layers += [
                nn.Conv2d(channels, out_channels, 3, padding=1, bias=not batch_norm),
                *([nn.BatchNorm2d(out_channels)] if batch_norm else []),
                nn.ReLU(inplace=True),
            ]
            if size // 2 >= 4:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            channels = out_channels
        layers += [nn.AdaptiveAvgPool2d(pool), nn.Flatten()]
        super().__init__(*layers)
        self.out_dim = 4 * width * pool * pool
        self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last))


def resnet18_cifar(in_channels: int) -> nn.Module:
    """torchvision ResNet-18 with the CIFAR stem (3×3 stride-1 conv1, no max-pool), fc = Identity."""
    model = torchvision.models.resnet18(weights=None)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    return model


class TorchvisionBackbone(nn.Module):
    """A torchvision classifier used as a feature extractor: ``[B, C, H, W]`` → ``[B, F]``.

    Inputs with ``in_channels != 3`` go through a small adapter instead of surgery on the model's
    first layer (which differs per family): 1 channel is repeated to 3 (no parameters, equivalent
    to a first conv whose weights are summed over RGB); other counts use a learned 1×1 conv to 3
    channels. Tuple outputs (auxiliary heads) are reduced to their main output.
    """

    def __init__(self, model: nn.Module, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.adapter: nn.Module | None = (
            None if in_channels in (1, 3) else nn.Conv2d(in_channels, 3, kernel_size=1)
        )
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        elif self.adapter is not None:
            x = self.adapter(x)
        out = self.model(x)
        if not isinstance(out, Tensor):  # e.g. InceptionOutputs / GoogLeNetOutputs
            out = out[0]
        return out.flatten(1)


def _strip_classifier(model: nn.Module, name: str) -> None:
    """Replace the final classification layer of a torchvision model with Identity, in place.

    ``.fc`` / ``.head`` / ``.classifier`` that are a Linear are replaced outright; in a Sequential
    (``.classifier`` / ``.heads``) only the last Linear (or SqueezeNet's 1×1 conv) is, keeping the
    penultimate layers (e.g. MobileNetV3's 1024-d hidden layer, ConvNeXt's norm + flatten).
    """
    for attr in ("fc", "classifier", "head", "heads"):
        module = getattr(model, attr, None)
        if isinstance(module, nn.Linear):
            setattr(model, attr, nn.Identity())
            return
        if isinstance(module, nn.Sequential):
            for index in reversed(range(len(module))):
                if isinstance(module[index], nn.Linear | nn.Conv2d):
                    module[index] = nn.Identity()
                    return
    raise ContrastkitError(
        f"Cannot find the classifier of torchvision model {name!r} (looked for .fc, .classifier, "
        ".head, .heads); use another backbone."
    )


def _drop_aux_heads(model: nn.Module) -> None:
    """Disable Inception-v3/GoogLeNet auxiliary classifiers (wasted compute for features)."""
    if hasattr(model, "aux_logits"):
        model.aux_logits = False
        for attr in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, attr):
                setattr(model, attr, None)


def _torchvision_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def available_backbones() -> list[str]:
    """Names :func:`build_backbone` accepts: the built-ins plus ``torchvision:NAME`` per model."""
    return [*_BUILTIN, *(_TV_PREFIX + n for n in _torchvision_names())]


def _unknown(name: str) -> ContrastkitError:
    names = available_backbones()
    guesses = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    if name in _torchvision_names():
        guesses = [_TV_PREFIX + name]
    hint = f"; did you mean {guesses[0]!r}?" if guesses else "."
    return ContrastkitError(
        f"Unknown backbone {name!r}: valid names are {', '.join(_BUILTIN)} or torchvision:NAME "
        f"for one of {len(names) - len(_BUILTIN)} torchvision classification models "
        f"(e.g. torchvision:resnet18){hint}"
    )


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ContrastkitError(f"{name} must be a positive integer, got {value!r}.")


def _build_torchvision(tv_name: str, in_channels: int, options: dict[str, Any]) -> nn.Module:
    if tv_name not in _torchvision_names():
        raise _unknown(_TV_PREFIX + tv_name)
    try:
        with warnings.catch_warnings():
            # GoogLeNet/Inception warn that their default init will change; irrelevant here.
            warnings.filterwarnings("ignore", message=".*default weight initialization.*")
            model = torchvision.models.get_model(tv_name, weights=None, **options)
    except TypeError as err:
        raise ContrastkitError(
            f"torchvision model {tv_name!r} rejected options {options}: {err}."
        ) from err
    _drop_aux_heads(model)
    _strip_classifier(model, tv_name)
    return TorchvisionBackbone(model, in_channels)


@torch.no_grad()
def _feature_dim(module: nn.Module, name: str, in_channels: int, image_size: int) -> int:
    """Find F by a dry forward of two random images in eval mode (training mode is restored)."""
    was_training = module.training
    module.eval()
    try:
        out = module(torch.rand(2, in_channels, image_size, image_size))
    except Exception as err:  # any failure means this input size does not work
        raise ContrastkitError(
            f"Backbone {name!r} cannot process {in_channels}×{image_size}×{image_size} images "
            f"({type(err).__name__}: {err}); use a larger image_size or another backbone."
        ) from err
    finally:
        module.train(was_training)
    if out.ndim != 2 or out.shape[0] != 2:
        raise ContrastkitError(
            f"Backbone {name!r} produced features of shape {tuple(out.shape)} instead of [B, F]."
        )
    return int(out.shape[1])


def build_backbone(
    name: str, *, in_channels: int, image_size: int, **options: Any
) -> tuple[nn.Module, int]:
    """Build an encoder mapping ``[B, in_channels, image_size, image_size]`` → ``[B, F]``; returns it and F.

    ``options``: ``width``, ``pool`` and ``batch_norm`` for ``"small-cnn"`` (defaults 32, 1 and
    true; F = 4·width·pool²); for ``"torchvision:NAME"``
    they are passed to ``torchvision.models.get_model`` (e.g. ``image_size=32`` for ViTs);
    ``"resnet18-cifar"`` takes none. Weights are random (no downloads). F is checked by a dry
    forward at ``image_size``, so a model that cannot handle that size fails here, not in training.
    """
    if not isinstance(name, str):
        raise ContrastkitError(f"Backbone name must be a string, got {type(name).__name__}.")
    _check_positive_int("in_channels", in_channels)
    _check_positive_int("image_size", image_size)
    if name == "small-cnn":
        unknown = set(options) - {"width", "pool", "batch_norm"}
        if unknown:
            raise ContrastkitError(
                "Backbone 'small-cnn' takes only the options width, pool and batch_norm, got "
                f"{sorted(unknown)}."
            )
        if not isinstance(options.get("batch_norm", True), bool):
            raise ContrastkitError("Backbone option batch_norm must be true or false.")
        module: nn.Module = SmallCNN(in_channels, image_size, **options)
    elif name == "resnet18-cifar":
        if options:
            raise ContrastkitError(
                f"Backbone 'resnet18-cifar' takes no options, got {sorted(options)}."
            )
        module = resnet18_cifar(in_channels)
    elif name.startswith(_TV_PREFIX):
        module = _build_torchvision(name[len(_TV_PREFIX) :], in_channels, options)
    else:
        raise _unknown(name)
    return module, _feature_dim(module, name, in_channels, image_size)
