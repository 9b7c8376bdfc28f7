"""Every bundled recipe builds and takes a training step; the optional parts of the generic
method (momentum encoder, predictor, multi-crop) and the option checking of objectives."""

from __future__ import annotations

import pytest
import torch

from contrastkit.config import available_recipes, load_config
from contrastkit.errors import ContrastkitError
from contrastkit.methods.registry import METHODS, build_method, build_objective
from contrastkit.objectives import MoCoLoss
from contrastkit.tasks import TASKS, ImageTask
from contrastkit.train.loops import OWN_LOOPS

IMAGES = torch.rand(16, 1, 8, 8)


def small(recipe: str, **overrides):
    options = {"model.head_hidden_dim": 32, "model.head_out_dim": 16, **overrides}
    return load_config(recipe, options)


IMAGE_RECIPES = [r for r in available_recipes() if load_config(r).method in METHODS]


@pytest.mark.parametrize("recipe", IMAGE_RECIPES)
def test_every_image_recipe_builds_and_trains_one_step(recipe):
    config = small(recipe)
    options = dict(config.objective.options)
    if "queue_size" in options:  # keep queues (and MoCHi's N) small enough for a tiny batch
        options["queue_size"] = 64
        if "mochi" in options:
            options["mochi"] = [8, 4, 2]
            options["mochi_start_step"] = 0
    if "n_prototypes" in options:
        options["n_prototypes"] = 10
    config.objective.options = options
    torch.manual_seed(0)
    method = build_method(config, channels=1, image_size=8)
    loss = method.training_loss(IMAGES, torch.arange(16) % 3)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in method.backbone.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    embeddings, pairs = method.last_step
    assert not embeddings.requires_grad and pairs.n_views == method.views.n_views


def test_momentum_encoder_follows_the_online_encoder_without_gradient():
    config = small("moco", **{"objective.options": {"queue_size": 64}, "model.momentum": 0.5})
    torch.manual_seed(0)
    method = build_method(config, channels=1, image_size=8)
    key = method.momentum.encoder
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
    before = [p.clone() for p in key.parameters()]
    online = [
        p.detach().clone() for p in [*method.backbone.parameters(), *method.head.parameters()]
    ]
    method.training_loss(IMAGES).backward()
    for b, o, after in zip(before, online, key.parameters(), strict=True):
        torch.testing.assert_close(after, 0.5 * b + 0.5 * o)
        assert after.grad is None
    assert isinstance(method.objective, MoCoLoss)


def test_cosine_momentum_reaches_one_at_the_end():
    config = small(
        "moco",
        **{
            "objective.options": {"queue_size": 64},
            "model.momentum": 0.9,
            "model.momentum_schedule": "cosine",
        },
    )
    method = build_method(config, channels=1, image_size=8)
    before = [p.clone() for p in method.momentum.encoder.parameters()]
    method.training_loss(IMAGES, progress=1.0)  # m = 1: the key encoder does not move
    for b, after in zip(before, method.momentum.encoder.parameters(), strict=True):
        assert torch.equal(b, after)


def test_multi_crop_views_and_predictor():
    config = small(
        "simclr",
        **{
            "views.small_crops": 3,
            "views.small_size": 6,
            "model.predictor_layers": 2,
            "model.predictor_hidden_dim": 8,
        },
    )
    method = build_method(config, channels=1, image_size=8)
    groups = method.views(IMAGES)
    assert [tuple(g.shape) for g in groups] == [(32, 1, 8, 8), (48, 1, 6, 6)]
    assert method.views.n_views == 5 and method.views.n_global == 2
    method.training_loss(IMAGES).backward()
    embeddings, pairs = method.last_step
    assert embeddings.shape == (80, 16) and pairs.n_views == 5
    assert all(p.grad is not None for p in method.predictor.parameters())
    with pytest.raises(ContrastkitError, match="multi-crop"):
        method.backward_in_chunks(IMAGES, None, chunk_size=8)


@pytest.mark.parametrize("recipe", ["ts2vec", "clip", "whitenedcse"])
def test_other_tasks_methods_are_not_image_methods(recipe):
    with pytest.raises(ContrastkitError, match="not an image method"):
        build_method(load_config(recipe), channels=1, image_size=8)
    own = {"ts2vec", "autotcl", "comet", "clip", "clip-gap", "clip-code", "convirt", "cocosoda"}
    assert own <= set(available_recipes()) - set(IMAGE_RECIPES)


def test_objective_options_are_checked_against_the_constructor():
    with pytest.raises(ContrastkitError, match=r"Unknown option 'sigm'.*did you mean 'sigma'"):
        build_objective(small("dclw", **{"objective.options": {"sigm": 0.3}}))
    with pytest.raises(ContrastkitError, match="queue_size"):
        build_objective(small("moco", **{"objective.options": {"queue": 8}}))
    moco = build_objective(small("moco", **{"objective.options": {"queue_size": 32}}))
    assert moco.queue().shape == (32, 16)  # the head's output dimension, injected as dim
    assert build_objective(small("dclw", **{"objective.temperature": 0.3})).temperature == 0.3


def test_one_registry_names_every_recipe_method_once():
    """``TASKS`` is built from each task's ``methods``: every recipe's method has one task, and
    the image task trains exactly the image methods."""
    assert {m for m, task in TASKS.items() if task is ImageTask} == set(METHODS)
    for recipe in available_recipes():
        method = load_config(recipe).method
        assert (method in TASKS) != (method in OWN_LOOPS), recipe  # OWN_LOOPS: transitional
