"""Pair structure from continuous targets: positives are the candidates whose target lies within a
window of the anchor's (|y_i − y_j| ≤ ω; ConR, Keramati et al. 2024, §3; SupReMix's real positives,
Wu et al. 2023, with a tie tolerance ε).

Unlike class ids, "within ω" is not an equivalence relation, so ids cannot say it; the masks are
built from the targets block by block instead. The InfoNCE engine's dense path reads them through
:meth:`Pairs.masks`; call :func:`~contrastkit.functional.info_nce` with ``backend="dense"`` and
``distributed=False`` (its tiled and cross-rank paths build masks from ids).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from contrastkit.errors import ContrastkitError
from contrastkit.functional.pairs import Pairs

__all__ = ["TargetPairs", "check_targets"]


def check_targets(targets: Any, name: str = "targets", n: int | None = None) -> Tensor:
    """``[n]`` finite real targets as a float tensor (``[n, 1]`` is flattened)."""
    if not isinstance(targets, Tensor):
        try:
            targets = torch.as_tensor(targets)
        except (TypeError, ValueError, RuntimeError):
            raise ContrastkitError(
                f"{name} must be a tensor or array of numbers, got {type(targets).__name__}."
            ) from None
    if targets.ndim == 2 and targets.shape[1] == 1:
        targets = targets[:, 0]
    if targets.ndim != 1:
        raise ContrastkitError(
            f"{name} must be 1-D [num_samples] (one scalar target each), got shape "
            f"{tuple(targets.shape)}."
        )
    if targets.dtype == torch.bool or targets.is_complex():
        raise ContrastkitError(f"{name} must be real numbers, got dtype {targets.dtype}.")
    if n is not None and len(targets) != n:
        raise ContrastkitError(
            f"{name} has {len(targets)} entries but there are {n} samples; pass one target each."
        )
    targets = targets.to(torch.promote_types(targets.dtype, torch.float32))
    if not bool(torch.isfinite(targets).all()):
        raise ContrastkitError(
            f"{name} contain NaN or infinite values; drop or impute those samples first."
        )
    return targets


@dataclass(frozen=True)
class TargetPairs(Pairs):
    """Anchor ``i`` and candidate ``j`` are positives when ``|y_i − y_j| ≤ window``.

    The integer ids are row numbers (kept for :class:`Pairs`' checks); the targets decide.
    """

    anchor_targets: Tensor | None = None
    candidate_targets: Tensor | None = None
    window: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.anchor_targets is None or self.candidate_targets is None:
            raise ContrastkitError("TargetPairs needs anchor_targets and candidate_targets.")
        if (len(self.anchor_targets), len(self.candidate_targets)) != (
            self.n_anchors,
            self.n_candidates,
        ):
            raise ContrastkitError("TargetPairs needs one target per anchor and per candidate.")
        if not (isinstance(self.window, int | float) and 0 <= self.window < float("inf")):
            raise ContrastkitError(
                f"The positive window must be a finite number ≥ 0, got {self.window!r}."
            )

    @classmethod
    def from_targets(cls, targets: Any, window: float = 0.0, n_views: int = 1) -> TargetPairs:
        """Self-contrast of a view-major batch: ``targets`` has one entry per sample and rows
        are ``n_views`` view-major blocks (the other views of a sample are always positives)."""
        y = check_targets(targets).repeat(n_views)
        ids = torch.arange(len(y), device=y.device)
        return cls(
            ids,
            ids,
            0,
            n_views=n_views,
            anchor_targets=y,
            candidate_targets=y,
            window=float(window),
        )

    def masks(
        self, rows: slice = slice(None), cols: slice = slice(None), n_columns: int | None = None
    ) -> tuple[Tensor, Tensor]:
        device = self.anchor_ids.device
        r = torch.arange(*rows.indices(self.n_anchors), device=device)
        c = torch.arange(
            *cols.indices(self.n_candidates if n_columns is None else n_columns), device=device
        )
        known = c < self.n_candidates
        distance = (
            self.anchor_targets[r, None]
            - self.candidate_targets[c.clamp(max=self.n_candidates - 1)]
        ).abs()
        is_self = (
            torch.zeros(len(r), len(c), dtype=torch.bool, device=device)
            if self.self_offset is None
            else (r[:, None] + self.self_offset) == c[None, :]
        )
        return (distance <= self.window) & known & ~is_self, is_self
