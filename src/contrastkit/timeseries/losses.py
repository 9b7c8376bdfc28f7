"""Time-series contrastive objectives: TS2Vec, COMET and AutoTCL (pure functions of tensors).

Representations are ``[B, T, C]`` (batch, time steps, features).

TS2Vec (Yue et al. 2022, eqs. 1–3, Algorithm 1; code ``models/losses.py``): raw dot products,
no temperature. The *instance-wise* loss contrasts, at every time step, each series' two views
against the other series of the batch (2B − 1 candidates, self excluded); the *temporal* loss
contrasts, within each series, a time step's two views against the other time steps (2T − 1
candidates). Both are InfoNCE with SimCLR's view-pair structure, so they run through the
project's engine :func:`~contrastkit.functional.infonce.info_nce` with ``Pairs.views``,
batched over time steps (instance) or series (temporal) with ``torch.func.vmap``.

COMET (Wang et al. 2023, §4; code ``models/losses.py``): the sample and observation levels are
TS2Vec's instance and temporal losses summed over max-pool levels while ``T > 1`` (no final
``T = 1`` term, no α); the trial and patient levels make two different samples with the same id
positives (:func:`id_contrastive_loss`).

AutoTCL (Zheng et al. 2024, ICLR; code ``AutoTCL_CoST.py``/``models/losses.py``): the encoder's
global InfoNCE between the max-pooled input and view, an InfoTS-style local loss over time
segments, and the augmentation network's PRI surrogate (MMD, mask size, temporal consistency).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.errors import ContrastkitError
from contrastkit.functional.infonce import info_nce
from contrastkit.functional.pairs import Pairs
from contrastkit.timeseries.views import WHOLE, Shard

__all__ = [
    "autotcl_global_loss",
    "autotcl_local_loss",
    "comet_level_loss",
    "hierarchical_contrastive_loss",
    "hierarchical_terms",
    "id_contrastive_loss",
    "instance_contrastive_loss",
    "mask_size_penalty",
    "mmd",
    "temporal_consistency",
    "temporal_contrastive_loss",
]


def _check_pair(z1: Tensor, z2: Tensor) -> None:
    if z1.ndim != 3 or z1.shape != z2.shape:
        raise ContrastkitError(
            f"Both views must be [batch, time, features] tensors of one shape, got "
            f"{tuple(z1.shape)} and {tuple(z2.shape)}; align the two views' time steps first."
        )


def _views_info_nce(z: Tensor, n: int) -> Tensor:
    """Per-row InfoNCE over blocks ``z [G, 2n, C]`` (view-major rows, positive = other view,
    self excluded, dot products at τ = 1), batched over ``G``; returns ``[G, 2n]``."""
    pairs = Pairs.views(n, 2, device=z.device)

    def one(block: Tensor) -> Tensor:
        return info_nce(
            block,
            pairs,
            temperature=1.0,
            normalize=False,
            reduction="none",
            backend="dense",
            distributed=False,
        )

    return torch.func.vmap(one)(z)


def instance_contrastive_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """TS2Vec's instance-wise loss (eq. 2), averaged over series, views and time steps.

    For step ``t`` and series ``i``: ``−log e^{r_it·r'_it} / Σ_j (e^{r_it·r'_jt} +
    1[i≠j] e^{r_it·r_jt})``, for both views as anchor. 0 when ``B = 1``.
    """
    _check_pair(z1, z2)
    batch = z1.shape[0]
    if batch == 1:
        return z1.new_zeros(())
    z = torch.cat([z1, z2], dim=0).transpose(0, 1)  # [T, 2B, C]
    return _views_info_nce(z, batch).mean()


def temporal_contrastive_loss(z1: Tensor, z2: Tensor) -> Tensor:
    """TS2Vec's temporal loss (eq. 1), averaged over series, views and time steps.

    For series ``i`` and step ``t``: ``−log e^{r_it·r'_it} / Σ_t' (e^{r_it·r'_it'} +
    1[t≠t'] e^{r_it·r_it'})``, for both views as anchor. 0 when ``T = 1``.
    """
    _check_pair(z1, z2)
    steps = z1.shape[1]
    if steps == 1:
        return z1.new_zeros(())
    z = torch.cat([z1, z2], dim=1)  # [B, 2T, C]
    return _views_info_nce(z, steps).mean()


def _halve(z: Tensor) -> Tensor:
    """Max-pool time by 2 (``floor(T / 2)`` steps)."""
    return F.max_pool1d(z.transpose(1, 2), kernel_size=2).transpose(1, 2)


def hierarchical_contrastive_loss(
    z1: Tensor, z2: Tensor, alpha: float = 0.5, temporal_unit: int = 0
) -> Tensor:
    """TS2Vec's hierarchical contrastive loss (Algorithm 1; code ``hierarchical_contrastive_loss``).

    At every level ``d`` while ``T > 1``: ``α·inst + (1 − α)·temp`` (temporal only once
    ``d ≥ temporal_unit``), then max-pool time by 2; a final ``T = 1`` level adds ``α·inst``;
    the sum is divided by the number of levels.
    """
    instance, temporal = hierarchical_terms(z1, z2, alpha, temporal_unit)
    return instance + temporal


def hierarchical_terms(
    z1: Tensor,
    z2: Tensor,
    alpha: float = 0.5,
    temporal_unit: int = 0,
    *,
    everywhere: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """The instance and temporal parts of :func:`hierarchical_contrastive_loss` (their sum).

    ``everywhere``: both views of the whole batch of every process (gathered with gradient),
    for the instance terms, which contrast series with each other; the temporal terms stay
    within each of this process's series ``z1``/``z2``.
    """
    _check_pair(z1, z2)
    if not 0.0 <= alpha <= 1.0:
        raise ContrastkitError(f"alpha must lie in [0, 1], got {alpha!r}.")
    g1, g2 = (z1, z2) if everywhere is None else everywhere
    _check_pair(g1, g2)
    instance, temporal = z1.new_zeros(()), z1.new_zeros(())
    depth = 0
    while z1.shape[1] > 1:
        if alpha != 0:
            instance = instance + alpha * instance_contrastive_loss(g1, g2)
        if depth >= temporal_unit and alpha != 1:
            temporal = temporal + (1 - alpha) * temporal_contrastive_loss(z1, z2)
        depth += 1
        z1, z2 = _halve(z1), _halve(z2)
        g1, g2 = (z1, z2) if everywhere is None else (_halve(g1), _halve(g2))
    if z1.shape[1] == 1:
        if alpha != 0:
            instance = instance + alpha * instance_contrastive_loss(g1, g2)
        depth += 1
    return instance / depth, temporal / depth


def comet_level_loss(z1: Tensor, z2: Tensor, level: str) -> Tensor:
    """COMET's sample (``"sample"``: instance) or observation (``"observation"``: temporal)
    loss: the mean over max-pool levels with ``T > 1`` (COMET code ``contrastive_loss`` with
    ``hierarchical=True``); 0 for ``T = 1`` inputs."""
    _check_pair(z1, z2)
    terms = {"sample": instance_contrastive_loss, "observation": temporal_contrastive_loss}
    if level not in terms:
        raise ContrastkitError(f"level must be 'sample' or 'observation', got {level!r}.")
    loss, depth = z1.new_zeros(()), 0
    while z1.shape[1] > 1:
        loss = loss + terms[level](z1, z2)
        depth += 1
        z1, z2 = _halve(z1), _halve(z2)
    return loss / max(depth, 1)


def id_contrastive_loss(z1: Tensor, z2: Tensor, ids: Tensor, temperature: float = 0.1) -> Tensor:
    """COMET's trial/patient-level loss (code ``id_contrastive_loss``).

    ``z`` is normalised along time (each feature's time course has unit norm) and flattened;
    ``S_ij = cos(u1_i, u2_j) / τ``. Positives are pairs ``i ≠ j`` with ``ids_i = ids_j``:
    for ``i < j`` the row softmax ``−log e^{S_ij} / Σ_k e^{S_ik}``, for ``i > j`` the column
    softmax ``−log e^{S_ij} / Σ_k e^{S_kj}``; the loss averages the two means (those that
    exist) and is 0 without positive pairs.
    """
    _check_pair(z1, z2)
    ids = torch.as_tensor(ids, device=z1.device)
    if ids.shape != (z1.shape[0],):
        raise ContrastkitError(
            f"ids must hold one id per series ({z1.shape[0]}), got shape {tuple(ids.shape)}."
        )
    u1 = F.normalize(z1, dim=1).flatten(1)
    u2 = F.normalize(z2, dim=1).flatten(1)
    sim = F.normalize(u1, dim=1) @ F.normalize(u2, dim=1).T / temperature
    sim = sim.to(torch.promote_types(sim.dtype, torch.float32))
    same = ids[:, None] == ids[None, :]
    upper = torch.triu(same, diagonal=1)
    lower = torch.tril(same, diagonal=-1)
    parts = []
    if upper.any():
        row_lse = torch.logsumexp(sim, dim=1)[:, None]
        parts.append((row_lse - sim)[upper].mean())
    if lower.any():
        col_lse = torch.logsumexp(sim, dim=0)[None, :]
        parts.append((col_lse - sim)[lower].mean())
    if not parts:
        return sim.new_zeros(())
    return torch.stack(parts).mean()


# ----------------------------------------------------------------------------- AutoTCL


def autotcl_global_loss(
    rx: Tensor,
    rv: Tensor,
    temperature: float = 1.0,
    *,
    normalize: bool = True,
    intra_view: bool = False,
) -> Tensor:
    """AutoTCL's global InfoNCE (code ``infoNCE``): max-pool over time, cosine similarity /
    τ between input ``i`` and every view ``j``, cross-entropy with the matching view positive
    (input → view only, no intra-view negatives). ``normalize=False`` uses raw dot products
    and ``intra_view=True`` NT-Xent over all ``2B`` pooled series (both directions, the other
    ``2B − 2`` as negatives), the two as InfoTS's ``global_infoNCE`` (Luo et al. 2023, the
    authors' classification predecessor)."""
    _check_pair(rx, rv)
    px, pv = rx.amax(dim=1), rv.amax(dim=1)
    if intra_view:
        anchors, candidates = torch.cat([px, pv]), None
        pairs = Pairs.views(len(px), 2, device=px.device)
    else:
        anchors, candidates = px, pv
        pairs = Pairs.cross(len(px), device=px.device)
    return info_nce(
        anchors,
        pairs,
        candidates,
        temperature=temperature,
        normalize=normalize,
        backend="dense",
        distributed=False,
    )


def autotcl_local_loss(
    rx: Tensor,
    segments: int = 16,
    temperature: float = 1.0,
    *,
    all_series: bool = False,
    normalize: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """AutoTCL's local loss (InfoTS-style; code ``local_infoNCE``).

    ``rx`` is L2-normalised per time step (raw with ``normalize=False``, as InfoTS's own
    ``local_infoNCE``), cut into ``segments`` equal pieces (random start),
    each max-pooled. Segment ``i``'s positive is segment ``i + 1`` (the last one's: ``k − 2``);
    its negatives are all segments but itself and its neighbours (rows 0 and ``k − 1`` drop
    segments 2 and ``k − 3`` to keep ``k − 3`` negatives each). As in the code only the first
    series is used unless ``all_series``. 0 when ``T < segments``.
    """
    if rx.ndim != 3:
        raise ContrastkitError(f"rx must be [batch, time, features], got {tuple(rx.shape)}.")
    k = int(segments)
    if k < 3:
        raise ContrastkitError(f"segments must be at least 3, got {segments!r}.")
    size = rx.shape[1] // k
    if size < 1:
        return rx.new_zeros(())
    device = generator.device if generator is not None else rx.device
    start = int(
        torch.randint(0, rx.shape[1] - size * k + 1, (), generator=generator, device=device)
    )
    z = (F.normalize(rx, dim=2) if normalize else rx)[:, start : start + size * k]
    seg = z.reshape(z.shape[0], k, size, z.shape[2]).amax(dim=2)  # [B, k, C]
    if not all_series:
        seg = seg[:1]
    logits = seg @ seg.transpose(1, 2) / temperature  # [B', k, k]
    rows = torch.arange(k, device=rx.device)
    target = torch.where(rows < k - 1, rows + 1, k - 2)
    excluded = (rows[None, :] - rows[:, None]).abs() <= 1
    excluded[0, 2] = True
    excluded[k - 1, k - 3] = True
    excluded[rows, target] = False
    logits = logits.masked_fill(excluded, float("-inf"))
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits.reshape(-1, k), target.repeat(len(seg)))


def mmd(x: Tensor, y: Tensor, kernel_mul: float = 2.0, kernel_num: int = 5) -> Tensor:
    """Multi-kernel Gaussian MMD² between sets ``x, y [n, d]`` (AutoTCL code ``mmdx``).

    Bandwidths ``σ₀·kernel_mul^(i − kernel_num//2)``, ``σ₀`` = mean squared distance over all
    distinct pairs of the pooled set (no gradient); ``mean(K_xx + K_yy − K_xy − K_yx)``.
    """
    if x.ndim != 2 or x.shape != y.shape:
        raise ContrastkitError(
            f"mmd needs two [n, d] sets of one shape, got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    n = len(x)
    total = torch.cat([x, y])
    dist = torch.cdist(total, total).square()
    pairs = (2 * n) ** 2 - 2 * n
    sigma = dist.detach().sum() / pairs / kernel_mul ** (kernel_num // 2)
    sigma = sigma.clamp(min=torch.finfo(dist.dtype).tiny)
    kernel = sum(torch.exp(-dist / (sigma * kernel_mul**i)) for i in range(kernel_num))
    return (kernel[:n, :n] + kernel[n:, n:] - kernel[:n, n:] - kernel[n:, :n]).mean()


def mask_size_penalty(h: Tensor, threshold: float = 0.4) -> Tensor:
    """``ReLU(mean_{b,t} Σ_f h − threshold)``: keeps the informative mask small (AutoTCL)."""
    return F.relu(h.sum(dim=-1).mean() - threshold)


def temporal_consistency(
    h: Tensor, *, generator: torch.Generator | None = None, shard: Shard = WHOLE
) -> Tensor:
    """Adjacent time steps of the mask should agree: ``mean |h_t − h_{t−1}| + |h_t − h_{t+1}|``
    at one random step per series (AutoTCL ``regular_consistency``, near-neighbour terms;
    0 when ``T < 3``); the steps are drawn for this process's rows ``shard``."""
    batch, steps = h.shape[0], h.shape[1]
    if steps < 3:
        return h.new_zeros(())
    device = generator.device if generator is not None else h.device
    drawn = torch.randint(1, steps - 1, (shard.rows(batch),), generator=generator, device=device)
    t = shard.take(drawn).to(h.device)
    b = torch.arange(batch, device=h.device)
    centre = h[b, t]
    return ((centre - h[b, t - 1]).abs() + (centre - h[b, t + 1]).abs()).mean()
