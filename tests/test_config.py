"""Recipes and overrides: typed, strict, with clear errors."""

from __future__ import annotations

import pytest

from contrastkit.config import available_recipes, config_from_dict, load_config
from contrastkit.errors import ContrastkitError


def test_bundled_recipe_and_overrides():
    config = load_config(
        "simclr", ["train.epochs=3", "optim.lr=0.5", "data.source=npz:x.npz", "train.num_threads=1"]
    )
    assert config.train.epochs == 3 and config.optim.lr == 0.5 and config.data.source == "npz:x.npz"
    assert config.train.num_threads == 1
    assert load_config("simclr", {"optim.lr": 1}).optim.lr == 1.0  # ints widen to float
    assert "simclr" in available_recipes()


def test_yaml_path_round_trip(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("method: simclr\ntrain:\n  epochs: 4\n")
    config = load_config(path)
    assert config.train.epochs == 4 and config.model.backbone == "small-cnn"
    assert config_from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "call, phrase",
    [
        (lambda: load_config("simclr", ["train.epoch=3"]), "did you mean 'epochs'"),
        (lambda: load_config("simclr", ["train.epochs=three"]), "must be int"),
        (lambda: load_config("simclr", ["optim.lr=true"]), "must be float"),
        (lambda: load_config("simclr", ["epochs"]), "section.key=value"),
        (lambda: load_config("simclrr"), "did you mean 'simclr'"),
        (lambda: load_config("missing.yaml"), "does not exist"),
        (lambda: config_from_dict({"train": 3}), "must be a mapping"),
    ],
)
def test_bad_config_gets_a_clear_error(call, phrase):
    with pytest.raises(ContrastkitError, match=phrase):
        call()


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ContrastkitError, match="Cannot read config"):
        load_config(path)
    path.write_text("- a list\n")
    with pytest.raises(ContrastkitError, match="mapping"):
        load_config(path)
