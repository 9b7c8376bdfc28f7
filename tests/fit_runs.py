"""Shared checks of the one training path, for every family's tests: ``contrastkit fit`` in a
separate process (1 or 2 gloo ranks), Ctrl-C and resume, and comparison of trained weights."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from contrastkit.train.rundir import RunDir

BASE = ["--threads", "1", "--no-progress"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def fit_command(out: Path, recipe: str, *overrides: str) -> list[str]:
    """``contrastkit fit --config RECIPE --out OUT`` with one thread and no progress bar."""
    return [
        sys.executable,
        "-m",
        "contrastkit.train.cli",
        "fit",
        "--config",
        recipe,
        "--out",
        str(out),
        *BASE,
        *overrides,
    ]


def fit_process(out: Path, recipe: str, *overrides: str, timeout: float = 600) -> RunDir:
    """Run ``contrastkit fit`` to completion in a subprocess; fails the test with its stderr."""
    done = subprocess.run(
        fit_command(out, recipe, *overrides),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run directory:") == 1, done.stdout  # rank 0 alone prints
    run = RunDir(out)
    assert run.status()["state"] == "complete"
    return run


def fit_ddp(out: Path, recipe: str, *overrides: str, timeout: float = 600) -> RunDir:
    """The same run on 2 CPU processes joined by gloo (Lightning's DDP launcher)."""
    return fit_process(
        out,
        recipe,
        "train.devices=2",
        "train.accelerator=cpu",
        "train.strategy=ddp",
        *overrides,
        timeout=timeout,
    )


def interrupt_and_resume(out: Path, recipe: str, *overrides: str, timeout: float = 600) -> RunDir:
    """Start ``contrastkit fit``, send Ctrl-C (SIGINT) once its first checkpoint exists, check
    the run is marked ``interrupted``, then ``--resume`` it to completion."""
    process = subprocess.Popen(
        fit_command(out, recipe, *overrides),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoint = RunDir(out).checkpoint_path
    deadline = time.time() + timeout
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if process.poll() is not None:
        raise AssertionError(
            "the run ended before its first checkpoint (give it more epochs): "
            + process.communicate()[1][-3000:]
        )
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=timeout)
    assert process.returncode == 2, err[-3000:]
    assert "resume it with" in err
    assert RunDir(out).status()["state"] == "interrupted"
    done = subprocess.run(
        [sys.executable, "-m", "contrastkit.train.cli", "fit", "--resume", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = RunDir(out)
    assert run.status()["state"] == "complete"
    return run


def epochs_logged(run_dir: Path) -> list[int]:
    """The epochs with an epoch-mean training loss in ``metrics.csv`` (each must appear once)."""
    with open(Path(run_dir) / "metrics.csv") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f) if row.get("train_loss_epoch")]
    return epochs


def metric_columns(run_dir: Path) -> set[str]:
    with open(Path(run_dir) / "metrics.csv") as f:
        return set(csv.DictReader(f).fieldnames or [])


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(Path(run_dir) / "model.pt", weights_only=True)


def assert_same_weights(a: Path, b: Path, *, atol: float = 0.0, rtol: float = 0.0) -> None:
    """The two runs' trained weights are equal (exactly, unless a tolerance is given)."""
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        if wa[key].is_floating_point():
            torch.testing.assert_close(wa[key], wb[key], atol=atol, rtol=rtol, msg=key)
        else:
            assert torch.equal(wa[key], wb[key]), key


def assert_weights_changed(run_dir: Path, reference: Path) -> None:
    """Some trained weight differs between the two runs (an option changed what ran)."""
    wa, wb = weights(run_dir), weights(reference)
    assert any(not torch.equal(wa[k], wb[k]) for k in wa if wa[k].is_floating_point())


def results(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "results.json").read_text())
