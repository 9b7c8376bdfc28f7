"""Two towers: CLIP / ConVIRT with the contrastive-gap terms, CoCoSoDa code search,
SimCSE / WhitenedCSE sentence embeddings, and their retrieval / zero-shot / similarity evaluation.

``fit_evaluate(config)`` trains and evaluates (:mod:`contrastkit.multimodal.run`); importing this
package stays light (transformers loads only when a run starts).
"""

from __future__ import annotations

from typing import Any

#: methods trained by this package (``config.method``)
METHODS = ("clip", "convirt", "cocosoda", "simcse", "whitenedcse")

__all__ = ["METHODS", "TowerOptions", "TwoTowerResult", "fit_evaluate"]


def __getattr__(name: str) -> Any:
    if name in ("TowerOptions", "TwoTowerResult", "fit_evaluate"):
        from contrastkit.multimodal import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
