"""`contrastkit fit` with a time-series recipe: a complete run directory on a real UCR set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from contrastkit.train.cli import main
from contrastkit.train.rundir import RunDir

pytest.importorskip("aeon")
FAST = ["--threads", "1", "timeseries.n_iters=3"]


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_ts2vec_recipe_trains_and_evaluates_on_gunpoint(tmp_path, capsys):
    out = tmp_path / "ts2vec"
    code, stdout, _ = cli(
        capsys, "fit", "--config", "ts2vec", "--data", "ucr:GunPoint", "--out", out, *FAST
    )
    assert code == 0 and "svm_accuracy" in stdout
    run = RunDir(out)
    assert run.status()["state"] == "complete"
    results = json.loads(run.results_path.read_text())
    assert 0.4 < results["svm_accuracy"] <= 1 and results["n_iters"] == 3
    with np.load(run.embeddings_path, allow_pickle=False) as arrays:
        assert arrays["train_features"].shape == (50, 320)
        assert arrays["test_features"].shape == (150, 320)
        assert arrays["test_labels"].shape == (150,)
    code, _, err = cli(capsys, "eval", out)
    assert code == 2 and "ts2vec run" in err
    code, _, err = cli(capsys, "fit", "--resume", out)
    assert code == 2
    # embed applies the averaged encoder to any source with the training data's channels
    code, _, err = cli(capsys, "embed", out, "--data", "ucr:GunPoint", "--out", tmp_path / "e.npz")
    assert code == 0, err
    with (
        np.load(tmp_path / "e.npz", allow_pickle=False) as again,
        np.load(run.embeddings_path, allow_pickle=False) as saved,
    ):
        for key in ("train_features", "test_features", "test_labels"):
            np.testing.assert_allclose(again[key], saved[key], rtol=1e-5, atol=1e-6)
    code, _, err = cli(
        capsys, "embed", out, "--data", "ucr:BasicMotions", "--out", tmp_path / "m.npz"
    )
    assert code == 2 and "6 channel(s)" in err and not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["timeseries.hiden_dims=8"], "hidden_dims"),
        (["--data", "ucr:GunPont"], "GunPoint"),
        (["timeseries.augment=[time_warp]"], "moves time steps"),
        (["timeseries.lr=-1"], "lr must be a positive"),
        (["timeseries.autotcl={meta_lrr: 1}"], "meta_lr"),
    ],
)
def test_bad_time_series_options_fail_before_anything_is_written(args, phrase, tmp_path, capsys):
    out = tmp_path / "bad"
    code, _, err = cli(capsys, "fit", "--config", "ts2vec", "--out", out, *FAST, *args)
    assert code == 2 and phrase in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_comet_recipe_reads_trial_and_patient_ids_from_npz(tmp_path, capsys, monkeypatch):
    from contrastkit.timeseries import load_timeseries, run

    gunpoint = load_timeseries("ucr:GunPoint")
    n = len(gunpoint.x_train)
    np.savez(
        tmp_path / "gp.npz",
        x=gunpoint.x_train,
        y=gunpoint.y_train,
        x_test=gunpoint.x_test,
        y_test=gunpoint.y_test,
        trial_ids=np.arange(n) // 2,
        patient_ids=np.arange(n) // 10,
    )
    seen = {}
    real = run.fit_evaluate

    def spy(data, **kwargs):
        seen.update(kwargs)
        return real(data, **kwargs)

    monkeypatch.setattr(run, "fit_evaluate", spy)
    out = tmp_path / "comet"
    code, _, err = cli(
        capsys,
        "fit",
        "--config",
        "comet",
        "--data",
        f"npz:{tmp_path / 'gp.npz'}",
        "--out",
        out,
        *FAST,
    )
    assert code == 0, err
    np.testing.assert_array_equal(seen["trial_ids"], np.arange(n) // 2)
    np.testing.assert_array_equal(seen["patient_ids"], np.arange(n) // 10)
    assert RunDir(out).status()["state"] == "complete"
