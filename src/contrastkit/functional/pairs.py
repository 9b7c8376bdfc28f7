"""Pair structure as data: ids say who is positive for whom (DESIGN.md, principle 2).

Anchor ``i`` and candidate ``j`` are positives when ``anchor_ids[i] == candidate_ids[j]``; the
candidate at ``self_offset + i`` is anchor ``i`` itself and is neither positive nor negative.
Masks are built on demand for any block of rows and columns, so a tiled engine never needs the
full N×M matrix and no list of index pairs is ever materialised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from contrastkit.errors import ContrastkitError


@dataclass(frozen=True)
class Pairs:
    """Positive/excluded structure between ``N`` anchors and ``M`` candidates.

    Attributes:
        anchor_ids: ``[N]`` integer ids of the anchors.
        candidate_ids: ``[M]`` integer ids of the candidates.
        self_offset: when anchors are also candidates (self-contrast), anchor ``i`` is candidate
            ``self_offset + i`` and is excluded; ``None`` when the two sets are disjoint.
        batch_local: the ids are sample indices within this process's batch (views, cross),
            in ``[0, M)``, so they are made unique per rank when candidates are gathered across
            processes; class ids (labels) are global and are not.
        n_views: rows are ``n_views`` view-major blocks of one batch (set by ``views``/``labels``).
    """

    anchor_ids: Tensor
    candidate_ids: Tensor
    self_offset: int | None = None
    batch_local: bool = False
    n_views: int | None = None

    def __post_init__(self) -> None:
        for name in ("anchor_ids", "candidate_ids"):
            ids = getattr(self, name)
            if not isinstance(ids, Tensor) or ids.ndim != 1:
                raise ContrastkitError(f"Pairs.{name} must be a 1-D integer tensor.")
            if ids.dtype.is_floating_point or ids.dtype == torch.bool:
                raise ContrastkitError(
                    f"Pairs.{name} has dtype {ids.dtype}; pass integer ids (e.g. labels.long())."
                )
        if self.self_offset is not None and not (
            0 <= self.self_offset <= len(self.candidate_ids) - len(self.anchor_ids)
        ):
            raise ContrastkitError(
                f"Pairs.self_offset={self.self_offset} puts anchors outside the "
                f"{len(self.candidate_ids)} candidates; anchors must be a contiguous block of them."
            )

    @classmethod
    def views(
        cls, n_samples: int, n_views: int = 2, device: torch.device | str | None = None
    ) -> Pairs:
        """Instance discrimination (SimCLR): rows are view-major ``[view0 of 0..B-1, view1 ...]``;
        a row's positives are the other views of the same sample."""
        if n_samples < 1 or n_views < 2:
            raise ContrastkitError(
                f"Contrasting views needs at least 1 sample and 2 views, got {n_samples} and {n_views}."
            )
        ids = torch.arange(n_samples, device=device).repeat(n_views)
        return cls(ids, ids, 0, batch_local=True, n_views=n_views)

    @classmethod
    def labels(cls, labels: Tensor, n_views: int = 1) -> Pairs:
        """Supervised contrast (SupCon, Khosla et al. 2020): positives share a class; ``labels``
        has one entry per sample and rows are view-major over ``n_views`` views."""
        ids = labels.reshape(-1).repeat(n_views)
        return cls(ids, ids, 0, n_views=n_views)

    @classmethod
    def cross(cls, n_samples: int, device: torch.device | str | None = None) -> Pairs:
        """Two disjoint sets matched row by row (query i ↔ key i; MoCo, CLIP)."""
        ids = torch.arange(n_samples, device=device)
        return cls(ids, ids, None, batch_local=True)

    @property
    def n_anchors(self) -> int:
        return len(self.anchor_ids)

    @property
    def n_candidates(self) -> int:
        return len(self.candidate_ids)

    def positive_mask(self, rows: slice = slice(None), cols: slice = slice(None)) -> Tensor:
        """Boolean ``[rows, cols]`` block: True where the candidate is a positive of the anchor."""
        return self.masks(rows, cols)[0]

    def masks(
        self, rows: slice = slice(None), cols: slice = slice(None), n_columns: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(positive, is_self)`` boolean ``[rows, cols]`` blocks, built together.

        ``n_columns`` (default: the candidates) may exceed the candidates: the columns beyond them
        are extra negatives (a queue), neither positive nor self.
        """
        device = self.anchor_ids.device
        r = torch.arange(*rows.indices(self.n_anchors), device=device)
        c = torch.arange(
            *cols.indices(self.n_candidates if n_columns is None else n_columns), device=device
        )
        known = c < self.n_candidates
        same = self.anchor_ids[r, None] == self.candidate_ids[c.clamp(max=self.n_candidates - 1)]
        is_self = (
            torch.zeros(len(r), len(c), dtype=torch.bool, device=device)
            if self.self_offset is None
            else (r[:, None] + self.self_offset) == c[None, :]
        )
        return same & known & ~is_self, is_self

    def self_mask(self, rows: slice = slice(None), cols: slice = slice(None)) -> Tensor:
        """Boolean ``[rows, cols]`` block: True where the candidate is the anchor itself."""
        return self.masks(rows, cols)[1]
