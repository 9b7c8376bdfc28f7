"""Objectives that learn from class labels: SupCon (alone or added to NT-Xent), a cross-entropy
baseline, and Hydra's arbitrary positive pairs with its class-relationship read-out.

Labels reach an objective as ``context.labels`` (``[B]``, one per sample; every view of a sample
shares it). They are checked where they enter each objective: one integer id per sample (a float
tensor, NaN included, is rejected), and ids in ``[0, num_classes)`` for objectives that index a
table with them (checked on the first call; the data's labels are validated when loaded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, info_nce
from contrastkit.functional.distributed import world
from contrastkit.functional.hydra import (
    RELATEDNESS,
    SAMPLERS,
    bernoulli_entropy,
    distributed_mean,
    gate_statistics,
    hydra_loss,
    relatedness,
    sample_partners,
)
from contrastkit.nn.gates import build_gate
from contrastkit.objectives.context import StepContext

__all__ = [
    "CrossEntropyLoss",
    "HydraLoss",
    "SupConInstanceLoss",
    "SupConLoss",
    "check_labels",
    "plot_relatedness",
    "supcon_loss",
]

ContrastMode = Literal["all", "one"]


def check_labels(
    labels: Any, n_samples: int | None, what: str, num_classes: int | None = None
) -> Tensor:
    """``labels`` as given if they are ``n_samples`` (any number when ``None``) integer class
    ids, in ``[0, num_classes)`` when ``num_classes`` is given (which reads the values);
    otherwise one clear error."""
    if labels is None:
        raise ContrastkitError(
            f"{what} needs class labels; train on labelled data (contrastkit fit --labels) or pass "
            "StepContext(labels=...)."
        )
    if (
        not isinstance(labels, Tensor)
        or labels.ndim != 1
        or (n_samples is not None and len(labels) != n_samples)
    ):
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        expected = "[B]" if n_samples is None else f"of {n_samples} (the batch size)"
        raise ContrastkitError(
            f"{what} needs one label per sample, a 1-D tensor {expected}, got {shape}; pass "
            "the batch's labels, not one per view."
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        nan = " that contain NaN" if labels.dtype.is_floating_point and labels.isnan().any() else ""
        raise ContrastkitError(
            f"{what} needs integer class ids, got {labels.dtype} labels{nan}; drop unlabelled "
            "(NaN) samples and convert whole-number labels with .long()."
        )
    if num_classes is not None and len(labels):
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            raise ContrastkitError(
                f"{what} has num_classes={num_classes} but got label {low if low < 0 else high}; "
                "set objective.options.num_classes to the number of classes (ids 0..C-1)."
            )
    return labels


def batch_labels(
    embeddings: Tensor,
    pairs: Pairs | None,
    context: StepContext | None,
    what: str,
    num_classes: int | None = None,
) -> tuple[Tensor, int]:
    """``(labels [B], n_views)`` of a view-major batch: ``context.labels`` checked against the
    embeddings' layout (``pairs.n_views`` when known, else inferred from the label count)."""
    labels = None if context is None else context.labels
    n_samples = None
    if pairs is not None and pairs.n_views and len(embeddings) % pairs.n_views == 0:
        n_samples = len(embeddings) // pairs.n_views
    labels = check_labels(labels, n_samples, what, num_classes)
    if not len(labels) or len(embeddings) % len(labels):
        raise ContrastkitError(
            f"{what} got {len(embeddings)} embeddings for {len(labels)} labels; the rows must be "
            "whole views of the batch (view-major) with one label per sample."
        )
    return labels.to(embeddings.device), len(embeddings) // len(labels)


def supcon_loss(
    features: Tensor,
    labels: Tensor | None = None,
    *,
    n_views: int | None = None,
    temperature: float = 0.07,
    base_temperature: float | None = None,
    contrast_mode: ContrastMode = "all",
    count_anchors_without_positives: bool = True,
    normalize: bool = False,
    backend: Literal["auto", "dense", "tiled"] = "auto",
    distributed: bool | None = None,
) -> Tensor:
    """SupCon's ``L_out`` (Khosla et al. 2020, eq. 2; ``SupContrast/losses.py::SupConLoss``) as
    the InfoNCE engine with :meth:`Pairs.labels`.

    For anchor ``a`` with positives ``P(a)`` (the other rows of its class) and candidates
    ``A(a)`` (every other row): ``ℓ_a = −(τ/τ_base)(1/|P(a)|) Σ_{p∈P(a)} log softmax_{A(a)}(z_a·z_p/τ)``
    and ``L = mean_a ℓ_a``.

    Args:
        features: ``[B, V, D]`` (the reference layout; trailing dims are flattened) or
            view-major rows ``[V·B, D]`` with ``n_views``.
        labels: ``[B]`` integer classes; ``None`` gives SimCLR's NT-Xent (positives = views).
        temperature, base_temperature: ``τ`` and ``τ_base`` (default ``τ``: the factor is 1).
        contrast_mode: ``"all"`` (every row is an anchor) or ``"one"`` (the first view's rows).
        count_anchors_without_positives: the reference counts an anchor without positives (a
            class seen once, one view) as 0 in the mean; ``False`` averages over the others.
        normalize: L2-normalise first (the reference expects normalised features and does not).
        distributed: candidates from every rank (the engine's gather), exact global mean.
    """
    if features.ndim == 3 or (features.ndim > 3 and n_views is None):
        n_samples, n_views = features.shape[:2]
        rows = (
            features.reshape(n_samples, n_views, -1)
            .transpose(0, 1)
            .reshape(n_samples * n_views, -1)
        )
    elif features.ndim == 2 and n_views is not None and n_views >= 1:
        if len(features) % n_views:
            raise ContrastkitError(
                f"{len(features)} rows are not {n_views} whole views; pass features [B, V, D]."
            )
        rows, n_samples = features, len(features) // n_views
    else:
        raise ContrastkitError(
            f"SupCon needs features [B, V, D], or rows [V·B, D] with n_views, got shape "
            f"{tuple(features.shape)}."
        )
    if contrast_mode not in ("all", "one"):
        raise ContrastkitError(f"contrast_mode must be 'all' or 'one', got {contrast_mode!r}.")
    if base_temperature is not None and not base_temperature > 0:
        raise ContrastkitError(f"base_temperature must be positive, got {base_temperature!r}.")
    instances = labels is None  # sample ids: unique per rank when candidates are gathered
    if instances:
        labels = torch.arange(n_samples, device=rows.device)
    labels = check_labels(labels, n_samples, "SupCon").to(rows.device)
    ids = labels.repeat(n_views)
    anchors = rows if contrast_mode == "all" else rows[:n_samples]
    pairs = Pairs(ids[: len(anchors)], ids, 0, batch_local=instances, n_views=n_views)
    if distributed is None:
        distributed = world()[1] > 1
    options = dict(temperature=temperature, normalize=normalize, backend=backend)
    if count_anchors_without_positives:  # the reference: such anchors count as 0
        total = info_nce(anchors, pairs, rows, reduction="sum", distributed=distributed, **options)
        count = torch.tensor(len(anchors), device=rows.device)
    else:  # NaN marks the anchors without a positive (in the global batch when distributed)
        per_anchor = info_nce(
            anchors, pairs, rows, reduction="none", distributed=distributed, **options
        )
        missing = per_anchor.isnan()
        total, count = per_anchor.masked_fill(missing, 0.0).sum(), (~missing).sum()
    factor = 1.0 if base_temperature is None else temperature / base_temperature
    return factor * distributed_mean(total, count, distributed)


def _class_sizes(labels: Tensor) -> Tensor:
    """``[B]``: how many samples of the batch share each sample's class (itself included)."""
    return (labels[:, None] == labels[None, :]).sum(1)


class SupConLoss(nn.Module):
    """SupCon's ``L_out`` on labelled batches (:func:`supcon_loss`; Khosla et al. 2020, eq. 2):
    every other view of every same-class sample is a positive, any number of views.

    Labels come from ``context.labels``; ``pairs`` only gives the layout. A class seen once in a
    batch still has positives when there are ≥ 2 views (its other views); with one view such an
    anchor has none and counts as 0 in the mean (the reference's handling;
    ``count_anchors_without_positives=False`` leaves it out). ``logged["no_positive"]`` is the
    fraction of such anchors. Embeddings are L2-normalised here (the method's head does not
    normalise; the reference normalises in the model).
    """

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        base_temperature: float | None = None,
        contrast_mode: ContrastMode = "all",
        count_anchors_without_positives: bool = True,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.temperature, self.base_temperature = temperature, base_temperature
        self.contrast_mode = contrast_mode
        self.count_anchors_without_positives = count_anchors_without_positives
        self.normalize = normalize
        self.logged: dict[str, Tensor] = {}

    def forward(
        self, embeddings: Tensor, pairs: Pairs | None = None, context: StepContext | None = None
    ) -> Tensor:
        labels, n_views = batch_labels(embeddings, pairs, context, "SupCon")
        loss = supcon_loss(
            embeddings,
            labels,
            n_views=n_views,
            temperature=self.temperature,
            base_temperature=self.base_temperature,
            contrast_mode=self.contrast_mode,
            count_anchors_without_positives=self.count_anchors_without_positives,
            normalize=self.normalize,
        )
        alone = (_class_sizes(labels) * n_views == 1).float().mean()
        self.logged = {"no_positive": alone}
        return loss

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, contrast_mode={self.contrast_mode!r}"


class SupConInstanceLoss(nn.Module):
    """``w_ins · NT-Xent(views) + w_sup · SupCon(labels)``: SupCon added to SimCLR's
    self-supervised objective (both the InfoNCE engine at one temperature; views from
    ``Pairs.views``, classes from ``context.labels``). ``logged`` holds both terms."""

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        supcon_weight: float = 1.0,
        instance_weight: float = 1.0,
        base_temperature: float | None = None,
        count_anchors_without_positives: bool = True,
    ) -> None:
        super().__init__()
        if min(supcon_weight, instance_weight) < 0 or supcon_weight + instance_weight == 0:
            raise ContrastkitError(
                "supcon_weight and instance_weight must be non-negative and not both zero."
            )
        self.temperature = temperature
        self.supcon_weight, self.instance_weight = supcon_weight, instance_weight
        self.supcon = SupConLoss(
            temperature,
            base_temperature=base_temperature,
            count_anchors_without_positives=count_anchors_without_positives,
        )
        self.logged: dict[str, Tensor] = {}

    def forward(
        self, embeddings: Tensor, pairs: Pairs | None = None, context: StepContext | None = None
    ) -> Tensor:
        supervised = self.supcon(embeddings, pairs, context)
        labels, n_views = batch_labels(embeddings, pairs, context, "SupCon")
        n_samples = len(labels)
        if n_views < 2:
            raise ContrastkitError("The instance term needs at least two views of each sample.")
        instance = info_nce(
            embeddings,
            Pairs.views(n_samples, n_views, device=embeddings.device),
            temperature=self.temperature,
        )
        self.logged = {"instance": instance.detach(), "supcon": supervised.detach()}
        return self.instance_weight * instance + self.supcon_weight * supervised


class CrossEntropyLoss(nn.Module):
    """The supervised baseline: a linear classifier on the embeddings, trained end to end with
    cross-entropy on every view (the same backbone, head and views as the contrastive recipes;
    evaluation uses the backbone's features like theirs). ``logged["accuracy"]``: training
    accuracy of the step."""

    def __init__(self, dim: int, num_classes: int, *, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ContrastkitError(f"num_classes must be an integer ≥ 2, got {num_classes!r}.")
        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        self.classifier = nn.Linear(dim, num_classes)
        self.logged: dict[str, Tensor] = {}
        self._checked = False

    def forward(
        self, embeddings: Tensor, pairs: Pairs | None = None, context: StepContext | None = None
    ) -> Tensor:
        labels, n_views = batch_labels(
            embeddings, pairs, context, "Cross-entropy", None if self._checked else self.num_classes
        )
        self._checked = True
        logits = self.classifier(embeddings)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        targets = labels.repeat(n_views)
        loss = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        self.logged = {"accuracy": (logits.detach().argmax(1) == targets).float().mean()}
        return loss


class HydraLoss(nn.Module):
    """Hydra: arbitrary positive pairs through class-pair gates (Wu et al. 2024, arXiv
    2410.18200 v1, ``moco/builder.py``; instance-dense.md §6):

        L = (w_ins · L_ins + β · L_dis + α · L_cls) / (w_ins + α + β)  [+ λ · mean H(g)]

    * ``L_ins``: the InfoNCE engine — on the method's ``pairs`` (NT-Xent over the views), or,
      with a momentum encoder (``context.targets``), MoCo v3's symmetric query × key loss.
    * ``L_dis``: :func:`~contrastkit.functional.hydra.hydra_loss` of view 1 against view 2 and
      back, with gates ``g(y, y′)`` and ``y′`` from the ``sampler``; ``L_cls``: the same with
      ``y′ = y``. During the first ``warmup_epochs`` the embeddings are detached in both, so only
      the gate learns from them.

    Args:
        dim: embedding width (injected); num_classes: ``C``.
        temperature: ``τ`` of ``L_ins``; the gated logits use ``scale`` (default ``1/τ``),
            learnable as ``exp(ς)`` with ``learnable_scale`` (Hydra-MoCo: initial 20).
        sampler: ``"arbitrary"`` (a permutation of the batch's labels), ``"identical"``,
            ``"distinct"``.
        gate: ``"basic"`` | ``"open"`` | ``"stochastic"`` | ``"gumbel"``; ``gate_options`` go to
            it (``fuse``, ``label_dim``, ``hidden_dim``, ``sigma``, ``tau``).
        instance_weight, beta, alpha: ``w_ins``, ``β``, ``α`` (Hydra-MoCo: 1, 1, 0; SimLAP is
            ``w_ins = 0``).
        gate_penalty: ``λ`` of an optional entropy penalty pushing gates to 0/1 (v2's penalty is
            UNCONFIRMED; off by default, as in the official code).

    ``logged``: the three terms, the scale, and the gate statistics of the step's pair gates
    (``gate_activation`` = mean ``Σ_d g_d``, ``gate_entropy``, ``gate_open``; ``gate_reg`` for
    stochastic gates). :meth:`relatedness` reads class relationships off the gates.
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        temperature: float = 0.1,
        *,
        sampler: str = "arbitrary",
        gate: str = "basic",
        gate_options: dict[str, Any] | None = None,
        instance_weight: float = 1.0,
        beta: float = 1.0,
        alpha: float = 0.0,
        warmup_epochs: int = 10,
        scale: float | None = None,
        learnable_scale: bool = False,
        gate_penalty: float = 0.0,
    ) -> None:
        super().__init__()
        if sampler not in SAMPLERS:
            raise ContrastkitError(
                f"Unknown pair sampler {sampler!r}; use one of {', '.join(SAMPLERS)}."
            )
        if min(instance_weight, beta, alpha, gate_penalty) < 0 or beta + alpha == 0:
            raise ContrastkitError(
                "instance_weight, beta, alpha and gate_penalty must be non-negative, with beta or "
                "alpha positive (otherwise the gates learn nothing)."
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ContrastkitError(f"num_classes must be an integer ≥ 2, got {num_classes!r}.")
        if not (isinstance(temperature, int | float) and temperature > 0):
            raise ContrastkitError(f"temperature must be positive, got {temperature!r}.")
        scale = 1.0 / temperature if scale is None else scale
        if not scale > 0:
            raise ContrastkitError(f"scale must be positive, got {scale!r}.")
        self.num_classes, self.temperature, self.sampler = num_classes, temperature, sampler
        self.instance_weight, self.beta, self.alpha = instance_weight, beta, alpha
        self.warmup_epochs, self.gate_penalty = warmup_epochs, gate_penalty
        self.gate = build_gate(gate, num_classes, dim, **(gate_options or {}))
        log_scale = torch.tensor(math.log(scale))
        if learnable_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.logged: dict[str, Tensor] = {}
        self._checked = False

    def forward(
        self, embeddings: Tensor, pairs: Pairs | None = None, context: StepContext | None = None
    ) -> Tensor:
        labels, n_views = batch_labels(
            embeddings, pairs, context, "Hydra", None if self._checked else self.num_classes
        )
        self._checked = True
        n_samples = len(labels)
        n_global = n_views if context is None else min(context.n_global, n_views)
        if n_global < 2:
            raise ContrastkitError("Hydra needs two global views of each sample.")
        q1, q2 = embeddings[: 2 * n_samples].chunk(2)
        targets = None if context is None else context.targets
        if targets is not None and targets.shape[0] < 2 * n_samples:
            raise ContrastkitError(
                f"Hydra needs momentum keys for two views ({2 * n_samples} rows), got "
                f"{targets.shape[0]}."
            )
        if targets is not None:  # Hydra-MoCo: momentum keys (no gradient)
            k1, k2 = targets[: 2 * n_samples].chunk(2)
        else:  # SimLAP: the other view's online embeddings
            k1, k2 = q1, q2
        terms: dict[str, Tensor] = {}
        if self.instance_weight > 0:
            if targets is not None:
                cross = Pairs.cross(n_samples, device=embeddings.device)
                terms["ins"] = (
                    info_nce(q1, cross, k2, temperature=self.temperature)
                    + info_nce(q2, cross, k1, temperature=self.temperature)
                ) / 2
            else:
                if pairs is None:
                    pairs = Pairs.views(n_samples, n_views, device=embeddings.device)
                terms["ins"] = info_nce(embeddings, pairs, temperature=self.temperature)
        if context is not None and context.epoch < self.warmup_epochs:  # only the gate learns
            q1, q2, k1, k2 = q1.detach(), q2.detach(), k1.detach(), k2.detach()
        scale = self.log_scale.exp()
        gates = None
        if self.beta > 0:
            partners = sample_partners(labels, self.sampler, self.num_classes)
            gates = self.gate(labels, partners)
            terms["dis"] = self._symmetric(q1, q2, k1, k2, gates, labels, partners, scale)
        if self.alpha > 0:
            class_gates = self.gate(labels, labels)
            terms["cls"] = self._symmetric(q1, q2, k1, k2, class_gates, labels, labels, scale)
            gates = class_gates if gates is None else gates
        weights = {"ins": self.instance_weight, "dis": self.beta, "cls": self.alpha}
        loss = sum(weights[name] * value for name, value in terms.items()) / sum(weights.values())
        if self.gate_penalty > 0:
            loss = loss + self.gate_penalty * bernoulli_entropy(gates).mean()
        self.logged = {name: value.detach() for name, value in terms.items()}
        self.logged["scale"] = scale.detach()
        self.logged |= {f"gate_{k}": v for k, v in gate_statistics(gates).items()}
        self.logged |= {f"gate_{k}": v for k, v in self.gate.logged.items()}
        return loss

    @property
    def may_skip_parameters(self) -> bool:
        """Whether some steps leave the encoder out of the graph (warm-up without ``L_ins``),
        which DDP must be told about (``find_unused_parameters``)."""
        return self.warmup_epochs > 0 and self.instance_weight == 0

    @staticmethod
    def _symmetric(
        q1: Tensor,
        q2: Tensor,
        k1: Tensor,
        k2: Tensor,
        gates: Tensor,
        labels: Tensor,
        partners: Tensor,
        scale: Tensor,
    ) -> Tensor:
        """``(L(q1, k2) + L(q2, k1)) / 2`` with one gate per sample for both directions."""
        first = hydra_loss(q1, k2, gates, labels, partners, scale=scale)
        second = hydra_loss(q2, k1, gates, labels, partners, scale=scale)
        return (first + second) / 2

    @torch.no_grad()
    def relatedness(self, statistic: str = "active", threshold: float = 0.5) -> Tensor:
        """``[C, C]`` class relatedness read off the gates (eval mode): ``"active"`` (fraction of
        open dimensions of ``g(a, b)``), ``"l1"`` (mean gate) or ``"cosine"`` (between
        single-class gates); see :func:`~contrastkit.functional.hydra.relatedness`."""
        if statistic not in RELATEDNESS:
            raise ContrastkitError(
                f"Unknown relatedness statistic {statistic!r}; use one of {', '.join(RELATEDNESS)}."
            )
        gates = self.gate.single_gates() if statistic == "cosine" else self.gate.pair_gates()
        return relatedness(gates.cpu(), statistic, threshold)


def plot_relatedness(
    matrix: Tensor | Any,
    path: str | Path,
    class_names: Sequence[str] | None = None,
    *,
    title: str = "Class relatedness from Hydra's gates",
) -> Path:
    """Save a ``[C, C]`` relatedness matrix as a labelled heat map (PNG/SVG/PDF by suffix)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    values = torch.as_tensor(matrix, dtype=torch.float32).cpu().numpy()
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ContrastkitError(f"A relatedness matrix must be square [C, C], got {values.shape}.")
    size = len(values)
    names = list(class_names) if class_names is not None else [str(i) for i in range(size)]
    if len(names) != size:
        raise ContrastkitError(f"{len(names)} class names for a {size}×{size} matrix.")
    figure = Figure(figsize=(1.0 + 0.55 * size, 0.6 + 0.5 * size), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="viridis")
    axes.set_xticks(range(size), names, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(size), names, fontsize=8)
    for i in range(size):
        for j in range(size):
            axes.text(
                j,
                i,
                f"{values[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if values[i, j] < values.mean() else "black",
            )
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, shrink=0.8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
