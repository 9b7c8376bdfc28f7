"""Pure tensor math: pair structure and the InfoNCE engine. No state, no Lightning, no I/O."""

from contrastkit.functional.distributed import gather, gather_with_grad, world
from contrastkit.functional.geometry import alignment, cross_uniformity, tolerance, uniformity
from contrastkit.functional.infonce import info_nce, negative_hardness, nt_xent
from contrastkit.functional.multimodal import clip_directions, clip_loss, gap_terms
from contrastkit.functional.pairs import Pairs
from contrastkit.functional.weights import vmf_positive_weights

__all__ = [
    "Pairs",
    "alignment",
    "clip_directions",
    "clip_loss",
    "cross_uniformity",
    "gap_terms",
    "gather",
    "gather_with_grad",
    "info_nce",
    "negative_hardness",
    "nt_xent",
    "tolerance",
    "uniformity",
    "vmf_positive_weights",
    "world",
]
