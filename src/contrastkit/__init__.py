"""contrastkit: contrastive representation learning as composable, tested PyTorch parts.

The few names most users need::

    from contrastkit import info_nce, Pairs            # the engine (pure functions)
    from contrastkit import NTXentLoss, InfoNCELoss    # objectives as modules
    from contrastkit import load_config, fit           # recipes and training (Lightning)
    from contrastkit import load_data, image_data_from_arrays
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from contrastkit.config import Config, load_config
from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, info_nce, nt_xent
from contrastkit.objectives import AlignUniformLoss, DCLLoss, InfoNCELoss, NTXentLoss

__version__ = "0.1.0"

_LAZY = {  # heavier imports (Lightning, data sources) load on first use
    "fit": "contrastkit.train.run",
    "FitResult": "contrastkit.train.run",
    "load_data": "contrastkit.data",
    "image_data_from_arrays": "contrastkit.data",
    "ImageData": "contrastkit.data",
}

__all__ = [
    "AlignUniformLoss",
    "Config",
    "ContrastkitError",
    "DCLLoss",
    "FitResult",
    "ImageData",
    "InfoNCELoss",
    "NTXentLoss",
    "Pairs",
    "fit",
    "image_data_from_arrays",
    "info_nce",
    "load_config",
    "load_data",
    "nt_xent",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'contrastkit' has no attribute {name!r}")
