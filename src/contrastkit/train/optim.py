"""Optimizers and learning-rate schedule for contrastive pre-training (plain torch).

* :func:`build_optimizer` — SGD, AdamW or LARS with the SimCLR / BYOL parameter grouping: biases
  and normalisation parameters (``ndim <= 1``) get no weight decay and no LARS adaptation
  (Grill et al., 2020, BYOL §3.3; likewise the SimCLR reference code, Chen et al., 2020).
* :class:`LARS` — layer-wise adaptive rate scaling (You, Gitman & Ginsburg, 2017).
* :func:`cosine_with_warmup` — linear warm-up then cosine decay (Goyal et al., 2017;
  Loshchilov & Hutter, 2017), the SimCLR / BYOL schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from contrastkit.errors import ContrastkitError

__all__ = ["LARS", "OPTIMIZERS", "build_optimizer", "cosine_with_warmup", "param_groups"]

#: Names accepted by :func:`build_optimizer`.
OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw", "lars")


def _check_number(
    value: Any,
    name: str,
    *,
    low: float,
    low_ok: bool,
    high: float | None = None,
    high_ok: bool = False,
) -> float:
    """Return ``value`` as a float if it is a finite real in the given range, else raise."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value >= low if low_ok else value > low
    if ok and high is not None:
        ok = value <= high if high_ok else value < high
    if not ok:
        lo = f"{'>=' if low_ok else '>'} {low:g}"
        hi = "" if high is None else f" and {'<=' if high_ok else '<'} {high:g}"
        raise ContrastkitError(f"{name} must be a finite number {lo}{hi}, got {value!r}.")
    return float(value)


class LARS(torch.optim.Optimizer):
    """LARS: SGD with momentum and a layer-wise trust ratio (You, Gitman & Ginsburg, 2017).

    torch has no LARS, so it is written here. For each parameter ``w`` with gradient ``g``::

        trust = eta * ||w|| / (||g|| + weight_decay * ||w||)   (1 if ||w|| == 0 or ||g|| == 0)
        d     = trust * (g + weight_decay * w)
        buf   = momentum * buf + d
        w     = w - lr * buf

    Groups with ``lars_exclude=True`` skip the trust ratio, i.e. they are plain SGD with momentum
    (identical to ``torch.optim.SGD``); SimCLR and BYOL exclude biases and normalisation
    parameters this way. The learning rate multiplies the momentum buffer (torch's SGD
    convention), so a schedule acting on ``lr`` behaves as it does for ``torch.optim.SGD``;
    SimCLR's TF implementation folds ``lr`` into the buffer instead, which is the same for a
    constant ``lr``.

    Args:
        params: parameters or parameter groups (groups may set ``lars_exclude``).
        lr: learning rate.
        momentum: momentum coefficient in ``[0, 1)``.
        weight_decay: L2 coefficient added to the gradient.
        trust_coefficient: ``eta`` (1e-3 in You et al., 2017 and SimCLR).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
    ) -> None:
        _check_number(lr, "lr", low=0.0, low_ok=False)
        _check_number(momentum, "momentum", low=0.0, low_ok=True, high=1.0)
        _check_number(weight_decay, "weight_decay", low=0.0, low_ok=True)
        _check_number(trust_coefficient, "trust_coefficient", low=0.0, low_ok=False)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "lars_exclude": False,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one optimisation step; ``closure`` re-evaluates the loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            weight_decay, eta = group["weight_decay"], group["trust_coefficient"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ContrastkitError("LARS does not support sparse gradients.")
                d_p = p.grad
                if not group["lars_exclude"]:
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(d_p)
                    # torch.where keeps everything on-device (no host sync per parameter).
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0),
                        eta * w_norm / (g_norm + weight_decay * w_norm),
                        torch.ones_like(w_norm),
                    )
                if weight_decay != 0:
                    d_p = d_p.add(p, alpha=weight_decay)
                if not group["lars_exclude"]:
                    d_p = d_p.mul(trust)
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = torch.clone(d_p).detach()
                    else:
                        buf.mul_(momentum).add_(d_p)
                    d_p = buf
                p.add_(d_p, alpha=-lr)
        return loss


def _split_decay(
    params: Iterable[torch.Tensor], base: dict[str, Any], weight_decay: float, lars: bool
) -> list[dict[str, Any]]:
    """Split ``params`` into a decayed group (``ndim > 1``) and a non-decayed one."""
    decay: list[torch.Tensor] = []
    no_decay: list[torch.Tensor] = []
    for p in params:
        if not isinstance(p, torch.Tensor):
            raise ContrastkitError(
                f"expected torch parameters, got {type(p).__name__}; pass a model or its "
                "parameters."
            )
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = []
    for ps, wd, exclude in ((decay, weight_decay, False), (no_decay, 0.0, True)):
        if ps:
            group = {**base, "params": ps, "weight_decay": wd}
            if lars:  # a group may also opt out of adaptation explicitly
                group["lars_exclude"] = exclude or bool(base.get("lars_exclude", False))
            groups.append(group)
    return groups


def param_groups(
    model_or_params: nn.Module | Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    weight_decay: float,
    *,
    lars: bool = False,
) -> list[dict[str, Any]]:
    """Parameter groups with no weight decay (and, for LARS, no adaptation) on ``ndim <= 1``.

    Accepts a module, an iterable of parameters, or torch-style parameter groups (each group is
    split, keeping its other keys). Parameters with ``requires_grad=False`` are left out, and a
    parameter shared between modules appears once.
    """
    if isinstance(model_or_params, nn.Module):
        items: list[Any] = list(model_or_params.parameters())
    elif isinstance(model_or_params, torch.Tensor):
        items = [model_or_params]
    else:
        try:
            items = list(model_or_params)
        except TypeError as exc:
            raise ContrastkitError(
                f"expected a model, parameters or parameter groups, got "
                f"{type(model_or_params).__name__}."
            ) from exc
    is_groups = bool(items) and all(isinstance(g, dict) for g in items)
    raw_groups = items if is_groups else [{"params": items}]
    seen: set[int] = set()
    groups: list[dict[str, Any]] = []
    for raw in raw_groups:
        if "params" not in raw:
            raise ContrastkitError("every parameter group must have a 'params' entry.")
        ps = raw["params"]
        ps = [ps] if isinstance(ps, torch.Tensor) else list(ps)
        unique = []
        for p in ps:
            if id(p) not in seen:
                seen.add(id(p))
                unique.append(p)
        base = {k: v for k, v in raw.items() if k != "params"}
        groups.extend(_split_decay(unique, base, base.get("weight_decay", weight_decay), lars))
    if not groups:
        raise ContrastkitError(
            "no trainable parameters (all have requires_grad=False or none given)."
        )
    return groups


def build_optimizer(
    name: str,
    model_or_params: nn.Module | Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    trust_coefficient: float = 0.001,
) -> torch.optim.Optimizer:
    """Build ``"sgd"``, ``"adamw"`` or ``"lars"`` with SimCLR / BYOL parameter grouping.

    Parameters with ``ndim <= 1`` (biases, BatchNorm / LayerNorm affine) get ``weight_decay=0``
    and, for LARS, ``lars_exclude=True`` (plain SGD-momentum), as in SimCLR (Chen et al., 2020)
    and BYOL (Grill et al., 2020). ``momentum`` applies to SGD and LARS, ``betas`` to AdamW
    (Loshchilov & Hutter, 2019), ``trust_coefficient`` to LARS.
    """
    key = name.lower().strip() if isinstance(name, str) else name
    if key not in OPTIMIZERS:
        raise ContrastkitError(
            f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}."
        )
    lr = _check_number(lr, "lr", low=0.0, low_ok=False)
    weight_decay = _check_number(weight_decay, "weight_decay", low=0.0, low_ok=True)
    groups = param_groups(model_or_params, weight_decay, lars=key == "lars")
    if key == "sgd":
        momentum = _check_number(momentum, "momentum", low=0.0, low_ok=True, high=1.0)
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if key == "adamw":
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ContrastkitError(f"betas must be a pair of numbers in [0, 1), got {betas!r}.")
        b1 = _check_number(betas[0], "betas[0]", low=0.0, low_ok=True, high=1.0)
        b2 = _check_number(betas[1], "betas[1]", low=0.0, low_ok=True, high=1.0)
        return torch.optim.AdamW(groups, lr=lr, betas=(b1, b2), weight_decay=weight_decay)
    return LARS(
        groups,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        trust_coefficient=trust_coefficient,
    )


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer,
    *,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay, stepped once per optimizer step (SimCLR / BYOL).

    The multiplier of each group's base lr at step ``t`` (``t = 0`` before any
    ``scheduler.step()``) is::

        (t + 1) / warmup_steps                                    for t < warmup_steps
        r + (1 - r) * (1 + cos(pi * (t - W) / (T - W))) / 2       for W <= t < T
        r                                                         for t >= T

    with ``W = warmup_steps``, ``T = total_steps``, ``r = min_lr_ratio``: the first step already
    uses ``lr / W`` (no wasted zero-lr step), the last warm-up step and step ``W`` use the full
    lr, and the lr reaches ``r * lr`` at ``T`` (Goyal et al., 2017; Loshchilov & Hutter, 2017).
    """
    for value, name in ((warmup_steps, "warmup_steps"), (total_steps, "total_steps")):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ContrastkitError(f"{name} must be an integer, got {value!r}.")
    if total_steps < 1:
        raise ContrastkitError(f"total_steps must be >= 1, got {total_steps}.")
    if not 0 <= warmup_steps <= total_steps:
        raise ContrastkitError(
            f"warmup_steps must be between 0 and total_steps ({total_steps}), got {warmup_steps}."
        )
    ratio = _check_number(
        min_lr_ratio, "min_lr_ratio", low=0.0, low_ok=True, high=1.0, high_ok=True
    )

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if step >= total_steps:
            return ratio
        progress = (step - warmup_steps) / (total_steps - warmup_steps)
        return ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
