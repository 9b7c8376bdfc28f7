"""The task protocol: what differs between method families on the one training path.

A *task* knows how its data is loaded, which model it trains, how a batch becomes the
objective's inputs (views, crops, dropout passes, bags, targets → embeddings + pair structure +
context), and how the trained model is evaluated and embedded. Everything else — the optimiser
and its schedule, DDP with rank-sharded data, checkpoints and exact resume, precision,
GradCache, progress, ``metrics.csv`` and the report — comes from the path
(:mod:`contrastkit.train.lit` and :mod:`contrastkit.train.run`), once, for every task.

This module is plain PyTorch (no Lightning), like every task module: a task can be driven by
any loop, and :func:`contrastkit.fit` drives it with Lightning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate

from contrastkit.config import Config
from contrastkit.errors import ContrastkitError

__all__ = ["IN_MEMORY", "Step", "Task", "call_hooks", "collect_logged"]

#: ``data.source`` prefix of a run trained on data handed to :func:`contrastkit.fit` in memory
IN_MEMORY = "in-memory:"


@dataclass(frozen=True)
class Step:
    """Where training stands when a batch is trained: optimiser ``step`` (0-based, per process),
    ``epoch`` and ``progress`` in [0, 1] over the whole run (drives momentum and other
    schedules)."""

    step: int = 0
    epoch: int = 0
    progress: float = 0.0


class Task:
    """One family of methods on the one training path (subclass and override).

    A task is built from a validated :class:`~contrastkit.config.Config` (``__init__`` checks
    every option of the task's own config section, so a typo is refused before any data is
    read). ``load_data`` then does all that can still reject the run (the data source, sizes
    against the batch); only after it does :func:`contrastkit.fit` write the run directory.
    """

    #: the ``config.method`` names this task trains (the one registry of methods is built from it)
    methods: ClassVar[tuple[str, ...]] = ()
    #: ``True``: :meth:`manual_step` drives the optimisers itself (several optimisers, e.g.
    #: AutoTCL's augmentation network); ``False``: :meth:`training_loss` is back-propagated
    manual_optimization: ClassVar[bool] = False
    #: why ``train.grad_cache_chunk`` cannot apply (one sentence), or ``None`` where
    #: :meth:`backward_in_chunks` implements it
    grad_cache_refusal: ClassVar[str | None] = "this method does not support GradCache"

    def __init__(self, config: Config) -> None:
        self.config = config

    # -- data ----------------------------------------------------------------------------------
    def load_data(self, data: Any | None = None) -> Any:
        """The data to train and evaluate on: ``data`` (checked) or the config's source."""
        raise NotImplementedError

    def data_name(self, data: Any) -> str | None:
        """The source name of in-memory ``data`` (``None``: unnamed); a run trained on data
        other than ``config.data.source`` records it as in-memory."""
        return getattr(data, "name", None)

    def train_dataset(self, data: Any) -> Dataset:
        """A map-style dataset of raw training samples; the path shards it over processes
        (one seeded permutation per epoch) and batches it with :meth:`collate`."""
        raise NotImplementedError

    def collate(self, samples: list[Any]) -> Any:
        """A batch from a list of samples (default: torch's ``default_collate``)."""
        return default_collate(samples)

    drop_last: ClassVar[bool] = True  # in-batch structures want equal batch sizes

    # -- model and training step ---------------------------------------------------------------
    def build_model(self, data: Any) -> nn.Module:
        """The trainable module; its ``state_dict()`` is the run's ``model.pt``."""
        raise NotImplementedError

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]] | nn.Module:
        """What the optimiser trains (default: the whole model; frozen parameters are skipped).
        Groups may carry their own ``lr``/``weight_decay``."""
        return model

    def training_loss(self, model: nn.Module, batch: Any, step: Step) -> Tensor:
        """The objective on one batch (a scalar the path back-propagates)."""
        raise NotImplementedError

    def backward_in_chunks(
        self, model: nn.Module, batch: Any, chunk_size: int, step: Step
    ) -> Tensor:
        """Back-propagate :meth:`training_loss` with one chunk's activation memory (GradCache);
        returns the detached loss. Only where :attr:`grad_cache_refusal` is ``None``."""
        raise ContrastkitError(f"train.grad_cache_chunk cannot apply: {self.grad_cache_refusal}.")

    def optimizers(self, model: nn.Module, build: Callable[..., Any]) -> list[Any]:
        """The optimisers, built with ``build(params, **overrides)`` from ``optim.*`` (default:
        one over :meth:`parameter_groups`); a task with several sets :attr:`manual_optimization`."""
        return [build(self.parameter_groups(model))]

    def manual_step(
        self,
        model: nn.Module,
        batch: Any,
        step: Step,
        optimizers: Sequence[Any],
        backward: Callable[[Tensor], None],
    ) -> Tensor:
        """One training step that steps ``optimizers`` itself (``backward`` is the path's,
        precision- and DDP-aware); returns the detached loss to log."""
        raise NotImplementedError

    def after_optimizer_step(self, model: nn.Module, step: Step) -> None:
        """Called after every optimiser step (default: each submodule's own
        ``after_optimizer_step()``, e.g. CLIP's logit-scale clamp)."""
        call_hooks(model, "after_optimizer_step")

    def logged(self, model: nn.Module) -> dict[str, Tensor]:
        """Per-step scalars for ``metrics.csv`` (default: every submodule's ``logged`` dict)."""
        return collect_logged(model)

    def may_skip_parameters(self, model: nn.Module) -> bool:
        """Whether some trainable parameters are left out of the graph on some steps (DDP must
        then look for unused parameters)."""
        return any(getattr(m, "may_skip_parameters", False) for m in model.modules())

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, data: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Held-out metrics (``results.json``) and arrays (``embeddings.npz``: at least
        ``test_features``)."""
        raise NotImplementedError

    def encode(self, model: nn.Module, x: Any) -> np.ndarray:
        """Frozen features of raw inputs ``x`` (what :meth:`contrastkit.FitResult.embed` returns)."""
        raise NotImplementedError

    def embed(self, model: nn.Module, source: str) -> dict[str, np.ndarray]:
        """``contrastkit embed``: frozen features of both splits of another data source."""
        raise ContrastkitError(
            f"`contrastkit embed` does not apply to {self.config.method} runs yet; the run's own "
            "test features are in embeddings.npz."
        )

    def report_sections(self, model: nn.Module | None, data: Any | None) -> list[Any]:
        """Task-specific sections of ``report.html`` (:class:`contrastkit.report.html.Section`)."""
        return []


def call_hooks(model: nn.Module, name: str) -> None:
    """Call the method ``name()`` on every submodule of ``model`` that defines it."""
    for module in model.modules():
        hook = getattr(module, name, None)
        if callable(hook) and module is not model:
            hook()


def collect_logged(model: nn.Module) -> dict[str, Tensor]:
    """The union of the ``logged`` scalar dicts the submodules of ``model`` filled this step."""
    out: dict[str, Tensor] = {}
    for module in model.modules():
        logged = getattr(module, "logged", None)
        if isinstance(logged, dict):
            out.update({k: v for k, v in logged.items() if isinstance(v, Tensor | float | int)})
    return out

