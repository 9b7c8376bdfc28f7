"""`contrastkit fit` with the MIL recipes (scmil, abmil, ins): run directories on bags of real
digits, config validation before anything is written, and each method's wiring."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from contrastkit import ContrastkitError, load_data
from contrastkit.config import config_from_dict, load_config
from contrastkit.mil import MILModel, SCMILLoss, fit_mil, mil_metrics, predict_mil
from contrastkit.mil.run import MILOptions, check_config, fit_config, make_mil_bags
from contrastkit.nn.backbones import build_backbone
from contrastkit.train.cli import main
from contrastkit.train.rundir import RunDir
from contrastkit.views.image import build_augmentation

# 40 train bags of 8 digits, 30 test bags: a few hundred 8×8 images, a second per method
SMALL = dict(target=0, train_bags=40, test_bags=30, bag_size=8, epochs=2)
CLI_SMALL = ["--data", "digits", "--threads", "1", "mil.augment_options={flip: false}"]
CLI_SMALL += [f"mil.{k}={v}" for k, v in SMALL.items()]
MIL_KEYS = {"bag_auc", "instance_accuracy", "instance_balanced_accuracy", "instance_auc"}


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def config(method: str, **options) -> object:
    return config_from_dict(
        {
            "method": method,
            "data": {"source": "digits"},
            "train": {"num_threads": 1},
            "mil": {**SMALL, **options},
        }
    )


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", seed=0)


def test_scmil_recipe_trains_and_evaluates_on_digit_bags(tmp_path, capsys):
    out = tmp_path / "scmil"
    code, stdout, _ = cli(capsys, "fit", "--config", "scmil", "--out", out, *CLI_SMALL)
    assert code == 0 and "bag_auc" in stdout
    run = RunDir(out)
    assert run.status()["state"] == "complete" and run.status()["steps"] == 2 * 3
    assert run.load_config().mil["target"] == 0
    results = json.loads(run.results_path.read_text())
    assert MIL_KEYS | {"final_loss", "steps", "train_seconds"} <= set(results)
    assert all(0 <= results[k] <= 1 for k in MIL_KEYS)
    assert results["train_bags"] == 40 and results["test_bags"] == 30
    assert results["test_instances"] == 240 and np.isfinite(results["final_loss"])
    with np.load(run.embeddings_path, allow_pickle=False) as npz:
        arrays = dict(npz)
    assert arrays["train_features"].shape == (40, 64) and arrays["test_features"].shape == (30, 64)
    assert arrays["test_bag_scores"].shape == (30,) and arrays["test_instance_scores"].shape == (
        240,
    )
    # the saved arrays are coherent: a bag is positive iff one of its instances is, and the
    # reported AUCs are those of the saved scores
    index, instance_labels = arrays["test_bag_index"], arrays["test_instance_labels"]
    bag_of = np.zeros(30, int)
    np.maximum.at(bag_of, index, instance_labels)
    assert np.array_equal(bag_of, arrays["test_labels"])
    assert results["bag_auc"] == pytest.approx(
        roc_auc_score(arrays["test_labels"], arrays["test_bag_scores"])
    )
    assert results["instance_auc"] == pytest.approx(
        roc_auc_score(instance_labels, arrays["test_instance_scores"])
    )
    assert torch.load(run.model_path, weights_only=True)["classifier.weight"].shape == (2, 64)
    code, _, err = cli(capsys, "eval", out)
    assert code == 2 and "scmil run" in err
    code, _, err = cli(capsys, "fit", "--resume", out)
    assert code == 2


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["mil.epoch=1"], "did you mean 'epochs'"),
        (["mil.epochs=-1"], "mil.epochs must be an integer ≥ 1"),
        (["mil.positive_fraction=1.5"], "mil.positive_fraction must be a number in (0, 1]"),
        (["mil.positive_bag_rate=1"], "mil.positive_bag_rate"),
        (["mil.bag_size=[8, 4]"], "mil.bag_size"),
        (["mil.schedule=parabolc"], "did you mean 'parabolic'"),
        (["mil.queue=64"], "does not apply to method 'scmil'"),
        (["mil.target=12"], "not a class index of digits"),
        (["mil.target=Pullover"], "Unknown class of digits"),
        (["mil.train_bags=400"], "Cannot draw the bags"),
        (["mil.encoder=small-cn"], "small-cnn"),
        (["mil.augment=small-grey"], "did you mean 'small-gray'"),
        (["--epochs", "3"], "set mil.epochs=N"),
        (["--data", "digit"], "digits"),
    ],
)
def test_bad_mil_configs_fail_before_anything_is_written(args, phrase, tmp_path, capsys):
    out = tmp_path / "bad"
    code, _, err = cli(capsys, "fit", "--config", "scmil", "--out", out, *CLI_SMALL, *args)
    assert code == 2 and phrase in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_options_are_checked_per_method():
    assert MILOptions.from_dict({}, "scmil").temperature == 0.1
    assert MILOptions.from_dict({}, "ins").temperature == 0.07
    assert MILOptions.from_dict({"temperature": 0.2}, "ins").temperature == 0.2
    with pytest.raises(ContrastkitError, match="does not apply to method 'abmil'"):
        MILOptions.from_dict({"schedule": "linear"}, "abmil")
    with pytest.raises(ContrastkitError, match="of scmil"):
        MILOptions.from_dict({"views": 2}, "ins")
    with pytest.raises(ContrastkitError, match="did you mean 'batch_instances'"):
        MILOptions.from_dict({"batch_instance": 2}, "ins")
    with pytest.raises(ContrastkitError, match=r"mil.schedule must be a number in \[0, 1\]"):
        MILOptions.from_dict({"schedule": 1.5}, "scmil")
    with pytest.raises(ContrastkitError, match=r"mil\.lr"):
        MILOptions.from_dict({"lr": 0}, "abmil")
    with pytest.raises(ContrastkitError, match="Unknown MIL method"):
        MILOptions.from_dict({}, "simclr")
    assert MILOptions.from_dict({"schedule": 0.3, "bag_size": [4, 9]}, "scmil").schedule == 0.3
    with pytest.raises(ContrastkitError, match=r"mil\.epochs"):
        check_config(config("scmil", epochs=0))


def test_target_by_name_or_index_picks_that_class(digits):
    for target, digit in (("3", 3), (7, 7), (["1", 2], None)):
        options = MILOptions.from_dict({**SMALL, "target": target}, "scmil")
        train, test = make_mil_bags(options, digits)
        for bags, labels in ((train, digits.y_train), (test, digits.y_test)):
            classes = labels[bags.instance_index]
            positive = classes[bags.instance_labels == 1]
            assert len(positive) > 0
            wanted = {digit} if digit is not None else {1, 2}
            assert set(positive.tolist()) <= wanted
            assert not set(classes[bags.instance_labels == 0].tolist()) & wanted
    with pytest.raises(ContrastkitError, match="labelled"):
        make_mil_bags(MILOptions(), dataclasses.replace(digits, y_train=None, y_test=None))


@pytest.mark.parametrize("method", ["scmil", "abmil", "ins"])
def test_each_method_fits_deterministically(method, digits, monkeypatch):
    steps = []
    step = torch.optim.AdamW.step
    monkeypatch.setattr(
        torch.optim.AdamW, "step", lambda self, *a, **k: (steps.append(1), step(self, *a, **k))[1]
    )
    first = fit_config(config(method), digits)
    assert MIL_KEYS | {"final_loss", "feature_dim", "steps"} <= set(first.metrics)
    assert first.steps == len(steps)  # the reported steps are the optimiser's
    assert first.arrays["test_features"].shape[0] == 30
    again = fit_config(config(method), digits)
    other = fit_config(dataclasses.replace(config(method), seed=1), digits)

    def numbers(result):
        return {k: v for k, v in result.metrics.items() if k != "train_seconds"}

    assert numbers(first) == numbers(again)
    for key, value in first.arrays.items():
        assert np.array_equal(value, again.arrays[key]), key
    assert first.metrics["final_loss"] != other.metrics["final_loss"]  # the seed is used
    if method == "ins":
        assert {"bag_auc_mean", "bag_auc_max", "pseudo_positive"} <= set(first.metrics)
        assert first.metrics["bag_auc"] == first.metrics["bag_auc_mean"]
        by_max = fit_config(config(method, bag_score="max"), digits)
        assert by_max.metrics["bag_auc"] == by_max.metrics["bag_auc_max"]


def test_scmil_and_abmil_follow_the_benchmark_workflow(digits):
    """fit_config = benchmarks/mil.py's steps: seed, encoder, MILModel, fit_mil with SCMILLoss
    (parabolic α, 2 views; abmil: CE, 1 view) on augmented views, predict_mil, mil_metrics."""
    for method, loss, views in (
        ("scmil", SCMILLoss(0.1, schedule="parabolic"), 2),
        ("abmil", SCMILLoss(schedule="ce"), 1),
    ):
        options = MILOptions.from_dict(SMALL, method)
        train, test = make_mil_bags(options, digits)
        torch.manual_seed(0)
        encoder, dim = build_backbone("small-cnn", in_channels=1, image_size=8, width=16)
        augment = build_augmentation("small-gray", image_size=8, channels=1)
        model = fit_mil(
            MILModel(encoder, dim),
            train,
            loss=loss,
            n_views=views,
            augment=augment,
            epochs=2,
            batch_bags=16,
            lr=2e-3,
            seed=0,
        )
        bag_scores, instance_scores = predict_mil(model, test)
        expected = mil_metrics(bag_scores, test.bag_labels, instance_scores, test.instance_labels)
        got = fit_config(config(method), digits)
        assert {k: got.metrics[k] for k in expected} == expected
        assert np.array_equal(got.arrays["test_bag_scores"], bag_scores.numpy())


def test_recipes_load_with_their_own_sections():
    for name in ("scmil", "abmil", "ins"):
        recipe = load_config(name)
        assert recipe.method == name and recipe.data.source == "fashion-mnist"
        options = MILOptions.from_dict(dict(recipe.mil), name)
        assert options.encoder_options == {"width": 16}  # the default for small-cnn
        # the recipes spell out the defaults (benchmarks/mil.py's)
        assert dataclasses.replace(options, encoder_options=None) == MILOptions.from_dict({}, name)
