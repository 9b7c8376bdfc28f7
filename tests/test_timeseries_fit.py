"""TS2Vec, AutoTCL and COMET on the one training path: `contrastkit fit` with each recipe writes
a complete run directory; eval, embed and FitResult.embed work; 2 gloo processes train the run
one process trains; Ctrl-C + --resume equals the uninterrupted run; optim and precision apply."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import fit_runs as runs
import numpy as np
import pytest
import torch

import contrastkit as ck
from contrastkit.timeseries import TS2Vec, load_timeseries
from contrastkit.train.cli import main
from contrastkit.train.rundir import RunDir

pytest.importorskip("aeon")
RECIPES = ("ts2vec", "autotcl", "comet")
SMALL = ["timeseries.output_dims=16", "timeseries.hidden_dims=8", "timeseries.depth=2"]
FAST = ["--threads", "1", "--no-progress", "train.max_steps=3", *SMALL]
#: the objective's scalars each recipe logs (train/<name> in metrics.csv)
LOGGED = {
    "ts2vec": {"instance", "temporal"},
    "autotcl": {"augmentation", "global", "local"},
    "comet": {"sample", "observation"},
}


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains_evaluates_and_embeds(recipe, tmp_path, capsys):
    out = tmp_path / recipe
    code, stdout, err = cli(capsys, "fit", "--config", recipe, "--out", out, *FAST)
    assert code == 0, err
    assert "svm_accuracy" in stdout
    run = RunDir(out)
    assert run.status()["state"] == "complete" and run.status()["steps"] == 3
    results = runs.results(out)
    assert 0.4 < results["svm_accuracy"] <= 1 and results["feature_dim"] == 16
    assert (out / "report.html").is_file()
    columns = runs.metric_columns(out)
    assert {"train_loss_step", "train_loss_epoch", "lr"} <= columns
    assert {f"train/{name}_step" for name in LOGGED[recipe]} <= columns
    with np.load(run.embeddings_path, allow_pickle=False) as arrays:
        assert arrays["train_features"].shape == (50, 16)
        assert arrays["test_features"].shape == (150, 16)
        assert arrays["test_labels"].shape == (150,)
        saved = {k: arrays[k] for k in arrays.files}
    weights = runs.weights(out)
    assert int(weights["net.n_averaged"]) == 4  # the initial weights and one per step
    code, stdout, err = cli(capsys, "eval", out, "--json")
    assert code == 0, err
    assert json.loads(stdout)["svm_accuracy"] == pytest.approx(results["svm_accuracy"])
    target = tmp_path / "e.npz"
    code, _, err = cli(capsys, "embed", out, "--data", "ucr:GunPoint", "--out", target)
    assert code == 0, err
    with np.load(target, allow_pickle=False) as again:
        for key in ("train_features", "test_features", "test_labels"):
            np.testing.assert_allclose(again[key], saved[key], rtol=1e-5, atol=1e-6)


def test_embed_refuses_series_with_other_variables(tmp_path, capsys):
    out = tmp_path / "ts2vec"
    code, _, err = cli(
        capsys, "fit", "--config", "ts2vec", "--out", out, *FAST, "eval.report=false"
    )
    assert code == 0, err
    target = tmp_path / "m.npz"
    code, _, err = cli(capsys, "embed", out, "--data", "ucr:BasicMotions", "--out", target)
    assert code == 2 and "6 channel(s)" in err and not target.exists()


def test_python_api_on_in_memory_series(tmp_path):
    data = load_timeseries("ucr:GunPoint")
    overrides = {"train.max_steps": 2, "train.num_threads": 1, "train.progress_bar": False}
    overrides |= {"eval.report": False, "timeseries.depth": 1, "timeseries.output_dims": 8}
    result = ck.fit(ck.load_config("ts2vec", overrides), data=data, out=tmp_path / "api")
    assert isinstance(result.model, TS2Vec) and "svm_accuracy" in result.metrics
    features = result.embed(data.x_test[:5])
    np.testing.assert_allclose(features, result.model.encode(data.x_test[:5]))
    assert features.shape == (5, 8)
    assert result.model.encode(data.x_test[:2], pooling="timestamp").shape == (2, 150, 8)
    assert RunDir(result.run_dir).load_config().data.source == "ucr:GunPoint"  # its own name


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["timeseries.hiden_dims=8"], "hidden_dims"),
        (["--data", "ucr:GunPont"], "GunPoint"),
        (["timeseries.augment=[time_warp]"], "moves time steps"),
        (["timeseries.lr=0.1"], "Unknown config key 'timeseries.lr'"),
        (["timeseries.dropout=1.5"], "timeseries.dropout must be a number in [0, 1)"),
        (["timeseries.autotcl={meta_lr: 0.1}"], "applies to autotcl runs only"),
        (["--config", "autotcl", "timeseries.autotcl={meta_lrr: 1}"], "meta_lr"),
        (["--config", "autotcl", "timeseries.autotcl.aug_objective=adversarial2"], "adversarial"),
        (["--config", "comet", "timeseries.comet.factors=[1, 1]"], "one entry per level"),
        (["timeseries.temporal_unit=9"], "too short"),
        (["train.grad_cache_chunk=4"], "does not apply to ts2vec"),
        (["--batch-size", "64"], "larger than the 50 training samples"),
    ],
)
def test_bad_options_fail_before_anything_is_written(args, phrase, tmp_path, capsys):
    out = tmp_path / "bad"
    code, _, err = cli(capsys, "fit", "--config", "ts2vec", "--out", out, *FAST, *args)
    assert code == 2 and phrase in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def gunpoint_with_groups(path: Path) -> str:
    """GunPoint's splits as an .npz with 26 trials of 1–3 series, patients of 2 trials."""
    data = load_timeseries("ucr:GunPoint")
    trials = np.repeat(np.arange(27), np.tile([1, 3, 2], 9))[: len(data.x_train)]
    np.savez(
        path,
        x=data.x_train,
        y=data.y_train,
        x_test=data.x_test,
        y_test=data.y_test,
        trial_ids=trials,
        patient_ids=trials // 2,
    )
    return f"npz:{path}"


def test_comet_batches_hold_whole_trials_and_use_both_id_levels(tmp_path, capsys, monkeypatch):
    source = gunpoint_with_groups(tmp_path / "gp.npz")
    data = load_timeseries(source)
    seen: list[dict] = []
    real = TS2Vec.comet_loss

    def spy(self, x, ids, generator):
        seen.append({k: v.clone() for k, v in ids.items()})
        return real(self, x, ids, generator)

    monkeypatch.setattr(TS2Vec, "comet_loss", spy)
    out = tmp_path / "comet"
    code, _, err = cli(capsys, "fit", "--config", "comet", "--data", source, "--out", out, *FAST)
    assert code == 0, err
    sizes = np.bincount(data.trial_ids)
    for ids in seen:
        assert set(ids) == {"trial", "patient"}
        trials, counts = np.unique(ids["trial"].numpy(), return_counts=True)
        np.testing.assert_array_equal(counts, sizes[trials])  # every trial whole
        assert len(trials) == 8  # train.batch_size trials
    assert {"train/trial_step", "train/patient_step"} <= runs.metric_columns(out)


@pytest.mark.parametrize(
    ("recipe", "extra"),
    [("autotcl", []), ("comet", ["trials"])],
    ids=["autotcl-two-optimisers", "comet-uneven-trials"],
)
def test_two_process_ddp_fit(recipe, extra, tmp_path):
    """2 gloo ranks: one run directory written by rank 0 alone, ``train.max_steps`` counted in
    training steps (AutoTCL steps two optimisers per step; COMET's ranks hold different numbers
    of series when whole trials of 1–3 series are dealt out)."""
    data = ["--data", gunpoint_with_groups(tmp_path / "gp.npz")] if extra else []
    run = runs.fit_ddp(
        tmp_path / "ddp", recipe, *FAST[2:], *data, "train.batch_size=4", "eval.report=false"
    )
    assert run.status()["steps"] == 3
    assert 0.4 < runs.results(run.root)["svm_accuracy"] <= 1
    assert int(runs.weights(run.root)["net.n_averaged"]) == 4


@pytest.mark.parametrize("recipe", RECIPES)
def test_two_processes_take_the_step_of_one_process_on_the_global_batch(recipe, tmp_path):
    """One step of 2 gloo ranks × 4 series equals 1 process × 8 series: the sampler deals the
    same global batch out (rank r gets its series r, r + 2, …); the step's crops, masks, views
    and AutoTCL's mask samples are drawn from a generator seeded by (seed, step) for the whole
    global batch, each rank keeping its rows, so both runs draw the same; the terms that
    contrast series (instance, global InfoNCE, MMD, sample level) see every rank's series
    (gathered with gradient). Dropout is off: torch's random state is per process, so its masks
    would differ from the single process's. SGD, not Adam: Adam's first step is ≈ lr·sign(g),
    which turns float noise in near-zero gradients into full-size differences."""
    step = [*FAST[2:], "train.max_steps=1", "timeseries.dropout=0", "optim.name=sgd"]
    step += ["optim.lr=0.05", "eval.report=false"]
    one = runs.fit_process(tmp_path / "one", recipe, *step, "train.batch_size=8")
    two = runs.fit_ddp(tmp_path / "two", recipe, *step, "train.batch_size=4")
    runs.assert_same_weights(one.root, two.root, atol=1e-6, rtol=1e-5)
    assert two.status()["steps"] == 1


def test_ctrl_c_then_resume_equals_the_uninterrupted_run(tmp_path):
    """AutoTCL (two optimisers, the weight average, the step-seeded draws): SIGINT after the
    first checkpoint, then --resume, logs every epoch once and ends at the weights of the same
    run trained in one go."""
    budget = [*SMALL, "train.max_steps=null", "train.epochs=24", "eval.report=false"]
    resumed = runs.interrupt_and_resume(tmp_path / "resumed", "autotcl", *budget)
    whole = runs.fit_process(tmp_path / "whole", "autotcl", *budget)
    assert runs.epochs_logged(resumed.root) == list(range(24))
    runs.assert_same_weights(resumed.root, whole.root)
    assert resumed.status()["steps"] == 24 * 6  # 50 series, batches of 8, the last dropped


def test_optim_lr_and_bf16_change_what_runs(tmp_path):
    step = [*FAST[2:], "train.max_steps=2", "eval.report=false"]
    base = runs.fit_process(tmp_path / "base", "ts2vec", *step)
    for name, option in (("lr", "optim.lr=0.01"), ("bf16", "train.precision=bf16-mixed")):
        changed = runs.fit_process(tmp_path / name, "ts2vec", *step, option)
        runs.assert_weights_changed(changed.root, base.root)
    with open(tmp_path / "lr" / "metrics.csv") as f:
        lrs = [float(r["lr"]) for r in csv.DictReader(f) if r.get("lr")]
    assert lrs == pytest.approx([0.01] * len(lrs)) and lrs  # the recipe's constant schedule


def test_averaged_weights_are_the_mean_of_every_step(tmp_path):
    """``net`` (what encode uses) is the equal-weight mean of the initial and every trained
    encoder, updated after each step: with a run one step shorter (the same first steps),
    mean_3 = (3·mean_2 + w_3) / 4, the initial weights counting once."""
    step = [*FAST[2:], "eval.report=false"]
    two = runs.fit_process(tmp_path / "two", "ts2vec", *step, "train.max_steps=2")
    three = runs.fit_process(tmp_path / "three", "ts2vec", *step, "train.max_steps=3")
    a, b = runs.weights(two.root), runs.weights(three.root)
    for key in (k for k in b if k.startswith("encoder.")):
        average = "net.module." + key.removeprefix("encoder.")
        torch.testing.assert_close(b[average], (3 * a[average] + b[key]) / 4)
