"""AMCL as an objective: adaptive multi-head contrastive learning over a two-view SimCLR batch
(Wang, Koniusz, Gedeon, Zheng; ECCV 2024, Table 2)."""

from __future__ import annotations

from torch import Tensor, nn

from contrastkit.errors import ContrastkitError
from contrastkit.functional.amcl import FORMS, Form, amcl_loss
from contrastkit.functional.distributed import gather_with_grad, global_pairs, world
from contrastkit.functional.pairs import Pairs
from contrastkit.nn.multihead import TemperatureNet
from contrastkit.objectives.context import StepContext


class AMCLLoss(nn.Module):
    """AMCL's Table-2 loss (:func:`~contrastkit.functional.amcl.amcl_loss`) with its temperature
    networks inside (their parameters belong in the optimiser).

    ``embeddings`` are ``[2B, C, d′]``: two views of the batch, view-major, from a
    :class:`~contrastkit.nn.multihead.MultiHeadProjection`. Every row is an anchor; its positive
    is the other view of its sample, and its negatives are the batch's other samples in both views
    (``2B − 2``). The loss is the mean over the ``2B`` anchors of the sum over heads. Under
    ``torch.distributed`` the negatives are those of the whole global batch (gathered with
    gradient), so ``W`` processes compute the one-process loss; the temperature networks'
    gradients must then be averaged over ranks like any other parameter's (DDP).

    Args:
        dim: head output dimension ``d′`` (input of ``φ`` is ``2d′``; ``d′`` enters ``Ω``).
        heads: number of heads ``C``.
        beta: regulariser weight β.
        form: ``"ntxent"`` (hardest negative) or ``"infonce"`` (max over negatives and positive).
        tau_min, tau_max: temperature range.
        shared_temperature_net: one ``φ`` for all heads instead of one per head.
        hidden_dim: hidden width of ``φ``.
        distributed: ``None``: whenever a process group with more than one rank exists.

    After each call ``self.logged`` holds the mean positive temperature ``tau_pos`` and the mean
    temperature of the hardest pairs ``tau_neg``.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 3,
        beta: float = 0.1,
        form: Form = "ntxent",
        tau_min: float = 1e-5,
        tau_max: float = 2.0,
        shared_temperature_net: bool = False,
        hidden_dim: int = 128,
        distributed: bool | None = None,
    ) -> None:
        super().__init__()
        if form not in FORMS:
            raise ContrastkitError(f"AMCL form must be 'ntxent' or 'infonce', got {form!r}.")
        self.temperature = TemperatureNet(
            dim, heads, hidden_dim, tau_min, tau_max, shared=shared_temperature_net
        )
        self.dim, self.heads, self.beta, self.form = dim, heads, beta, form
        self.distributed = distributed
        self.logged: dict[str, Tensor] = {}

    def forward(
        self, embeddings: Tensor, pairs: Pairs, context: StepContext | None = None
    ) -> Tensor:
        if (
            pairs.n_views != 2
            or pairs.n_anchors != len(embeddings)
            or embeddings.ndim != 3
            or tuple(embeddings.shape[1:]) != (self.heads, self.dim)
        ):
            raise ContrastkitError(
                f"AMCL needs two views of the batch from {self.heads} heads, [2B, {self.heads}, "
                f"{self.dim}] view-major with Pairs.views(B, 2); got {tuple(embeddings.shape)}."
            )
        batch = len(embeddings) // 2
        distributed = world()[1] > 1 if self.distributed is None else self.distributed
        candidates = embeddings
        if distributed:
            candidates = gather_with_grad(embeddings)
            pairs = global_pairs(pairs, len(embeddings))
        elif batch < 2:
            raise ContrastkitError("AMCL needs at least two samples per batch for negatives.")
        positive, is_self = pairs.masks()
        positives = embeddings.roll(batch, dims=0)  # row i ↔ the other view of its sample
        terms = amcl_loss(
            embeddings,
            positives,
            candidates,
            ~(positive | is_self),
            self.temperature,
            form=self.form,
            beta=self.beta,
        )
        self.logged = {
            "tau_pos": terms.tau_pos.detach().mean(),
            "tau_neg": terms.tau_hard.detach().mean(),
        }
        return terms.loss

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads}, beta={self.beta}, form={self.form!r}"
