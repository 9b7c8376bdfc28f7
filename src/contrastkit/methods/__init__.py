"""Methods as compositions of views, backbone, head and objective."""

from contrastkit.methods.module import ContrastiveMethod
from contrastkit.methods.registry import METHODS, OBJECTIVES, build_method

__all__ = ["METHODS", "OBJECTIVES", "ContrastiveMethod", "build_method"]
