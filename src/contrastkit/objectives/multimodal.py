"""Two-tower objectives: CLIP (+ the contrastive-gap terms), ConVIRT, CoCoSoDa, and the sentence
objectives SimCSE / WhitenedCSE.

Unlike the single-tower objectives, these are called with the two towers' embeddings
(``objective(a, b)``; CoCoSoDa with its queries and momentum keys; the sentence objectives with
the stacked dropout views). Each sets ``self.logged`` (detached scalars the trainer logs).

The objectives that hold parameters (CLIP's logit scale, the sentence objectives' MLP) must be
given to the optimiser with the encoders. The training loop calls ``after_optimizer_step()`` on
every submodule that has it after each optimiser step; each objective here has one that forwards
the call to its own submodules (CLIP's :class:`~contrastkit.nn.logit_scale.LogitScale` clamps;
calling it twice is harmless).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional import Pairs, info_nce
from contrastkit.functional.multimodal import (
    candidate_count,
    clip_directions,
    clip_loss,
    gap_terms,
)
from contrastkit.nn.logit_scale import LogitScale
from contrastkit.nn.queue import Queue
from contrastkit.nn.whitening import ShuffledGroupWhitening

#: CoCoSoDa's release seeds its queue initialisation with 3047; a fixed generator also makes
#: every rank start from the same queue.
QUEUE_SEED = 3047


def _delegate_after_step(module: nn.Module) -> None:
    """Call ``after_optimizer_step()`` on every strict descendant of ``module`` that has it."""
    for child in module.modules():
        if child is not module and hasattr(child, "after_optimizer_step"):
            child.after_optimizer_step()


def _number(value: object, name: str, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContrastkitError(f"{name} must be a number, got {value!r}.")
    if not low <= value <= high or math.isinf(value):
        raise ContrastkitError(f"{name} must lie in [{low:g}, {high:g}], got {value!r}.")
    return float(value)


def _positive(value: object, name: str) -> float:
    value = _number(value, name, 0.0)
    if value == 0:
        raise ContrastkitError(f"{name} must be > 0, got {value!r}.")
    return value


class CLIPLoss(nn.Module):
    """CLIP's symmetric InfoNCE with a learnable (or fixed) temperature, and the uniformity and
    alignment terms of Fahim et al. (2024, "It's Not a Modality Gap", spec §5b):

    ``L = L_CLIP [− log B] [+ L_unif] [+ L_xunif] [+ L_align]`` (weights 1), where
    ``L_CLIP = w·CE(s·â b̂ᵀ) + (1 − w)·CE(s·b̂ âᵀ)`` (:func:`~contrastkit.functional.clip_loss`)
    and the terms are those of :func:`~contrastkit.functional.gap_terms`. Fahim et al.'s
    ``CUA`` is ``uniformity=alignment=True``; ``CUAXU`` adds ``cross_uniformity=True``.

    Across ranks the CLIP term contrasts local rows with every rank's rows (gathered with
    gradient); the gap terms use this rank's rows.

    Args:
        temperature: the initial τ0 (``s = 1/τ0``; CLIP 0.07, Fahim et al.'s release 0.01 fixed).
        learnable_temperature: optimise ``log s`` (clamped into ``[0, log max_logit_scale]`` by
            ``after_optimizer_step``).
        max_logit_scale: the largest ``s``.
        weight_ab: weight ``w`` of the ``a → b`` direction.
        uniformity, cross_uniformity, alignment: add these gap terms.
        uniformity_t: ``t`` of the uniformity terms.
        scaled_denominator: subtract ``log B`` (``B`` = candidates per anchor) from the CLIP term,
            the release's option (a constant shift).

    ``logged``: ``"clip"`` (the CLIP term as added), each gap term used, ``"logit_scale"``.
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        max_logit_scale: float = 100.0,
        weight_ab: float = 0.5,
        uniformity: bool = False,
        cross_uniformity: bool = False,
        alignment: bool = False,
        uniformity_t: float = 2.0,
        scaled_denominator: bool = False,
    ) -> None:
        super().__init__()
        self.logit_scale = LogitScale(temperature, learnable_temperature, max_logit_scale)
        self.weight_ab = _number(weight_ab, "weight_ab", 0.0, 1.0)
        self.uniformity_t = _positive(uniformity_t, "uniformity_t")
        self.terms = tuple(
            name
            for name, used in (
                ("uniformity", uniformity),
                ("cross_uniformity", cross_uniformity),
                ("alignment", alignment),
            )
            if used
        )
        self.scaled_denominator = scaled_denominator
        self.logged: dict[str, Tensor] = {}

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Loss of matched rows ``a[i] ↔ b[i]`` of the two towers, ``[B, D]`` each."""
        scale = self.logit_scale()
        loss = clip_loss(a, b, scale, weight_ab=self.weight_ab)
        if self.scaled_denominator:
            loss = loss - math.log(candidate_count(len(b), None))
        logged = {"clip": loss.detach()}
        if self.terms:
            gaps = gap_terms(a, b, t=self.uniformity_t)
            for name in self.terms:
                loss = loss + gaps[name]
                logged[name] = gaps[name].detach()
        self.logged = logged | {"logit_scale": scale.detach()}
        return loss

    def after_optimizer_step(self) -> None:
        """Clamp the logit scale (after each optimiser step)."""
        _delegate_after_step(self)

    def extra_repr(self) -> str:
        return f"weight_ab={self.weight_ab}, terms={self.terms}"


class ConVIRTLoss(nn.Module):
    """ConVIRT's bidirectional image–text InfoNCE (Zhang et al. 2022, §3; spec §6b):
    ``(1/B) Σ_i [λ ℓ_i^{v→u} + (1 − λ) ℓ_i^{u→v}]`` on cosine similarities / τ, i.e.
    ``clip_loss(v, u, 1/τ, weight_ab=λ)`` with a fixed temperature.

    Args:
        temperature: τ (paper: 0.1).
        lam: λ, the weight of the image→text direction (paper: 0.75).

    ``logged``: each computed direction, ``"v_to_u"`` and ``"u_to_v"`` (unweighted).
    """

    def __init__(self, temperature: float = 0.1, lam: float = 0.75) -> None:
        super().__init__()
        self.temperature = _positive(temperature, "temperature")
        self.lam = _number(lam, "lam", 0.0, 1.0)
        self.logged: dict[str, Tensor] = {}

    def forward(self, v: Tensor, u: Tensor) -> Tensor:
        """Loss of images ``v [B, D]`` against their texts ``u [B, D]`` (normalised here)."""
        weights = {"a_to_b": self.lam, "b_to_a": 1.0 - self.lam}
        terms = clip_directions(
            v, u, 1.0 / self.temperature, directions=tuple(k for k, w in weights.items() if w > 0)
        )
        names = {"a_to_b": "v_to_u", "b_to_a": "u_to_v"}
        self.logged = {names[k]: value.detach() for k, value in terms.items()}
        return sum(weights[k] * value for k, value in terms.items())

    def after_optimizer_step(self) -> None:
        """Nothing to do (a fixed temperature); present for a uniform training loop."""
        _delegate_after_step(self)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, lam={self.lam}"


class CoCoSoDaLoss(nn.Module):
    """CoCoSoDa's multi-modal momentum-contrast loss (Shi et al. 2023, "CoCoSoDa: Effective
    Contrastive Learning for Code Search", §3; spec §11b).

    With unit code / query embeddings ``c_q = f_q(code)``, ``n_q = f_q(query)`` and momentum keys
    ``c_k``, ``n_k`` of their soft-augmented copies, each term ``(A, P, Q)`` has logits
    ``[ts·A Pᵀ, A Qᵀ] · logit_scale / τ`` with targets ``arange(B)``:

    * inter: ``(c_q, n_q, Q_nl)``, ``(c_q, n_k, Q_nl')``, ``(n_q, c_q, Q_code)``,
      ``(n_q, c_k, Q_code')``;
    * intra (``intra=True``): ``(c_q, c_k, Q_code')``, ``(n_q, n_k, Q_nl')``.

    The loss is the mean over all rows of all terms. Afterwards ``c_q → Q_code``, ``n_q → Q_nl``,
    ``c_k → Q_code'``, ``n_k → Q_nl'`` are enqueued (detached; the queues are shared by every
    rank, see :class:`~contrastkit.nn.queue.Queue`). ``K % B == 0`` is not required: a queue
    keeps the newest ``K`` rows, so when ``B`` does not divide ``K`` the oldest batch still in it
    is cut to its first rows. Keys and queues never receive gradient (the keys are detached
    here). Every term is one :func:`~contrastkit.functional.info_nce` call: the time score scales
    the (normalised) positive set, which is the in-batch block of the logits only; across ranks
    the in-batch candidates are gathered from every rank, the queue is global.

    Args:
        dim: embedding dimension (the queues' width).
        queue_size: ``K`` rows per queue (release: 1024); 0 = no queues (in-batch only, the
            fine-tuning loss of the release).
        temperature: τ (release ``moco_t``: 0.07).
        logit_scale: the release's extra factor on the logits (20; effective τ = τ/20).
        time_score: ``ts``, the factor on the in-batch similarities (release: 1).
        intra: add the two intra-modal terms (off in the released pre-training script).

    ``logged``: ``"inter"`` and (with ``intra``) ``"intra"``, the mean of each group of terms.
    """

    QUEUES = ("code", "nl", "code_key", "nl_key")

    def __init__(
        self,
        dim: int,
        queue_size: int = 1024,
        temperature: float = 0.07,
        logit_scale: float = 20.0,
        time_score: float = 1.0,
        intra: bool = False,
    ) -> None:
        super().__init__()
        for name, value, low in (("dim", dim, 1), ("queue_size", queue_size, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ContrastkitError(f"{name} must be an integer ≥ {low}, got {value!r}.")
        self.dim = dim
        self.temperature = _positive(temperature, "temperature")
        self.logit_scale = _positive(logit_scale, "logit_scale")
        self.time_score = _positive(time_score, "time_score")
        self.intra = intra
        self.queues = nn.ModuleDict()
        if queue_size:
            generator = torch.Generator().manual_seed(QUEUE_SEED)
            for name in self.QUEUES:
                queue = Queue(queue_size, dim, init="random", shared=True)
                queue.rows = F.normalize(torch.randn(queue_size, dim, generator=generator), dim=1)
                self.queues[name] = queue
        self.logged: dict[str, Tensor] = {}

    def forward(self, code_q: Tensor, query_q: Tensor, code_k: Tensor, query_k: Tensor) -> Tensor:
        """Loss of code / query embeddings ``[B, dim]`` from the trained encoder (``code_q``,
        ``query_q``) and their momentum keys (``code_k``, ``query_k``)."""
        inputs = {"code_q": code_q, "query_q": query_q, "code_k": code_k, "query_k": query_k}
        for name, x in inputs.items():
            if not isinstance(x, Tensor) or x.ndim != 2 or not x.dtype.is_floating_point:
                raise ContrastkitError(f"CoCoSoDa: {name} must be a 2-D float tensor [B, dim].")
        shapes = {tuple(x.shape) for x in inputs.values()}
        if len(shapes) != 1 or code_q.shape[1] != self.dim:
            raise ContrastkitError(
                f"CoCoSoDa needs code_q, query_q, code_k, query_k of one shape [B, {self.dim}], "
                f"got {sorted(shapes)}."
            )
        c_q, n_q = F.normalize(code_q, dim=1), F.normalize(query_q, dim=1)
        c_k, n_k = F.normalize(code_k.detach(), dim=1), F.normalize(query_k.detach(), dim=1)
        inter = [(c_q, n_q, "nl"), (c_q, n_k, "nl_key"), (n_q, c_q, "code"), (n_q, c_k, "code_key")]
        groups = {"inter": [self._term(*term) for term in inter]}
        if self.intra:
            intra = [(c_q, c_k, "code_key"), (n_q, n_k, "nl_key")]
            groups["intra"] = [self._term(*term) for term in intra]
        # every term has B rows, so the mean of the term means is the mean over all rows
        loss = torch.stack([t for terms in groups.values() for t in terms]).mean()
        if self.queues:
            for name, rows in zip(self.QUEUES, (c_q, n_q, c_k, n_k), strict=True):
                self.queues[name].push(rows.detach())
        self.logged = {k: torch.stack(v).mean().detach() for k, v in groups.items()}
        return loss

    def _term(self, anchors: Tensor, positives: Tensor, queue: str) -> Tensor:
        """``CE([ts·A Pᵀ, A Qᵀ]·scale/τ, arange(B))`` over unit ``A``, ``P`` and queue rows."""
        negatives = (
            F.normalize(self.queues[queue](), dim=1).to(anchors.dtype) if self.queues else None
        )
        return info_nce(
            anchors,
            Pairs.cross(len(anchors), device=anchors.device),
            self.time_score * positives,  # scales the in-batch block only (inputs are unit)
            extra_negatives=negatives,
            temperature=self.temperature / self.logit_scale,
            normalize=False,
        )

    def after_optimizer_step(self) -> None:
        """Nothing to do (queues are pushed in ``forward``); present for a uniform loop."""
        _delegate_after_step(self)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, temperature={self.temperature}, logit_scale={self.logit_scale}, "
            f"time_score={self.time_score}, intra={self.intra}"
        )


class SentenceContrastLoss(nn.Module):
    """Unsupervised SimCSE (Gao, Yao & Chen 2021, eq. 1) and WhitenedCSE (Zhuo et al. 2023, §3;
    spec §4b): ``m`` dropout passes of ``B`` sentences; per pass, optional Shuffled Group
    Whitening then the released ``MLPLayer`` (``Linear(D, D)`` + tanh), and

    ``L = Σ_{k=2..m} (1/B) Σ_i −log softmax_j(cos(z¹_i, z^k_j)/τ)[i]``

    (a sum over the positive passes, in-batch candidates). SimCSE: ``num_pos=2``, no whitening;
    WhitenedCSE: ``num_pos=3``, ``whitening_groups=G``. The MLP (and the whitening) are dropped
    at inference (the release's ``mlp_only_train``): the encoder's ``[CLS]`` vector is the
    sentence embedding. Across ranks the candidates ``z^k`` are gathered from every rank (as
    SimCSE's code does); whitening statistics are per rank.

    Args:
        dim: embedding dimension ``D``.
        temperature: τ (both papers: 0.05).
        num_pos: ``m``, the number of passes (views) per sentence.
        whitening_groups: ``G`` of the Shuffled Group Whitening, or ``None`` for none (release:
            128 for ``D=768``).
        mlp: apply the ``Linear(D, D)`` + tanh projection (shared by the passes).
        grad_through_whitening, eps: see :class:`~contrastkit.nn.whitening.ShuffledGroupWhitening`.

    ``logged``: ``"positive_k"`` for ``k = 2..m``, each pass's InfoNCE term.
    """

    def __init__(
        self,
        dim: int,
        temperature: float = 0.05,
        num_pos: int = 2,
        whitening_groups: int | None = None,
        mlp: bool = True,
        grad_through_whitening: bool = False,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ContrastkitError(f"dim must be a positive integer, got {dim!r}.")
        if isinstance(num_pos, bool) or not isinstance(num_pos, int) or num_pos < 2:
            raise ContrastkitError(
                f"num_pos must be an integer ≥ 2 (passes per sentence), got {num_pos!r}."
            )
        self.whitening = None
        if whitening_groups is not None:
            self.whitening = ShuffledGroupWhitening(whitening_groups, eps, grad_through_whitening)
            if dim % whitening_groups:
                raise ContrastkitError(
                    f"whitening_groups={whitening_groups} does not divide dim={dim}; choose a "
                    f"number of groups that divides {dim}."
                )
        self.dim, self.num_pos = dim, num_pos
        self.temperature = _positive(temperature, "temperature")
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.Tanh()) if mlp else None
        self.logged: dict[str, Tensor] = {}

    def forward(self, views: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Loss of ``views [m, B, D]`` (pass-major); ``generator`` draws the whitening's
        channel permutations."""
        if not isinstance(views, Tensor) or views.ndim != 3 or not views.dtype.is_floating_point:
            raise ContrastkitError(
                "SentenceContrastLoss needs a float tensor [num_pos, B, D] of the dropout passes."
            )
        m, b, d = views.shape
        if m != self.num_pos or d != self.dim or b < 1:
            raise ContrastkitError(
                f"SentenceContrastLoss expects views [num_pos={self.num_pos}, B, dim={self.dim}], "
                f"got {tuple(views.shape)}; stack the {self.num_pos} passes along dim 0."
            )
        z = views.reshape(m * b, d)
        if self.whitening is not None:
            z = self.whitening(z, generator, num_views=m)
        if self.mlp is not None:
            z = self.mlp(z)
        z = z.reshape(m, b, d)
        pairs = Pairs.cross(b, device=z.device)
        terms = [info_nce(z[0], pairs, z[k], temperature=self.temperature) for k in range(1, m)]
        self.logged = {f"positive_{k + 1}": t.detach() for k, t in enumerate(terms, start=1)}
        return torch.stack(terms).sum()

    def after_optimizer_step(self) -> None:
        """Nothing to do; present for a uniform training loop."""
        _delegate_after_step(self)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, temperature={self.temperature}, num_pos={self.num_pos}"
