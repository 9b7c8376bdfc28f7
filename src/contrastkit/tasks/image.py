"""The image task: views → backbone → head (→ predictor) → objective
(:class:`~contrastkit.methods.ContrastiveMethod`), evaluated by kNN and a linear probe on the
frozen backbone features (the SimCLR / InstDisc protocols)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from contrastkit.config import Config
from contrastkit.data import ImageData, load_data
from contrastkit.errors import ContrastkitError
from contrastkit.eval import knn_accuracy, linear_probe
from contrastkit.methods import METHODS, ContrastiveMethod, build_method
from contrastkit.tasks.base import IN_MEMORY, Step, Task


class ImageTask(Task):
    """Every method of :data:`contrastkit.methods.METHODS` (SimCLR, MoCo, SwAV, SupCon …)."""

    methods = tuple(METHODS)
    grad_cache_refusal = None

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        if config.views.n_views < 2:
            raise ContrastkitError(f"views.n_views must be at least 2, got {config.views.n_views}.")
        if config.eval.knn_k < 1:
            raise ContrastkitError(f"eval.knn_k must be at least 1, got {config.eval.knn_k}.")

    def load_data(self, data: ImageData | None = None) -> ImageData:
        if data is None:
            data = load_source(self.config)
        elif not isinstance(data, ImageData):
            raise ContrastkitError(
                f"{self.config.method} trains on images; pass an ImageData (load_data or "
                f"image_data_from_arrays), not {type(data).__name__}."
            )
        return data

    def train_dataset(self, data: ImageData) -> Dataset:
        tensors = (data.x_train,) if data.y_train is None else (data.x_train, data.y_train)
        return TensorDataset(*tensors)

    def build_model(self, data: ImageData) -> ContrastiveMethod:
        return build_method(self.config, channels=data.channels, image_size=data.image_size)

    def training_loss(self, model: nn.Module, batch: list[Tensor], step: Step) -> Tensor:
        x, labels = batch[0], (batch[1] if len(batch) > 1 else None)
        return model.training_loss(x, labels, **_schedule(step))

    def backward_in_chunks(
        self, model: nn.Module, batch: list[Tensor], chunk_size: int, step: Step
    ) -> Tensor:
        x, labels = batch[0], (batch[1] if len(batch) > 1 else None)
        return model.backward_in_chunks(x, labels, chunk_size, **_schedule(step))

    def evaluate(
        self, model: nn.Module, data: ImageData
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """kNN (InstDisc protocol) and linear probe on frozen pre-projection features."""
        config = self.config.eval
        train_features, test_features = model.embed(data.x_train), model.embed(data.x_test)
        arrays = {"train_features": train_features.numpy(), "test_features": test_features.numpy()}
        results: dict[str, Any] = {"feature_dim": int(train_features.shape[1])}
        if not data.has_labels:
            return results, arrays
        arrays |= {"train_labels": data.y_train.numpy(), "test_labels": data.y_test.numpy()}
        results["knn_accuracy"] = knn_accuracy(
            train_features,
            data.y_train,
            test_features,
            data.y_test,
            k=config.knn_k,
            temperature=config.knn_temperature,
        )
        if config.linear_probe:
            probe = linear_probe(train_features, data.y_train, test_features, data.y_test)
            results["linear_probe_accuracy"] = probe["accuracy"]
            results["linear_probe_C"] = probe["C"]
        return results, arrays

    def encode(self, model: nn.Module, x: Any) -> np.ndarray:
        return model.embed(torch.as_tensor(np.asarray(x), dtype=torch.float32)).numpy()

    def embed(self, model: nn.Module, source: str) -> dict[str, np.ndarray]:
        data = load_data(
            source,
            seed=self.config.data.split_seed,
            test_fraction=self.config.data.test_fraction,
            image_size=self.config.data.image_size,
        )
        arrays = {
            "train_features": model.embed(data.x_train).numpy(),
            "test_features": model.embed(data.x_test).numpy(),
        }
        if data.has_labels:
            arrays |= {"train_labels": data.y_train.numpy(), "test_labels": data.y_test.numpy()}
        return arrays


def load_source(config: Config) -> ImageData:
    """The image source ``config.data`` names, split and sized as it says."""
    if config.data.source.startswith(IN_MEMORY):
        raise ContrastkitError(
            f"This run was trained on in-memory arrays ({config.data.source}); pass the same data "
            "through the Python API (fit(resume=..., data=...)) instead of the CLI."
        )
    return load_data(
        config.data.source,
        seed=config.data.split_seed,
        test_fraction=config.data.test_fraction,
        image_size=config.data.image_size,
        download=config.data.download,
    )


def _schedule(step: Step) -> dict[str, Any]:
    return {"step": step.step, "epoch": step.epoch, "progress": step.progress}
