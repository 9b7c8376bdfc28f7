"""A run is a directory (DESIGN.md, principle 5): resolved config, status, checkpoints, metrics,
model weights, embeddings and results. Every file is written to a temporary name, then renamed,
so an interrupted write never corrupts what was there."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import yaml

from contrastkit.config import Config, config_from_dict
from contrastkit.errors import ContrastkitError

STATES = ("running", "complete", "failed", "interrupted")


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temporary file next to ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


class RunDir:
    """Paths and state of one run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    config_path = property(lambda self: self.root / "config.yaml")
    status_path = property(lambda self: self.root / "status.json")
    checkpoint_path = property(lambda self: self.root / "checkpoints" / "last.ckpt")
    model_path = property(lambda self: self.root / "model.pt")
    embeddings_path = property(lambda self: self.root / "embeddings.npz")
    results_path = property(lambda self: self.root / "results.json")
    metrics_path = property(lambda self: self.root / "metrics.csv")

    def is_run(self) -> bool:
        return self.config_path.is_file() and self.status_path.is_file()

    def create(self, config: Config) -> None:
        if self.root.exists() and any(self.root.iterdir()):
            hint = (
                f"resume it with --resume {self.root}" if self.is_run() else "choose another --out"
            )
            raise ContrastkitError(f"Output directory {self.root} is not empty; {hint}.")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "checkpoints").mkdir(exist_ok=True)
        write_text(self.config_path, yaml.safe_dump(config.to_dict(), sort_keys=False))
        self.set_status("running")

    def load_config(self) -> Config:
        if not self.is_run():
            raise ContrastkitError(
                f"{self.root} is not a contrastkit run directory (no config.yaml/status.json)."
            )
        try:
            return config_from_dict(yaml.safe_load(self.config_path.read_text()))
        except yaml.YAMLError as error:
            raise ContrastkitError(
                f"The config of run {self.root} is not valid YAML ({error})."
            ) from None

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, json.JSONDecodeError):
            raise ContrastkitError(
                f"Run {self.root} has no readable status.json; it is not a valid run."
            ) from None

    def set_status(self, state: str, **details: Any) -> None:
        assert state in STATES
        record = {"state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **details}
        write_text(self.status_path, json.dumps(record, indent=2) + "\n")

    def save_results(self, results: dict[str, Any]) -> None:
        write_text(self.results_path, json.dumps(results, indent=2) + "\n")

    def save_model(self, state_dict: dict[str, torch.Tensor]) -> None:
        atomic_write(self.model_path, lambda f: torch.save(state_dict, f))

    def load_model_state(self) -> dict[str, torch.Tensor]:
        return load_weights(self.model_path, what="model weights")

    def merge_metrics(self) -> None:
        """Join the CSV logs of every (re)start (``logs/version_N/metrics.csv``) into
        ``metrics.csv``; rows a later start replayed (same or later step) come from the later one."""
        parts = sorted(
            self.root.glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:])
        )
        tables = [list(csv.DictReader(p.open(newline=""))) for p in parts]
        rows: list[dict[str, str]] = []
        for table in tables:
            if table:
                first_step = int(table[0]["step"])
                rows = [r for r in rows if int(r["step"]) < first_step] + table
        fields = list(dict.fromkeys(key for row in rows for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.metrics_path, text.getvalue())

    def save_embeddings(self, **arrays: np.ndarray) -> None:
        save_npz(self.embeddings_path, **arrays)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(Path(path), lambda f: f.write(buffer.getvalue()))


def load_weights(path: Path, *, what: str) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``: a user's file is data, never code."""
    if not path.is_file():
        raise ContrastkitError(
            f"The {what} file {path} does not exist; has the run finished training?"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated zip, a pickle with code, random bytes
        raise ContrastkitError(
            f"The {what} file {path} is corrupt or not a weights file ({type(error).__name__}); "
            "delete it to start over or restore it from a copy."
        ) from None
