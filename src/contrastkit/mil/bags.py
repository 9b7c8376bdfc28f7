"""Bags of real images for multiple-instance learning (MIL).

A bag is positive when it holds at least one instance of a target class (the standard MIL
assumption; Dietterich et al. 1997), as in the MNIST-bags benchmark of Ilse, Tomczak & Welling
(2018, §5.2). Two knobs set how hard the problem is:

* ``positive_fraction`` — the witness rate: the share of a positive bag's instances that are of a
  target class (SC-MIL's second level of imbalance, Juyal et al. 2024, §1);
* ``positive_bag_rate`` — the share of positive bags (label imbalance).

Bags are stored flat, bag-major: ``instance_index`` points into a shared image pool and
``bag_index`` says which bag each instance belongs to, so bags of any size batch together
without padding (pooling works on segments, see :mod:`contrastkit.mil.pooling`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from contrastkit.errors import ContrastkitError

__all__ = ["BagBatch", "Bags", "image_bags", "make_bags"]


@dataclass(frozen=True)
class BagBatch:
    """Instances of ``n_bags`` bags, bag-major: ``x [n, C, H, W]``, ``bag_index [n]`` in
    ``[0, n_bags)``, ``bag_labels [n_bags]`` and ``instance_labels [n]`` (0/1)."""

    x: Tensor
    bag_index: Tensor
    bag_labels: Tensor
    instance_labels: Tensor

    @property
    def n_bags(self) -> int:
        return len(self.bag_labels)


@dataclass(frozen=True, eq=False)
class Bags:
    """Bags over a pool of images.

    Attributes:
        images: ``[P, C, H, W]`` float images shared by every bag.
        instance_index: ``[n]`` row of ``images`` of each instance, bag-major.
        bag_index: ``[n]`` non-decreasing bag of each instance, every bag in ``[0, n_bags)``
            present at least once.
        bag_labels: ``[n_bags]`` 0/1 bag labels.
        instance_labels: ``[n]`` 0/1 instance labels (hidden from training; for evaluation).
    """

    images: Tensor
    instance_index: Tensor
    bag_index: Tensor
    bag_labels: Tensor
    instance_labels: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.images, Tensor) or self.images.ndim != 4:
            raise ContrastkitError("Bags.images must be an image tensor [P, C, H, W].")
        n = len(self.instance_index)
        for name in ("instance_index", "bag_index", "bag_labels", "instance_labels"):
            value = getattr(self, name)
            if not isinstance(value, Tensor) or value.ndim != 1:
                raise ContrastkitError(f"Bags.{name} must be a 1-D tensor.")
            if value.is_floating_point() or value.dtype == torch.bool:
                raise ContrastkitError(
                    f"Bags.{name} has dtype {value.dtype}; pass integer tensors (e.g. .long())."
                )
        if len(self.bag_index) != n or len(self.instance_labels) != n:
            raise ContrastkitError(
                "Bags.instance_index, bag_index and instance_labels need one entry per instance; "
                f"got {n}, {len(self.bag_index)} and {len(self.instance_labels)}."
            )
        counts = bag_sizes(self.bag_index, len(self.bag_labels))
        if n and bool((self.bag_index[1:] < self.bag_index[:-1]).any()):
            raise ContrastkitError("Bags.bag_index must be sorted (instances stored bag-major).")
        if n and (
            int(self.instance_index.min()) < 0 or int(self.instance_index.max()) >= len(self.images)
        ):
            raise ContrastkitError("Bags.instance_index points outside the image pool.")
        for name in ("bag_labels", "instance_labels"):
            values = getattr(self, name)
            if len(values) and not bool(((values == 0) | (values == 1)).all()):
                raise ContrastkitError(f"Bags.{name} must be 0/1 (negative/positive).")
        # the standard MIL assumption: a bag is positive iff it holds a positive instance
        has_positive = torch.zeros(len(counts), dtype=torch.long).scatter_reduce(
            0, self.bag_index, self.instance_labels.long(), "amax"
        )
        if not torch.equal(has_positive, self.bag_labels.long()):
            raise ContrastkitError(
                "Bags.bag_labels disagree with instance_labels: a bag must be positive exactly "
                "when it holds a positive instance."
            )

    @property
    def n_bags(self) -> int:
        return len(self.bag_labels)

    @property
    def n_instances(self) -> int:
        return len(self.instance_index)

    @property
    def sizes(self) -> Tensor:
        """``[n_bags]`` instances per bag."""
        return torch.bincount(self.bag_index, minlength=self.n_bags)

    @property
    def offsets(self) -> Tensor:
        """``[n_bags + 1]``: bag ``b`` holds instances ``offsets[b]:offsets[b+1]``."""
        return torch.cat([self.sizes.new_zeros(1), self.sizes.cumsum(0)])

    def batch(self, bags: Tensor | Sequence[int]) -> BagBatch:
        """The instances of ``bags`` (indices into this set), relabelled ``0..len(bags)-1``."""
        bags = torch.as_tensor(bags, dtype=torch.long)
        offsets = self.offsets
        starts, sizes = offsets[bags], self.sizes[bags]
        local = torch.repeat_interleave(torch.arange(len(bags)), sizes)
        within = torch.arange(int(sizes.sum())) - torch.repeat_interleave(
            sizes.cumsum(0) - sizes, sizes
        )
        rows = starts[local] + within
        return BagBatch(
            x=self.images[self.instance_index[rows]],
            bag_index=local,
            bag_labels=self.bag_labels[bags],
            instance_labels=self.instance_labels[rows],
        )

    def instances(self) -> tuple[Tensor, Tensor, Tensor]:
        """Every instance as a flat dataset: ``(x, candidate bag label, true instance label)``."""
        return (
            self.images[self.instance_index],
            self.bag_labels[self.bag_index],
            self.instance_labels,
        )

    def __repr__(self) -> str:
        positive = int(self.bag_labels.sum())
        witness = self.instance_labels[self.bag_labels[self.bag_index] == 1].float().mean()
        return (
            f"Bags(n_bags={self.n_bags}, positive_bags={positive}, instances={self.n_instances}, "
            f"witness_rate={float(witness) if positive else 0.0:.3f})"
        )


def bag_sizes(bag_index: Tensor, n_bags: int) -> Tensor:
    """``[n_bags]`` instance counts; raises if any bag has no instance."""
    if len(bag_index) and (int(bag_index.min()) < 0 or int(bag_index.max()) >= n_bags):
        raise ContrastkitError(
            f"bag_index must lie in [0, {n_bags}), got values in "
            f"[{int(bag_index.min())}, {int(bag_index.max())}]."
        )
    counts = torch.bincount(bag_index, minlength=n_bags)
    if n_bags and int(counts.min()) == 0:
        empty = int((counts == 0).nonzero()[0])
        raise ContrastkitError(
            f"Bag {empty} has no instances; every bag needs at least one (drop empty bags)."
        )
    return counts


def _check_fraction(name: str, value: Any, *, closed_right: bool) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and value > 0 and (value <= 1 if closed_right else value < 1)
    if not ok:
        interval = "(0, 1]" if closed_right else "(0, 1)"
        raise ContrastkitError(f"{name} must be a number in {interval}, got {value!r}.")
    return float(value)


def make_bags(
    images: Tensor,
    labels: Tensor,
    target: int | Sequence[int],
    *,
    n_bags: int,
    bag_size: int | tuple[int, int] = 10,
    positive_fraction: float = 0.2,
    positive_bag_rate: float = 0.5,
    seed: int = 0,
) -> Bags:
    """Draw labelled bags from labelled images.

    Args:
        images: ``[P, C, H, W]`` image pool; ``labels``: ``[P]`` integer classes.
        target: the class (or classes) that make an instance positive.
        n_bags: number of bags.
        bag_size: instances per bag, or ``(lo, hi)`` for sizes uniform in ``[lo, hi]``.
        positive_fraction: witness rate in (0, 1]: a positive bag of size ``s`` holds
            ``max(1, round(positive_fraction · s))`` target instances, the rest non-target.
        positive_bag_rate: share of positive bags in (0, 1) (``round(rate · n_bags)``, at least
            one positive and one negative bag).
        seed: seeds the draw; instances are drawn without replacement, so no image is in two
            bags.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ContrastkitError("images must be a float tensor [P, C, H, W].")
    if not isinstance(labels, Tensor) or labels.ndim != 1:
        raise ContrastkitError("labels must be a 1-D integer tensor with one class per image.")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ContrastkitError(f"labels have dtype {labels.dtype}; pass integer classes.")
    if len(labels) != len(images):
        raise ContrastkitError(
            f"labels has {len(labels)} entries but there are {len(images)} images; pass one "
            "class per image."
        )
    if isinstance(n_bags, bool) or not isinstance(n_bags, int) or n_bags < 2:
        raise ContrastkitError(f"n_bags must be an integer ≥ 2, got {n_bags!r}.")
    positive_fraction = _check_fraction("positive_fraction", positive_fraction, closed_right=True)
    positive_bag_rate = _check_fraction("positive_bag_rate", positive_bag_rate, closed_right=False)
    pair = bag_size if isinstance(bag_size, tuple | list) and len(bag_size) == 2 else (None, None)
    lo, hi = (bag_size, bag_size) if isinstance(bag_size, int) else pair
    if isinstance(lo, bool) or not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
        raise ContrastkitError(
            f"bag_size must be an integer ≥ 1 or a pair lo ≤ hi of them, got {bag_size!r}; "
            "bags without instances are not allowed."
        )
    targets = torch.as_tensor([target] if isinstance(target, int) else list(target))
    is_target = torch.isin(labels, targets)
    rng = np.random.default_rng(seed)
    n_positive = min(max(round(positive_bag_rate * n_bags), 1), n_bags - 1)
    bag_labels = rng.permutation(
        np.r_[np.ones(n_positive, int), np.zeros(n_bags - n_positive, int)]
    )
    sizes = rng.integers(lo, hi + 1, size=n_bags)
    witnesses = np.where(
        bag_labels == 1, np.maximum(1, np.round(positive_fraction * sizes)).astype(int), 0
    )
    pools = {
        1: rng.permutation(is_target.nonzero().flatten().numpy()),
        0: rng.permutation((~is_target).nonzero().flatten().numpy()),
    }
    needed = {1: int(witnesses.sum()), 0: int((sizes - witnesses).sum())}
    for kind, name in ((1, "target"), (0, "non-target")):
        if needed[kind] > len(pools[kind]):
            raise ContrastkitError(
                f"These bags need {needed[kind]} {name} images but the pool has "
                f"{len(pools[kind])}; lower n_bags, bag_size or positive_fraction."
            )
    taken = {1: 0, 0: 0}
    index, instance_labels = [], []
    for size, k in zip(sizes, witnesses, strict=True):
        rows = np.r_[pools[1][taken[1] : taken[1] + k], pools[0][taken[0] : taken[0] + size - k]]
        taken[1], taken[0] = taken[1] + k, taken[0] + size - k
        order = rng.permutation(size)
        index.append(rows[order])
        instance_labels.append(np.r_[np.ones(k, int), np.zeros(size - k, int)][order])
    return Bags(
        images=images,
        instance_index=torch.as_tensor(np.concatenate(index), dtype=torch.long),
        bag_index=torch.repeat_interleave(torch.arange(n_bags), torch.as_tensor(sizes)),
        bag_labels=torch.as_tensor(bag_labels, dtype=torch.long),
        instance_labels=torch.as_tensor(np.concatenate(instance_labels), dtype=torch.long),
    )


def image_bags(
    data: Any = "fashion-mnist",
    target: int | Sequence[int] = 0,
    *,
    n_train_bags: int = 300,
    n_test_bags: int = 200,
    seed: int = 0,
    **options: Any,
) -> tuple[Bags, Bags]:
    """Train and test bags from the train and test images of a labelled image source.

    ``data`` is an :class:`~contrastkit.data.ImageData` or a source name for
    :func:`contrastkit.load_data` (e.g. ``"fashion-mnist"``, ``"digits"``); the test bags are
    built from the held-out test images only. ``options`` go to :func:`make_bags`.
    """
    if isinstance(data, str):
        from contrastkit.data import load_data

        data = load_data(data, seed=0)
    if data.y_train is None or data.y_test is None:
        raise ContrastkitError(f"{data.name} has no labels; MIL bags need labelled images.")
    train = make_bags(data.x_train, data.y_train, target, n_bags=n_train_bags, seed=seed, **options)
    test = make_bags(
        data.x_test, data.y_test, target, n_bags=n_test_bags, seed=seed + 10_000, **options
    )
    return train, test
