"""Methods that train in their own loop rather than the generic Lightning module: two towers
(CLIP, ConVIRT, CoCoSoDa, SimCSE, WhitenedCSE), bags of instances (SC-MIL, attention MIL, INS)
and continuous targets (plain, ConR, SupReMix).

Each such package has a module with ``check_config(config, data) -> data`` (everything that can
reject a config, run before the run directory is written; it returns the data to train on, which
it may have loaded) and ``fit_config(config, data) -> LoopResult``;
:func:`contrastkit.fit` writes what it returns into the run directory. A module may also define
``embed_config(config, state, source) -> arrays``, which applies a finished run's weights to a
data source for ``contrastkit embed``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

#: method name → the module that trains it (names only: this module imports none of them)
OWN_LOOPS: dict[str, str] = {
    **dict.fromkeys(
        ("clip", "convirt", "cocosoda", "simcse", "whitenedcse"), "contrastkit.multimodal.run"
    ),
    **dict.fromkeys(("scmil", "abmil", "ins"), "contrastkit.mil.run"),
    **dict.fromkeys(("regression", "conr", "supremix"), "contrastkit.regression.run"),
}


@dataclass(frozen=True, eq=False)
class LoopResult:
    """What ``fit_config`` returns: test metrics, the trained model (``state_dict()`` is saved),
    arrays for ``embeddings.npz`` and the number of training steps."""

    metrics: dict[str, Any]
    model: Any
    arrays: dict[str, np.ndarray]
    steps: int


def own_loop(method: str) -> ModuleType | None:
    """The module training ``method`` in its own loop, or ``None`` for the generic module."""
    name = OWN_LOOPS.get(method)
    return None if name is None else importlib.import_module(name)


def refuse_trainer_options(config: Any, epochs: str, batch_size: str) -> None:
    """Own-loop runs do not read ``train.epochs``/``train.batch_size`` (what ``--epochs`` and
    ``--batch-size`` set): refuse a changed value, naming the option to set instead, rather than
    ignore it; and check ``train.num_threads``."""
    from contrastkit.config import TrainConfig
    from contrastkit.errors import ContrastkitError

    defaults = TrainConfig()
    for name, instead in (("epochs", epochs), ("batch_size", batch_size)):
        if getattr(config.train, name) != getattr(defaults, name):
            raise ContrastkitError(
                f"{config.method} runs take {instead}, not train.{name} (or --"
                f"{name.replace('_', '-')}); set {instead}=N instead."
            )
    threads = config.train.num_threads
    if threads is not None and (isinstance(threads, bool) or threads < 1):
        raise ContrastkitError(f"train.num_threads must be at least 1, got {threads!r}.")
