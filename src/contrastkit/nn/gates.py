"""Hydra's class-pair feature filters (Wu et al. 2024, arXiv 2410.18200 v1; ``erow/hydra``
``moco/filter.py``): a gate vector ``g(y, y′) ∈ [0, 1]^D`` per pair of classes selects the
subspace in which the two classes are contrasted.

* :class:`OpenGate`: ``g ≡ 1`` (Hydra reduces to a multi-positive InfoNCE).
* :class:`BasicGate`: label embedding ``E ∈ R^{C×512}``, ``e = (E[y] + E[y′]) / 2`` (``fuse``:
  symmetric in the pair), ``g = σ(MLP(e))`` with ``MLP = ReLU → BN(512) → Linear(512, 1024) →
  ReLU → BN(1024) → Linear(1024, D)``; ``fuse=False`` is ``σ(MLP(E[y])) ⊙ σ(MLP(E[y′]))``.
* :class:`StochasticGate` (STG, Yamada et al. 2020): ``g = clamp(μ + ε + 0.5, 0, 1)``,
  ``ε ~ N(0, σ²)`` in training; its regulariser ``Σ_d Φ((μ_d + 0.5)/σ)`` (expected open gates)
  is only logged, as in the official code.
* :class:`GumbelGate`: ``g = σ((logit + G) / τ)`` with one Gumbel sample ``G`` per entry in
  training (the official ``reparameterize_with_gumbel_softmax``), ``σ(logit / τ)`` in eval.

``forward(labels, partners=None)`` gives ``[B, D]`` gates (single-class gates ``g(y)`` when
``partners`` is ``None``); :meth:`ClassPairGate.pair_gates` evaluates every class pair in eval
mode for the class-relationship read-out.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.errors import ContrastkitError, unknown_name

__all__ = [
    "GATES",
    "BasicGate",
    "ClassPairGate",
    "GumbelGate",
    "OpenGate",
    "StochasticGate",
    "build_gate",
]


class ClassPairGate(nn.Module):
    """Base of the gate families: ``num_classes`` classes, gates of width ``dim``."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ContrastkitError(f"Gate {name} must be a positive integer, got {value!r}.")
        self.num_classes, self.dim = num_classes, dim
        self.logged: dict[str, Tensor] = {}

    def forward(self, labels: Tensor, partners: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def pair_gates(self) -> Tensor:
        """``[C, C, D]`` gates ``g(a, b)`` of every class pair, in eval mode (BatchNorm's running
        statistics, no noise); the module's mode is restored."""
        classes = torch.arange(self.num_classes, device=self._device())
        a, b = classes.repeat_interleave(self.num_classes), classes.repeat(self.num_classes)
        return self._evaluate(a, b).reshape(self.num_classes, self.num_classes, -1)

    @torch.no_grad()
    def single_gates(self) -> Tensor:
        """``[C, D]`` single-class gates ``g(y)`` (the ``y2=None`` path), in eval mode."""
        return self._evaluate(torch.arange(self.num_classes, device=self._device()), None)

    def _evaluate(self, labels: Tensor, partners: Tensor | None) -> Tensor:
        was_training = self.training
        self.eval()
        try:
            return self(labels, partners).float()
        finally:
            self.train(was_training)

    def _device(self) -> torch.device:
        parameter = next(self.parameters(), None)
        return torch.device("cpu") if parameter is None else parameter.device


class OpenGate(ClassPairGate):
    """``g ≡ 1``: every dimension open (Hydra's ``OpenGate``)."""

    def forward(self, labels: Tensor, partners: Tensor | None = None) -> Tensor:
        return torch.ones(len(labels), self.dim, device=labels.device)


class BasicGate(ClassPairGate):
    """Label embedding → MLP → sigmoid (Hydra's ``BasicGate``); see the module docstring.

    Args:
        num_classes: ``C``; dim: gate width ``D`` (the embedding dimension).
        label_dim: width of the label embedding (512); hidden_dim: MLP hidden width (1024).
        fuse: average the two label embeddings before the MLP (symmetric in the pair); else
            multiply the two single-class gates (also symmetric).
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        label_dim: int = 512,
        hidden_dim: int = 1024,
        fuse: bool = True,
    ) -> None:
        super().__init__(num_classes, dim)
        self.fuse = fuse
        self.label_embedding = nn.Embedding(num_classes, label_dim)
        self.mlp = nn.Sequential(
            nn.ReLU(),
            nn.BatchNorm1d(label_dim),
            nn.Linear(label_dim, hidden_dim),
            nn.ReLU(),
            nn.BatchNorm1d(hidden_dim),
            nn.Linear(hidden_dim, dim),
        )

    def forward(self, labels: Tensor, partners: Tensor | None = None) -> Tensor:
        if partners is None:
            return self.activate(self.mlp(self.label_embedding(labels)))
        if self.fuse:
            fused = (self.label_embedding(labels) + self.label_embedding(partners)) / 2
            return self.activate(self.mlp(fused))
        both = self.mlp(self.label_embedding(torch.cat([labels, partners])))
        first, second = self.activate(both).chunk(2)
        return first * second

    def activate(self, logits: Tensor) -> Tensor:
        """MLP output → gate values in ``[0, 1]``."""
        return torch.sigmoid(logits)


class StochasticGate(BasicGate):
    """Stochastic gates (STG; Yamada et al. 2020; Hydra's ``StochasticGate``): the MLP gives
    ``μ`` and ``g = clamp(μ + ε + 0.5, 0, 1)`` with ``ε ~ N(0, σ²)`` while training (no noise in
    eval). ``logged["reg"]`` is the regulariser ``mean_b Σ_d Φ((μ_d + 0.5)/σ)``; it is not added
    to the loss (the official training adds no gate penalty)."""

    def __init__(self, num_classes: int, dim: int, *, sigma: float = 0.5, **options: Any) -> None:
        super().__init__(num_classes, dim, **options)
        if not sigma > 0:
            raise ContrastkitError(f"StochasticGate sigma must be positive, got {sigma!r}.")
        self.sigma = sigma

    def activate(self, logits: Tensor) -> Tensor:
        mean = logits + 0.5
        self.logged = {
            "reg": (0.5 * (1 + torch.erf(mean.detach() / self.sigma / math.sqrt(2)))).sum(-1).mean()
        }
        noise = torch.randn_like(logits) * self.sigma if self.training else 0.0
        return torch.clamp(mean + noise, 0.0, 1.0)


class GumbelGate(BasicGate):
    """Gumbel-noised sigmoid gates (Hydra's ``GumbelGates``): ``σ((logit + G)/τ)`` with one
    standard Gumbel sample ``G`` per entry while training (as the official code; its mean
    0.577 biases gates open), ``σ(logit/τ)`` in eval."""

    def __init__(self, num_classes: int, dim: int, *, tau: float = 1.0, **options: Any) -> None:
        super().__init__(num_classes, dim, **options)
        if not tau > 0:
            raise ContrastkitError(f"GumbelGate tau must be positive, got {tau!r}.")
        self.tau = tau

    def activate(self, logits: Tensor) -> Tensor:
        if self.training:
            uniform = torch.rand_like(logits)
            logits = logits - torch.log(-torch.log(uniform + 1e-20) + 1e-20)
        return torch.sigmoid(logits / self.tau)


#: gate family name → class
GATES: dict[str, type[ClassPairGate]] = {
    "open": OpenGate,
    "basic": BasicGate,
    "stochastic": StochasticGate,
    "gumbel": GumbelGate,
}


def build_gate(name: str, num_classes: int, dim: int, **options: Any) -> ClassPairGate:
    """The gate family ``name`` (``open``, ``basic``, ``stochastic``, ``gumbel``) with options."""
    if name not in GATES:
        raise unknown_name("gate", name, GATES)
    if name == "open" and options:
        raise ContrastkitError(f"The open gate takes no options, got {sorted(options)}.")
    try:
        return GATES[name](num_classes, dim, **options)
    except TypeError as error:
        raise ContrastkitError(f"Gate {name!r} rejected its options {options}: {error}.") from None
