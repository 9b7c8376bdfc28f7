"""Pure tensor math: pair structure and the InfoNCE engine. No state, no Lightning, no I/O."""

from contrastkit.functional.infonce import info_nce, negative_hardness, nt_xent
from contrastkit.functional.pairs import Pairs
from contrastkit.functional.weights import vmf_positive_weights

__all__ = ["Pairs", "info_nce", "negative_hardness", "nt_xent", "vmf_positive_weights"]
