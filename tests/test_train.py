"""End to end: the CLI and Python API train, evaluate, embed, resume, and fail cleanly."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import fit_runs as runs
import numpy as np
import pytest
import torch

import contrastkit as ck
from contrastkit.methods import ContrastiveMethod
from contrastkit.train.cli import main
from contrastkit.train.run import load_run
from contrastkit.train.rundir import RunDir

FAST = ["--threads", "1", "--no-progress", "--epochs", "2", "train.batch_size=128"]


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def epochs_logged(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv") as f:
        return sorted(
            {int(row["epoch"]) for row in csv.DictReader(f) if row.get("train_loss_epoch")}
        )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "digits"
    assert main(["fit", "--out", str(out), *FAST]) == 0
    return out


def test_fit_writes_a_complete_run(finished_run):
    run = RunDir(finished_run)
    assert run.status()["state"] == "complete"
    results = json.loads(run.results_path.read_text())
    assert 0.3 < results["knn_accuracy"] <= 1 and 0.3 < results["linear_probe_accuracy"] <= 1
    assert run.load_config().train.epochs == 2
    assert epochs_logged(finished_run) == [0, 1]
    with np.load(run.embeddings_path, allow_pickle=False) as arrays:
        assert arrays["train_features"].shape == (1437, 128) and arrays["test_labels"].shape == (
            360,
        )
    assert set(torch.load(run.checkpoint_path, weights_only=True)) >= {
        "state_dict",
        "optimizer_states",
    }
    assert not list(finished_run.rglob("*.tmp"))


def test_eval_and_embed_commands(finished_run, tmp_path, capsys):
    code, out, _ = cli(capsys, "eval", finished_run, "--json")
    assert code == 0
    before = json.loads((finished_run / "results.json").read_text())
    assert json.loads(out)["knn_accuracy"] == pytest.approx(before["knn_accuracy"])
    target = tmp_path / "features.npz"
    code, out, _ = cli(capsys, "embed", finished_run, "--data", "digits", "--out", target)
    assert code == 0 and "train_features (1437, 128)" in out
    with np.load(target, allow_pickle=False) as arrays:
        stored = np.load(finished_run / "embeddings.npz")["test_features"]
        np.testing.assert_allclose(arrays["test_features"], stored, rtol=1e-5, atol=1e-6)


def test_same_seed_same_run(finished_run, tmp_path):
    again = tmp_path / "again"
    assert main(["fit", "--out", str(again), *FAST]) == 0
    a = torch.load(finished_run / "model.pt", weights_only=True)
    b = torch.load(again / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_python_api_on_in_memory_arrays(tmp_path):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    data = ck.image_data_from_arrays((x / 16).reshape(-1, 1, 8, 8), y, seed=0)
    config = ck.load_config(
        "simclr", {"train.epochs": 1, "train.num_threads": 1, "train.progress_bar": False}
    )
    result = ck.fit(config, data=data, out=tmp_path / "api")
    assert {"knn_accuracy", "linear_probe_accuracy"} <= set(result.metrics)
    assert result.embed(data.x_test[:5]).shape == (5, 128)
    assert RunDir(result.run_dir).load_config().data.source == "in-memory:arrays"
    with pytest.raises(ck.ContrastkitError, match="in-memory data"):
        load_run(result.run_dir)


def write_npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return f"npz:{path}"


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["fit", "--data", "digitz"], "did you mean 'digits'"),
        (["fit", "method=simclrr"], "Unknown method 'simclrr'"),
        (["fit", "objective.name=ntxnet"], "Unknown objective"),
        (["fit", "model.backbone=resnet"], "backbone"),
        (["fit", "--data", "npz:/nonexistent/x.npz"], "nonexistent"),
        (["fit", "--batch-size", "5000"], "larger than the 1437 training samples"),
        (["fit", "train.epoch=3"], "did you mean 'epochs'"),
        (["fit", "--epochs", "0"], "at least 1"),
        (["fit", "views.recipe=fancy"], "fancy"),
        (["eval", "/nonexistent/run"], "not a contrastkit run"),
        (["embed", "/nonexistent/run", "--data", "digits", "--out", "x.txt"], "must end in .npz"),
    ],
)
def test_user_errors_are_one_sentence_without_traceback(args, phrase, capsys, tmp_path):
    code, _, err = cli(capsys, *args, *(["--out", tmp_path / "r"] if args[0] == "fit" else []))
    assert code == 2
    assert phrase in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # rejected before anything was written


@pytest.mark.parametrize(
    "arrays, phrase",
    [
        ({"x": np.zeros((0, 8, 8), np.float32)}, "empty"),
        ({"x": np.random.rand(50, 8, 8).astype(np.float32), "y": np.zeros(50, int)}, "2 classes"),
        ({"x": np.full((50, 8, 8), np.nan, np.float32)}, "NaN"),
        ({"x": np.random.rand(50, 8).astype(np.float32)}, "shape"),
        ({"x": np.array(["a"] * 50)}, "dtype"),
    ],
)
def test_bad_arrays_are_rejected_before_anything_is_written(arrays, phrase, capsys, tmp_path):
    source = write_npz(tmp_path / "bad.npz", **arrays)
    code, _, err = cli(capsys, "fit", "--data", source, "--out", tmp_path / "run")
    assert code == 2 and phrase in err
    assert not (tmp_path / "run").exists()


def test_existing_outputs_are_never_overwritten(finished_run, capsys, tmp_path):
    before = (finished_run / "model.pt").read_bytes()
    code, _, err = cli(capsys, "fit", "--out", finished_run, *FAST)
    assert code == 2 and "--resume" in err
    code, _, err = cli(capsys, "fit", "--resume", finished_run)
    assert code == 2 and "already complete" in err
    assert (finished_run / "model.pt").read_bytes() == before


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(
    monkeypatch, tmp_path
):
    original = ContrastiveMethod.training_loss
    calls = {"n": 0}

    def poisoned(self, x, labels=None, **schedule):
        calls["n"] += 1
        loss = original(self, x, labels, **schedule)
        return loss * float("nan") if calls["n"] > 22 else loss  # 11 steps/epoch: NaN in epoch 2

    monkeypatch.setattr(ContrastiveMethod, "training_loss", poisoned)
    config = ck.load_config(
        "simclr",
        {
            "train.epochs": 4,
            "train.num_threads": 1,
            "train.progress_bar": False,
            "train.batch_size": 128,
        },
    )
    with pytest.raises(ck.ContrastkitError, match="loss became nan"):
        ck.fit(config, out=tmp_path / "nan")
    run = RunDir(tmp_path / "nan")
    assert run.status()["state"] == "failed" and "nan" in run.status()["message"]
    checkpoint = torch.load(run.checkpoint_path, weights_only=True)
    assert checkpoint["epoch"] == 1
    assert all(
        torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point()
    )
    assert not run.model_path.exists()


def test_corrupt_checkpoint_gets_a_clear_error(tmp_path, capsys):
    run = RunDir(tmp_path / "run")
    run.create(ck.load_config("simclr"))
    run.checkpoint_path.write_bytes(b"not a checkpoint")
    code, _, err = cli(capsys, "fit", "--resume", run.root)
    assert code == 2 and "corrupt" in err
    assert run.checkpoint_path.read_bytes() == b"not a checkpoint"


def fit_command(out: Path, epochs: str, *overrides: str) -> list[str]:
    """``contrastkit fit`` on digits as a separate process."""
    return runs.fit_command(out, "simclr", "--epochs", epochs, "train.batch_size=128", *overrides)


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, capsys):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = fit_command(out, "12")
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert RunDir(out).status()["state"] == "running"  # not complete: it died
    killed_at = torch.load(checkpoint, weights_only=True)["epoch"]
    assert killed_at < 11

    code, _, _ = cli(capsys, "fit", "--resume", out)
    assert code == 0
    assert RunDir(out).status()["state"] == "complete"
    assert epochs_logged(out) == list(range(12))
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 11


@pytest.mark.parametrize(
    "extra",
    [[], ["train.grad_cache_chunk=64"], ["eval.report=false", "--config", "swav"]],
    ids=["plain", "grad-cache", "swav-frozen-prototypes"],
)
def test_two_process_ddp_run_on_cpu(tmp_path, extra):
    """Lightning DDP with 2 CPU processes: one run directory, written by rank 0 only; the
    schedule counts each rank's steps; the contrastive loss sees both ranks' candidates. With
    the gradient cache the step back-propagates chunk by chunk and averages across ranks; SwAV
    leaves its frozen prototypes out of the first steps' graphs, which DDP is told about."""
    out = tmp_path / "ddp"
    command = fit_command(
        out,
        "2",
        "train.devices=2",
        "train.accelerator=cpu",
        "train.strategy=ddp",
        "optim.warmup_epochs=0.5",
        *extra,
    )
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("run directory:") == 1
    run = RunDir(out)
    assert run.status()["state"] == "complete"
    assert json.loads(run.results_path.read_text())["knn_accuracy"] > 0.3
    with open(out / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("lr")]
    assert int(rows[-1]["step"]) < 11  # 718 samples per rank / 128 = 5 steps per epoch per rank
    assert float(rows[-1]["lr"]) < 0.2 * run.load_config().optim.lr  # the cosine reached its tail


# -- the one training path, for the image family (every other family's tests do the same) -----
TINY = ["--data", "digits", "train.batch_size=64", "eval.linear_probe=false"]


def test_ctrl_c_then_resume_equals_the_uninterrupted_run(tmp_path):
    """SIGINT after the first checkpoint marks the run interrupted; ``--resume`` continues from
    the checkpoint with its random states (views, data order), so every epoch is logged once
    and the final weights equal those of the same run trained in one go."""
    budget = [*TINY, "train.epochs=4", "eval.report=false"]
    resumed = runs.interrupt_and_resume(tmp_path / "resumed", "simclr", *budget)
    whole = runs.fit_process(tmp_path / "whole", "simclr", *budget)
    assert sorted(runs.epochs_logged(resumed.root)) == runs.epochs_logged(resumed.root) == [0, 1, 2, 3]
    runs.assert_same_weights(resumed.root, whole.root)


def test_two_processes_take_the_same_step_as_one_process_on_the_global_batch(tmp_path):
    """One optimiser step of 2 gloo ranks × 32 samples equals 1 process × 64: the sampler gives
    the two ranks the two halves of the same global batch, the loss sees every rank's candidates
    (gathered with gradient); the views are the identity (random augmentations are drawn per
    rank, so they would differ from the single process's) and the model has no BatchNorm (its
    statistics are per rank; torch's SyncBatchNorm has no CPU implementation). SGD, not Adam:
    Adam's first step is ≈ lr·sign(g), which turns float noise in near-zero gradients into
    full-size differences."""
    same = [
        "--data",
        "digits",
        "views.recipe=none",
        "model.backbone_options={batch_norm: false}",
        "model.head_layers=1",
        "optim.name=sgd",
    ]
    step = [*same, "train.epochs=null", "train.max_steps=1", "eval.report=false"]
    one = runs.fit_process(tmp_path / "one", "simclr", *step, "train.batch_size=64")
    two = runs.fit_ddp(tmp_path / "two", "simclr", *step, "train.batch_size=32")
    runs.assert_same_weights(one.root, two.root, atol=2e-6, rtol=1e-4)
    assert RunDir(two.root).status()["steps"] == 1


def test_optim_lr_and_bf16_change_what_runs(tmp_path):
    step = [*TINY, "train.epochs=null", "train.max_steps=2", "eval.report=false"]
    base = runs.fit_process(tmp_path / "base", "simclr", *step)
    for name, option in (("lr", "optim.lr=0.01"), ("bf16", "train.precision=bf16-mixed")):
        changed = runs.fit_process(tmp_path / name, "simclr", *step, option)
        runs.assert_weights_changed(changed.root, base.root)
    with open(tmp_path / "lr" / "metrics.csv") as f:
        lrs = [float(r["lr"]) for r in csv.DictReader(f) if r.get("lr")]
    assert max(lrs) <= 0.01 and max(lrs) > 0.001  # the schedule runs from optim.lr
