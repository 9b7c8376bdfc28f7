"""Pure tensor math: pair structure and the InfoNCE engine. No state, no Lightning, no I/O."""

from contrastkit.functional.infonce import info_nce, nt_xent
from contrastkit.functional.pairs import Pairs

__all__ = ["Pairs", "info_nce", "nt_xent"]
