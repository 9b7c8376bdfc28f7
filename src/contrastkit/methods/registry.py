"""Build a method from a :class:`~contrastkit.config.Config`: names → parts.

An objective is named by ``objective.name``; ``objective.temperature`` and the keyword
``objective.options`` go to its constructor, checked against its signature (a typo gets the
nearest valid option). Objectives that need the embedding dimension receive ``dim``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from contrastkit.config import Config
from contrastkit.errors import ContrastkitError, did_you_mean, unknown_name
from contrastkit.methods.module import ContrastiveMethod, Positives
from contrastkit.nn import ProjectionHead, build_backbone
from contrastkit.nn.multihead import MultiHeadProjection
from contrastkit.objectives import (
    AlignUniformLoss,
    AMCLLoss,
    CACRLoss,
    DCLLoss,
    GroCoLoss,
    HallucinatedNTXent,
    InfoNCELoss,
    MoCoLoss,
    NTXentLoss,
    SwAVLoss,
)
from contrastkit.objectives.supervised import (
    CrossEntropyLoss,
    HydraLoss,
    SupConInstanceLoss,
    SupConLoss,
)
from contrastkit.views import MultiCrop, MultiView, build_augmentation

#: objective name → constructor (keyword options from the recipe)
OBJECTIVES: dict[str, Callable[..., nn.Module]] = {
    "ntxent": NTXentLoss,
    "infonce": InfoNCELoss,
    "dcl": DCLLoss,
    "dclw": partial(DCLLoss, weighted=True),
    "align-uniform": AlignUniformLoss,
    "hallucinator-simclr": HallucinatedNTXent,
    "moco": MoCoLoss,
    "cacr": CACRLoss,
    "amcl": AMCLLoss,
    "groco": GroCoLoss,
    "swav": SwAVLoss,
    "supcon": SupConLoss,
    "supcon-simclr": SupConInstanceLoss,
    "ce": CrossEntropyLoss,
    "hydra": HydraLoss,
}

#: method name → which ids make positives (the rest of a method is its recipe's parts)
METHODS: dict[str, Positives] = {
    name: "views"
    for name in (
        "simclr",
        "dcl",
        "dclw",
        "align-uniform",
        "moco",
        "mochi",
        "moco-ft",
        "hallucinator-moco",
        "hallucinator-simclr",
        "cacr",
        "cacr-momentum",
        "amcl",
        "groco",
        "swav",
    )
}
METHODS |= {"supcon": "labels", "ce": "labels", "supcon-simclr": "views", "hydra": "views"}

#: objectives whose positives are the pair structure's, so ``objective.positives: labels``
#: (``contrastkit fit --labels``) turns them supervised (NT-Xent → SupCon's L_out)
PAIR_POSITIVE_OBJECTIVES = frozenset({"ntxent", "infonce", "dcl"})
#: objectives that read ``context.labels`` themselves (they need labelled data)
LABEL_OBJECTIVES = frozenset({"supcon", "supcon-simclr", "ce", "hydra"})

#: constructor arguments filled from the model section rather than from objective.options
_FROM_MODEL = {"dim": "head_out_dim", "embedding_dim": "head_out_dim", "heads": "heads"}


def build_objective(config: Config) -> nn.Module:
    """The objective named in ``config.objective`` with its options."""
    spec = config.objective
    factory = _lookup(OBJECTIVES, spec.name, "objective")
    accepted = _keywords(factory)
    given: dict[str, Any] = dict(spec.options)
    settable = accepted - {"temperature", *_FROM_MODEL}
    for name in given:
        if name not in settable:
            hint = (
                f" (set model.{_FROM_MODEL[name]} instead)"
                if name in _FROM_MODEL
                else did_you_mean(name, settable)
            )
            raise ContrastkitError(
                f"Unknown option {name!r} for objective {spec.name!r}{hint}; "
                f"valid options: {', '.join(sorted(settable)) or 'none'}."
            )
    if "temperature" in accepted:
        given["temperature"] = spec.temperature
    for name, source in _FROM_MODEL.items():
        if name in accepted:
            given[name] = getattr(config.model, source)
    try:
        return factory(**given)
    except TypeError as error:  # a wrong value type the constructor could not take
        raise ContrastkitError(
            f"Objective {spec.name!r} rejected its options {spec.options}: {error}."
        ) from None


def needs_labels(config: Config) -> bool:
    """Whether training ``config`` needs labelled data (label positives or a label objective)."""
    if config.method not in METHODS:  # another task's method: it reads its own targets
        return False
    return positives_of(config) == "labels" or config.objective.name in LABEL_OBJECTIVES


def positives_of(config: Config) -> Positives:
    """``objective.positives`` if set, else the method's own (:data:`METHODS`)."""
    if config.method not in METHODS:
        raise ContrastkitError(
            f"{config.method!r} is not an image method of build_method; train it with "
            "contrastkit.fit (the `contrastkit fit` command)."
        )
    positives = config.objective.positives or METHODS[config.method]
    if positives not in ("views", "labels"):
        raise ContrastkitError(
            f"objective.positives must be 'views' or 'labels', got {positives!r}."
        )
    return positives


def with_labels(config: Config, num_classes: int | None, *, positives: bool = True) -> Config:
    """``config`` trained with class labels (``contrastkit fit --labels``): objectives whose
    positives come from the pair structure contrast same-class samples; objectives that read
    labels get ``num_classes`` from the data; any other objective is rejected. With
    ``positives=False`` only ``num_classes`` is filled in."""
    name = config.objective.name
    if positives and name not in PAIR_POSITIVE_OBJECTIVES | LABEL_OBJECTIVES:
        usable = sorted(PAIR_POSITIVE_OBJECTIVES | LABEL_OBJECTIVES)
        raise ContrastkitError(
            f"Objective {name!r} does not take its positives from labels, so --labels cannot "
            f"apply to it; use a recipe whose objective is one of {', '.join(usable)}."
        )
    objective = config.objective
    if positives and name in PAIR_POSITIVE_OBJECTIVES:
        objective = dataclasses.replace(objective, positives="labels")
    if num_classes is not None and "num_classes" in _keywords(
        _lookup(OBJECTIVES, name, "objective")
    ):
        objective = dataclasses.replace(
            objective, options={**objective.options, "num_classes": int(num_classes)}
        )
    return dataclasses.replace(config, objective=objective)


def build_method(config: Config, *, channels: int, image_size: int) -> ContrastiveMethod:
    """Assemble views, backbone, head, optional predictor / momentum encoder and objective."""
    positives = positives_of(config)
    objective = build_objective(config)
    model = config.model
    backbone, feature_dim = build_backbone(
        model.backbone, in_channels=channels, image_size=image_size, **model.backbone_options
    )
    head_options = dict(
        hidden_dim=model.head_hidden_dim, out_dim=model.head_out_dim, num_layers=model.head_layers
    )
    head = (
        ProjectionHead(feature_dim, **head_options)
        if model.heads == 1
        else MultiHeadProjection(feature_dim, heads=model.heads, **head_options)
    )
    predictor = (
        ProjectionHead(
            model.head_out_dim,
            hidden_dim=model.predictor_hidden_dim,
            out_dim=model.head_out_dim,
            num_layers=model.predictor_layers,
        )
        if model.predictor_layers > 0
        else None
    )
    momentum = (
        None
        if model.momentum is None
        else (model.momentum, model.momentum_schedule, model.key_bn_groups)
    )
    return ContrastiveMethod(
        backbone,
        head,
        objective,
        build_views(config, channels=channels, image_size=image_size),
        positives,
        predictor=predictor,
        momentum=momentum,
    )


def build_views(config: Config, *, channels: int, image_size: int) -> MultiView | MultiCrop:
    """``views.n_views`` global views, plus ``views.small_crops`` low-resolution ones."""
    spec = config.views
    augment = build_augmentation(
        spec.recipe, image_size=image_size, channels=channels, **spec.options
    )
    # the values were checked when the data entered (contrastkit.data): no per-step host sync
    views = MultiView(augment, n_views=spec.n_views, check_values=False)
    if spec.small_crops == 0:
        return views
    small_size = spec.small_size or max(round(image_size * 96 / 224), min(image_size, 8))
    small = build_augmentation(
        spec.recipe,
        image_size=small_size,
        channels=channels,
        **{**spec.options, **spec.small_options},
    )
    return MultiCrop(views, MultiView(small, n_views=spec.small_crops, check_values=False))


def _keywords(factory: Callable[..., nn.Module]) -> set[str]:
    parameters = inspect.signature(factory).parameters
    return {name for name, p in parameters.items() if p.kind is not p.VAR_KEYWORD}


def _lookup(table: dict, name: str, kind: str):
    if name not in table:
        raise unknown_name(kind, name, table)
    return table[name]
