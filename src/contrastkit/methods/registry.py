"""Build a method from a :class:`~contrastkit.config.Config`: names → parts."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from contrastkit.config import Config, ObjectiveConfig
from contrastkit.errors import unknown_name
from contrastkit.methods.module import ContrastiveMethod, Positives
from contrastkit.nn import ProjectionHead, build_backbone
from contrastkit.objectives import AlignUniformLoss, DCLLoss, InfoNCELoss, NTXentLoss
from contrastkit.views import MultiView, build_augmentation

OBJECTIVES: dict[str, Callable[[ObjectiveConfig], nn.Module]] = {
    "ntxent": lambda c: NTXentLoss(c.temperature),
    "infonce": lambda c: InfoNCELoss(
        c.temperature, exclude_positives=c.exclude_positives, hard_negatives=c.hard_negatives
    ),
    "dcl": lambda c: DCLLoss(c.temperature),
    "dclw": lambda c: DCLLoss(
        c.temperature, weighted=True, sigma=c.sigma, detach_weight=c.detach_weight
    ),
    "align-uniform": lambda c: AlignUniformLoss(c.alpha, c.t, c.align_weight, c.uniform_weight),
}

#: method name → which ids make positives (the rest of a method is its recipe's parts)
METHODS: dict[str, Positives] = {
    name: "views" for name in ("simclr", "dcl", "dclw", "align-uniform")
}


def build_method(config: Config, *, channels: int, image_size: int) -> ContrastiveMethod:
    """Assemble views, backbone, head and objective named in ``config``."""
    positives = _lookup(METHODS, config.method, "method")
    objective = _lookup(OBJECTIVES, config.objective.name, "objective")(config.objective)
    backbone, feature_dim = build_backbone(
        config.model.backbone,
        in_channels=channels,
        image_size=image_size,
        **config.model.backbone_options,
    )
    head = ProjectionHead(
        feature_dim,
        hidden_dim=config.model.head_hidden_dim,
        out_dim=config.model.head_out_dim,
        num_layers=config.model.head_layers,
    )
    augment = build_augmentation(
        config.views.recipe, image_size=image_size, channels=channels, **config.views.options
    )
    # the values were checked when the data entered (contrastkit.data): no per-step host sync
    views = MultiView(augment, n_views=config.views.n_views, check_values=False)
    return ContrastiveMethod(backbone, head, objective, views, positives)


def _lookup(table: dict, name: str, kind: str):
    if name not in table:
        raise unknown_name(kind, name, table)
    return table[name]
