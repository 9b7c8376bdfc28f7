"""SC-MIL: supervised contrastive learning on bag representations (Juyal et al. 2024, "SC-MIL:
Supervised Contrastive Multiple Instance Learning for Imbalanced Classification in Pathology").

Each bag ``X_b`` goes instance encoder → MIL pooling → ``h_b``; a projection head gives
``z_b = normalize(g(h_b))`` and a classifier ``c(h_b)`` the logits. With ``V`` stochastic views
of every bag,

    L_t = α_t · L_out(z, y) + (1 − α_t) · CE(c(h), y),

where ``L_out`` is SupCon's loss (Khosla et al. 2020, eq. 2) over the ``V·B`` bag embeddings with
positives = bags of the same label — the InfoNCE engine with ``Pairs.labels(y, n_views=V)`` — and
``α_t`` moves from 1 to 0 over training: the paper's "joint training that progressively
transitions from learning bag-level representations to optimal classifier learning" (abstract;
the schedule itself is not published, BBN's parabolic decay ``α = 1 − t²`` is the default here).
With ``α ≡ 0`` this is plain attention-MIL (Ilse et al. 2018) trained with cross-entropy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, info_nce
from contrastkit.mil.bags import BagBatch, Bags
from contrastkit.mil.pooling import build_pooling

__all__ = [
    "SCHEDULES",
    "MILModel",
    "MILOutput",
    "SCMILLoss",
    "alpha_schedule",
    "bag_views",
    "fit_mil",
    "predict_mil",
    "supcon_bags",
]

Schedule = Callable[[float], float]

#: α as a function of training progress t ∈ [0, 1] (1 = all representation, 0 = all classifier).
SCHEDULES: dict[str, Schedule] = {
    "parabolic": lambda t: 1.0 - t * t,  # BBN (Zhou et al. 2020, eq. 3)
    "linear": lambda t: 1.0 - t,
    "cosine": lambda t: 0.5 * (1.0 + math.cos(math.pi * t)),
    "supcon": lambda t: 1.0,
    "ce": lambda t: 0.0,
}


def alpha_schedule(schedule: str | float | Schedule) -> Schedule:
    """A named schedule (see :data:`SCHEDULES`), a constant α in [0, 1], or a callable."""
    if callable(schedule):
        return schedule
    if isinstance(schedule, int | float) and not isinstance(schedule, bool):
        if not 0 <= schedule <= 1:
            raise ContrastkitError(f"A constant α must lie in [0, 1], got {schedule!r}.")
        return lambda t: float(schedule)
    if schedule in SCHEDULES:
        return SCHEDULES[schedule]
    raise ContrastkitError(
        f"Unknown α schedule {schedule!r}; use one of {', '.join(SCHEDULES)}, a number in "
        "[0, 1] or a callable of progress."
    )


def supcon_bags(
    z: Tensor,
    labels: Tensor,
    n_views: int = 1,
    *,
    temperature: float = 0.1,
    base_temperature: float | None = None,
    count_anchors_without_positives: bool = True,
) -> Tensor:
    """SupCon ``L_out`` (Khosla et al. 2020, eq. 2) of view-major bag embeddings ``z [V·B, D]``
    with bag ``labels [B]``, scaled by ``τ / τ_base`` as in the reference code.

    ``count_anchors_without_positives=True`` is the reference code's mean over all ``V·B``
    anchors (an anchor with no positive adds 0); ``False`` averages over anchors with a positive
    (the engine's default). With two or more views every anchor has a positive and both agree.
    """
    labels = _check_labels(labels)
    if n_views < 1 or len(z) != n_views * len(labels):
        raise ContrastkitError(
            f"z has {len(z)} rows but there are {len(labels)} bags × {n_views} views."
        )
    pairs = Pairs.labels(labels, n_views=n_views)
    scale = 1.0 if base_temperature is None else temperature / base_temperature
    if count_anchors_without_positives:
        loss = info_nce(z, pairs, temperature=temperature, reduction="sum") / len(z)
    else:
        loss = info_nce(z, pairs, temperature=temperature)
    return scale * loss


def _check_labels(labels: Tensor, n: int | None = None) -> Tensor:
    if not isinstance(labels, Tensor) or labels.ndim != 1:
        raise ContrastkitError("Bag labels must be a 1-D integer tensor [n_bags].")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ContrastkitError(
            f"Bag labels have dtype {labels.dtype}; pass integer classes (e.g. labels.long())."
        )
    if n is not None and len(labels) != n:
        raise ContrastkitError(
            f"There are {len(labels)} bag labels for {n} bags; pass one label per bag."
        )
    return labels.long()


class SCMILLoss(nn.Module):
    """``α_t · L_out(z, y) + (1 − α_t) · CE(logits, y)`` with ``α_t = schedule(progress)``.

    ``logits`` are ``[V·B, K]`` (every view is classified); ``z`` is ``[V·B, D]`` view-major.
    The last terms are in :attr:`logged` (``alpha``, ``supcon``, ``ce``).
    """

    def __init__(
        self,
        temperature: float = 0.1,
        schedule: str | float | Schedule = "parabolic",
        *,
        base_temperature: float | None = None,
        count_anchors_without_positives: bool = True,
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.schedule = alpha_schedule(schedule)
        self.base_temperature = base_temperature
        self.count_anchors_without_positives = count_anchors_without_positives
        self.logged: dict[str, Tensor] = {}

    def forward(
        self, z: Tensor, logits: Tensor, labels: Tensor, progress: float, n_views: int = 2
    ) -> Tensor:
        if not 0 <= progress <= 1:
            raise ContrastkitError(f"progress must lie in [0, 1], got {progress!r}.")
        labels = _check_labels(labels)
        if n_views < 1 or len(logits) != n_views * len(labels) or len(z) != len(logits):
            raise ContrastkitError(
                f"Got {len(z)} embeddings and {len(logits)} logits for {len(labels)} bags × "
                f"{n_views} views; pass one row per view of each bag, view-major."
            )
        alpha = float(self.schedule(progress))
        ce = F.cross_entropy(logits, labels.repeat(n_views))
        if alpha > 0:
            sc = supcon_bags(
                z,
                labels,
                n_views,
                temperature=self.temperature,
                base_temperature=self.base_temperature,
                count_anchors_without_positives=self.count_anchors_without_positives,
            )
        else:
            sc = z.new_zeros(())
        self.logged = {"alpha": torch.tensor(alpha), "supcon": sc.detach(), "ce": ce.detach()}
        return alpha * sc + (1 - alpha) * ce


@dataclass(frozen=True)
class MILOutput:
    """``h [B, F]`` bag representations, ``logits [B, K]``, ``z [B, D]`` (unnormalised
    projections), ``weights [n]`` pooling weights of the instances."""

    h: Tensor
    logits: Tensor
    z: Tensor
    weights: Tensor


class MILModel(nn.Module):
    """Instance encoder → MIL pooling → ``h_b``; classifier ``c(h_b)`` and projection ``g(h_b)``.

    Args:
        encoder: images ``[n, C, H, W]`` → features ``[n, feature_dim]``.
        feature_dim: the encoder's output width.
        pooling: ``"attention"`` (gated attention, Ilse et al. 2018), ``"mean"`` or ``"max"``.
        n_classes: classifier outputs (2 for positive/negative bags).
        projection_dim: width of ``g``'s output (``Linear → ReLU → Linear``, SupCon's head).
    """

    def __init__(
        self,
        encoder: nn.Module,
        feature_dim: int,
        *,
        pooling: str = "attention",
        n_classes: int = 2,
        projection_dim: int = 64,
        attention_dim: int = 64,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pool = build_pooling(pooling, feature_dim, attention_dim)
        self.classifier = nn.Linear(feature_dim, n_classes)
        self.projection = nn.Sequential(
            nn.Linear(feature_dim, feature_dim),
            nn.ReLU(inplace=True),
            nn.Linear(feature_dim, projection_dim),
        )

    def forward(self, x: Tensor, bag_index: Tensor, n_bags: int) -> MILOutput:
        h, weights = self.pool(self.encoder(x), bag_index, n_bags)
        return MILOutput(h, self.classifier(h), self.projection(h), weights)

    def instance_logits(self, x: Tensor) -> Tensor:
        """Each instance classified as a bag of one (the bag classifier's instance read-out)."""
        n = len(x)
        return self(x, torch.arange(n, device=x.device), n).logits


def bag_views(
    batch: BagBatch,
    n_views: int,
    *,
    keep: float = 1.0,
    augment: nn.Module | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, int]:
    """``n_views`` stochastic versions of a batch of bags, view-major as bags ``v·B + b``.

    Each view keeps every instance with probability ``keep`` (at least one per bag; SC-MIL's
    instance subsampling) and passes the kept images through ``augment``. Returns
    ``(x, bag_index, n_views · B)``.
    """
    if not 0 < keep <= 1:
        raise ContrastkitError(f"keep must lie in (0, 1], got {keep!r}.")
    xs, indices = [], []
    b = batch.n_bags
    for v in range(n_views):
        mask = torch.ones(len(batch.x), dtype=torch.bool)
        if keep < 1:
            mask = torch.rand(len(batch.x), generator=generator) < keep
            # a bag whose draw kept nothing keeps its first instance
            kept = torch.zeros(b, dtype=torch.long).index_add(0, batch.bag_index, mask.long())
            if bool((kept == 0).any()):
                first = torch.zeros(b, dtype=torch.long).scatter_reduce(
                    0,
                    batch.bag_index,
                    torch.arange(len(batch.x)),
                    "amin",
                    include_self=False,
                )
                mask[first[kept == 0]] = True
        x = batch.x[mask]
        xs.append(augment(x) if augment is not None else x)
        indices.append(batch.bag_index[mask] + v * b)
    return torch.cat(xs), torch.cat(indices), n_views * b


def fit_mil(
    model: MILModel,
    bags: Bags,
    *,
    epochs: int = 10,
    batch_bags: int = 16,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    loss: SCMILLoss | None = None,
    n_views: int = 2,
    keep: float = 1.0,
    augment: nn.Module | None = None,
    seed: int = 0,
    log: Callable[[int, dict[str, float]], None] | None = None,
) -> MILModel:
    """Train ``model`` on ``bags`` with :class:`SCMILLoss` (default: parabolic SC-MIL).

    Progress ``t = step / total_steps`` drives α. ``loss=SCMILLoss(schedule="ce")`` with
    ``n_views=1`` is the attention-MIL cross-entropy baseline. AdamW, final epoch returned.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ContrastkitError(f"epochs must be a positive integer, got {epochs!r}.")
    loss = SCMILLoss() if loss is None else loss
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(bags.n_bags / batch_bags)
    total = epochs * steps_per_epoch
    step = 0
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(bags.n_bags, generator=generator)
        sums: dict[str, float] = {}
        for start in range(0, bags.n_bags, batch_bags):
            batch = bags.batch(order[start : start + batch_bags])
            x, bag_index, n = bag_views(
                batch, n_views, keep=keep, augment=augment, generator=generator
            )
            out = model(x, bag_index, n)
            value = loss(out.z, out.logits, batch.bag_labels, step / total, n_views)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            step += 1
            for key, item in {"loss": value.detach(), **loss.logged}.items():
                sums[key] = sums.get(key, 0.0) + float(item) / steps_per_epoch
        if log is not None:
            log(epoch, sums)
    return model


@torch.no_grad()
def predict_mil(model: MILModel, bags: Bags, batch_bags: int = 64) -> tuple[Tensor, Tensor]:
    """``(bag scores [n_bags], instance scores [n])``: positive-class probabilities of each bag
    and of each instance classified as a bag of one (eval mode)."""
    was_training = model.training
    model.eval()
    bag_scores, instance_scores = [], []
    for start in range(0, bags.n_bags, batch_bags):
        batch = bags.batch(torch.arange(start, min(start + batch_bags, bags.n_bags)))
        bag_scores.append(model(batch.x, batch.bag_index, batch.n_bags).logits.softmax(1)[:, 1])
        instance_scores.append(model.instance_logits(batch.x).softmax(1)[:, 1])
    model.train(was_training)
    return torch.cat(bag_scores), torch.cat(instance_scores)
