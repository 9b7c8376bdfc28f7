"""INS: instance-level weakly supervised contrastive learning with prototype pseudo-labels (Qu et
al. 2023, "Rethinking Multiple Instance Learning for Whole Slide Image Classification: A Good
Instance Classifier is All You Need"; official code ``miccaiif/INS``: ``model.py``,
``utils/utils_loss.py``, ``train_withbag_cam.py``).

MIL as partial-label learning (PiCO, Wang et al. 2022): an instance of a negative bag has
candidate labels ``Y = {neg}`` = ``[1, 0]``, one of a positive bag ``{neg, pos}`` = ``[1, 1]``.
An instance classifier ``o``, a projection ``q = normalize(g(f(x)))`` and its momentum-encoder key
``k`` (strongly augmented view) are trained jointly:

* pseudo-label ``ŷ = argmax(softmax(o) ⊙ Y)``;
* prototypes ``μ_c ← μ_c·m + (1 − m)·q`` for each instance with ``ŷ = c`` in turn, then
  ``μ ← normalize(μ)`` (``m = 0.9``);
* soft targets ``s_i ← φ s_i + (1 − φ) onehot(argmax(softmax(q μᵀ) ⊙ Y))``, ``φ`` linear from 0.95
  to 0.8 over the epochs, negative-bag instances reset to ``[1, 0]``;
* ``L = CE_soft(o, s) + λ · L_cont`` (``λ = 0.5``) with ``L_cont`` SupCon ``L_out`` of the
  queries against ``[q; k; queue]`` whose positives share the pseudo-label (τ = 0.07) — the
  InfoNCE engine with ids = pseudo-labels.

During the warm-up epochs (before ``prot_start``) only the instances of positive bags are used
(the code's ``only_pos`` loader) with their soft targets fixed at ``[0.5, 0.5]``, ``L_cont`` is
MoCo's InfoNCE (own key positive, queue negative), and a bag loss is added: cross-entropy of the mean of the instances' class probabilities (the code's test-time bag
score) against the bag label, weighted ``wl = 0.5``. Bag scores are the mean (or max) of the
instance probabilities of the positive class.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, info_nce
from contrastkit.mil.bags import Bags

__all__ = [
    "INSModel",
    "INSState",
    "candidate_sets",
    "fit_ins",
    "moco_loss",
    "predict_ins",
    "pseudo_labels",
    "soft_cross_entropy",
    "update_confidence",
    "weakly_supervised_contrastive",
]


class INSModel(nn.Module):
    """Encoder ``f``, instance classifier, projection head and their momentum copies.

    Args:
        encoder: images → features ``[n, feature_dim]``.
        low_dim: projection width (INS: 128).
        queue_size: keys kept with their pseudo-labels (INS: 8192).
        momentum: key-encoder EMA (INS: 0.999).
        proto_momentum: prototype EMA ``m`` (INS: 0.9).
    """

    def __init__(
        self,
        encoder: nn.Module,
        feature_dim: int,
        *,
        low_dim: int = 128,
        queue_size: int = 8192,
        momentum: float = 0.999,
        proto_momentum: float = 0.9,
        n_classes: int = 2,
    ) -> None:
        super().__init__()
        if queue_size < 1 or not 0 <= momentum <= 1 or not 0 <= proto_momentum <= 1:
            raise ContrastkitError(
                "INS needs queue_size ≥ 1 and momenta in [0, 1], got "
                f"{queue_size}, {momentum}, {proto_momentum}."
            )
        self.encoder = encoder
        self.classifier = nn.Linear(feature_dim, n_classes)
        self.head = nn.Sequential(
            nn.Linear(feature_dim, feature_dim),
            nn.ReLU(inplace=True),
            nn.Linear(feature_dim, low_dim),
        )
        self.key_encoder = copy.deepcopy(encoder)
        self.key_head = copy.deepcopy(self.head)
        for p in (*self.key_encoder.parameters(), *self.key_head.parameters()):
            p.requires_grad_(False)
        self.momentum, self.proto_momentum = momentum, proto_momentum
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, low_dim), dim=1))
        self.register_buffer("queue_labels", torch.randint(n_classes, (queue_size,)))
        self.register_buffer("prototypes", torch.zeros(n_classes, low_dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits [n, K], q [n, low_dim] unit)``."""
        h = self.encoder(x)
        return self.classifier(h), F.normalize(self.head(h), dim=1)

    @torch.no_grad()
    def keys(self, x: Tensor) -> Tensor:
        """Unit keys of the momentum encoder (updated first, as in INS's forward)."""
        for online, key in (
            (self.encoder, self.key_encoder),
            (self.head, self.key_head),
        ):
            for p, pk in zip(online.parameters(), key.parameters(), strict=True):
                pk.mul_(self.momentum).add_(p.detach(), alpha=1 - self.momentum)
        return F.normalize(self.key_head(self.key_encoder(x)), dim=1)

    @torch.no_grad()
    def update_prototypes(self, q: Tensor, labels: Tensor) -> None:
        """``μ_c ← m μ_c + (1 − m) q`` for each row in order, then L2-normalise every prototype
        (PiCO/INS's loop, in closed form: the i-th of ``n_c`` rows of class ``c`` enters with
        weight ``(1 − m) m^(n_c − 1 − i)``)."""
        m = self.proto_momentum
        n_classes = len(self.prototypes)
        onehot = F.one_hot(labels, n_classes).to(q.dtype)  # [n, K]
        count = onehot.sum(0)  # [K]
        rank = (onehot.cumsum(0) - 1) * onehot  # position of each row within its class
        power = (count[None, :] - 1 - rank) * onehot
        weight = (1 - m) * torch.pow(torch.as_tensor(m, dtype=q.dtype), power) * onehot
        prototypes = self.prototypes * torch.pow(torch.as_tensor(m, dtype=q.dtype), count)[:, None]
        self.prototypes = F.normalize(prototypes + weight.T @ q, dim=1)

    @torch.no_grad()
    def enqueue(self, keys: Tensor, labels: Tensor) -> None:
        """Newest keys first; the oldest drop out."""
        size = len(self.queue)
        self.queue = torch.cat([keys.detach(), self.queue])[:size]
        self.queue_labels = torch.cat([labels, self.queue_labels])[:size]


def candidate_sets(bag_labels: Tensor, n_classes: int = 2) -> Tensor:
    """Candidate-label masks ``[n, 2]``: ``[1, 0]`` for instances of negative bags, ``[1, 1]``
    for instances of positive bags."""
    if bag_labels.ndim != 1 or bag_labels.is_floating_point():
        raise ContrastkitError("bag_labels must be a 1-D integer tensor of 0/1 labels.")
    if n_classes != 2:
        raise ContrastkitError("INS's candidate sets are defined for two classes (neg/pos).")
    ones = torch.ones(len(bag_labels), dtype=torch.float32)
    return torch.stack([ones, (bag_labels == 1).float()], dim=1)


def pseudo_labels(logits: Tensor, candidates: Tensor) -> Tensor:
    """``argmax(softmax(o) ⊙ Y)``: the most probable candidate class."""
    return (logits.detach().softmax(1) * candidates).argmax(1)


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """``−mean_i Σ_c s_ic log softmax(o_i)_c`` (INS's ``partial_loss``)."""
    return -(F.log_softmax(logits, dim=1) * targets).sum(1).mean()


@torch.no_grad()
def update_confidence(
    confidence: Tensor, index: Tensor, prototype_scores: Tensor, candidates: Tensor, phi: float
) -> None:
    """In place: ``s_i ← φ s_i + (1 − φ) onehot(argmax(score_i ⊙ Y_i))`` for the rows
    ``index``; rows whose candidate set is ``{neg}`` are reset to ``[1, 0]``."""
    if not 0 <= phi <= 1:
        raise ContrastkitError(f"phi must lie in [0, 1], got {phi!r}.")
    target = F.one_hot((prototype_scores * candidates).argmax(1), confidence.shape[1])
    updated = phi * confidence[index] + (1 - phi) * target.to(confidence.dtype)
    negative = candidates[:, 1] == 0
    updated[negative] = torch.tensor([1.0, 0.0], dtype=confidence.dtype)
    confidence[index] = updated


def weakly_supervised_contrastive(
    q: Tensor,
    k: Tensor,
    queue: Tensor,
    labels: Tensor,
    queue_labels: Tensor,
    temperature: float = 0.07,
) -> Tensor:
    """SupCon ``L_out`` of the queries ``q [B, D]`` against ``[q; k; queue]``, positives = the
    same pseudo-label (``k_i`` carries ``q_i``'s), the query itself excluded (INS/PiCO's
    ``SupConLoss`` in mask mode with ``τ = τ_base``)."""
    ids = torch.cat([labels, labels, queue_labels])
    pairs = Pairs(labels, ids, self_offset=0)
    return info_nce(q, pairs, torch.cat([q, k, queue]), temperature=temperature, distributed=False)


def moco_loss(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.07) -> Tensor:
    """MoCo's ``CE([q·k, q·queueᵀ]/τ, 0)``: the engine with the keys as candidates, only the own
    key counting (zero weight on the others), the queue as extra negatives."""
    only_own_key = torch.cat([q.new_zeros(len(k)), q.new_ones(len(queue))])
    return info_nce(
        q,
        Pairs.cross(len(q), device=q.device),
        k,
        temperature=temperature,
        negative_weight=only_own_key,
        extra_negatives=queue,
        distributed=False,
    )


@dataclass
class INSState:
    """What training keeps besides the model: soft targets ``confidence [n, 2]`` of every
    training instance and their candidate sets ``[n, 2]``."""

    confidence: Tensor
    candidates: Tensor


def _bag_loss(model: INSModel, bags: Bags, bag_ids: Tensor) -> Tensor:
    """Cross-entropy of the mean instance class probabilities of each bag vs its label."""
    batch = bags.batch(bag_ids)
    probs = model(batch.x)[0].softmax(1)
    mean = probs.new_zeros(batch.n_bags, probs.shape[1]).index_add(0, batch.bag_index, probs)
    mean = mean / torch.bincount(batch.bag_index, minlength=batch.n_bags)[:, None]
    return F.nll_loss(torch.log(mean.clamp_min(1e-12)), batch.bag_labels)


def fit_ins(
    model: INSModel,
    bags: Bags,
    *,
    epochs: int = 10,
    warmup_epochs: int = 1,
    batch_size: int = 64,
    batch_bags: int = 16,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    loss_weight: float = 0.5,
    bag_weight: float = 0.5,
    temperature: float = 0.07,
    phi_range: tuple[float, float] = (0.95, 0.8),
    weak_augment: nn.Module | None = None,
    strong_augment: nn.Module | None = None,
    seed: int = 0,
    log: Callable[[int, dict[str, float]], None] | None = None,
) -> INSState:
    """Train INS on the instances of ``bags`` (bag labels only). Returns the final soft targets.

    ``log(epoch, means)`` gets the epoch's mean losses and ``pseudo_positive``, the share of
    instances pseudo-labelled positive (0 means the classifier has collapsed onto "negative").

    The official recipe uses SGD (lr 0.01, momentum 0.9, wd 1e-3); AdamW is used here so every
    MIL method in :mod:`contrastkit.mil` shares one optimiser.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ContrastkitError(f"epochs must be a positive integer, got {epochs!r}.")
    weak = weak_augment if weak_augment is not None else nn.Identity()
    strong = strong_augment if strong_augment is not None else nn.Identity()
    x_all, bag_label_of, _ = bags.instances()
    candidates = candidate_sets(bag_label_of)
    state = INSState(candidates / candidates.sum(1, keepdim=True), candidates)
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n = len(x_all)
    positive_bag_rows = (bag_label_of == 1).nonzero().flatten()
    model.train()
    for epoch in range(epochs):
        phi = phi_range[0] + (phi_range[1] - phi_range[0]) * epoch / epochs
        prototypes_on = epoch >= warmup_epochs
        # warm-up: the instances of positive bags only (the code's ``only_pos`` loader)
        pool = torch.arange(n) if prototypes_on else positive_bag_rows
        order = pool[torch.randperm(len(pool), generator=generator)]
        sums: dict[str, float] = {}
        steps = math.ceil(len(order) / batch_size)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            x, y_cand = x_all[index], candidates[index]
            logits, q = model(weak(x))
            labels = pseudo_labels(logits, y_cand)
            scores = (q.detach() @ model.prototypes.T).softmax(1)
            model.update_prototypes(q.detach(), labels)
            k = model.keys(strong(x))
            if prototypes_on:
                update_confidence(state.confidence, index, scores, y_cand, phi)
                cont = weakly_supervised_contrastive(
                    q, k, model.queue, labels, model.queue_labels, temperature
                )
            else:
                cont = moco_loss(q, k, model.queue, temperature)
            cls = soft_cross_entropy(logits, state.confidence[index])
            loss = cls + loss_weight * cont
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            model.enqueue(k, labels)
            logged = (("cls", cls), ("cont", cont), ("pseudo_positive", labels.float().mean()))
            for key, value in logged:
                sums[key] = sums.get(key, 0.0) + float(value.detach()) / steps
        if not prototypes_on and bag_weight > 0:
            bag_order = torch.randperm(bags.n_bags, generator=generator)
            for start in range(0, bags.n_bags, batch_bags):
                bag_loss = _bag_loss(model, bags, bag_order[start : start + batch_bags])
                optimizer.zero_grad(set_to_none=True)
                (bag_weight * bag_loss).backward()
                optimizer.step()
        if log is not None:
            log(epoch, sums)
    return state


@torch.no_grad()
def predict_ins(model: INSModel, bags: Bags, batch_size: int = 512) -> dict[str, Tensor]:
    """Instance positive-class probabilities and bag scores from them (mean, as INS's "Bag AUC";
    max, the standard MIL assumption)."""
    was_training = model.training
    model.eval()
    x, _, _ = bags.instances()
    scores = torch.cat(
        [model(x[i : i + batch_size])[0].softmax(1)[:, 1] for i in range(0, len(x), batch_size)]
    )
    model.train(was_training)
    sizes = bags.sizes.to(scores.dtype)
    mean = scores.new_zeros(bags.n_bags).index_add(0, bags.bag_index, scores) / sizes
    top = scores.new_full((bags.n_bags,), float("-inf")).scatter_reduce(
        0, bags.bag_index, scores, "amax"
    )
    return {"instance": scores, "bag_mean": mean, "bag_max": top}
