"""One call from a config to numbers for two-tower methods: build the towers and the objective,
train, then evaluate on the held-out split — retrieval both ways (R@1/5/10, MRR), zero-shot
classification from class prompts, the modality-gap measurements, and, for sentence encoders,
WordSim-353 / SimLex-999 / Lee correlations.

``fit_evaluate(config)`` is what ``contrastkit fit --config configs/clip.yaml`` and the
benchmarks call; ``towers.steps=0`` evaluates the untrained (or pre-trained) towers.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from contrastkit.config import Config
from contrastkit.diagnostics.gap import modality_gap
from contrastkit.errors import ContrastkitError, did_you_mean, unknown_name
from contrastkit.eval.retrieval import bidirectional_retrieval, zero_shot_accuracy
from contrastkit.eval.similarity import sentence_benchmarks
from contrastkit.multimodal.data import TwoTowerData, load_two_tower_data
from contrastkit.multimodal.image_tower import image_features
from contrastkit.multimodal.model import DualEncoder, SentenceContrast
from contrastkit.multimodal.train import encode, train_steps
from contrastkit.nn.text import load_tokenizer, resolve_text_model, text_tower, tokenize
from contrastkit.objectives.multimodal import (
    CLIPLoss,
    CoCoSoDaLoss,
    ConVIRTLoss,
    SentenceContrastLoss,
)
from contrastkit.options import check_integer, check_option_keys
from contrastkit.train.loops import LoopResult, refuse_trainer_options
from contrastkit.views.text import TokenViews

#: method name → objective class; sentence methods train one tower on side ``a``'s texts
OBJECTIVES: dict[str, type[nn.Module]] = {
    "clip": CLIPLoss,
    "convirt": ConVIRTLoss,
    "cocosoda": CoCoSoDaLoss,
    "simcse": SentenceContrastLoss,
    "whitenedcse": SentenceContrastLoss,
}
SENTENCE_METHODS = ("simcse", "whitenedcse")
IMAGE_TOWER = "efficientnet-lite0"


@dataclass(frozen=True)
class TowerOptions:
    """The config's ``towers:`` section.

    ``a``/``b`` name each side's tower: ``"minilm"`` (the bundled all-MiniLM-L6-v2) or a local
    Hugging Face model directory, ``"tokens"`` (a small transformer over the MiniLM tokenizer's
    ids), ``"efficientnet-lite0"`` (frozen image features). ``freeze_*``: ``True`` or the number of
    leading transformer layers to freeze (ConVIRT: 6 of BERT's).
    """

    a: str = "minilm"
    b: str = "minilm"
    shared: bool = False
    projection: str = "linear"
    dim: int = 128
    freeze_a: bool | int = False
    freeze_b: bool | int = False
    max_length_a: int = 64
    max_length_b: int = 128
    eval_max_length: int = (
        256  # pre-trained towers read longer inputs at evaluation (Lee documents)
    )
    token_dim: int = 128
    token_layers: int = 2
    image_size: int = 64
    momentum: float = 0.999  # CoCoSoDa's key encoders
    mask_probability: float = 0.1  # CoCoSoDa's soft augmentation of the keys' inputs
    steps: int = 200
    batch_size: int = 64
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup: float = 0.1
    max_train_pairs: int | None = None
    max_test_pairs: int | None = None
    eval_batch_size: int = 128
    feature_cache: str | None = "~/.cache/contrastkit/features"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TowerOptions:
        check_option_keys("towers", raw, (f.name for f in dataclasses.fields(cls)))
        options = cls(**raw)
        for name in ("steps", "batch_size", "dim", "eval_batch_size", "eval_max_length"):
            check_integer(f"towers.{name}", getattr(options, name), 0 if name == "steps" else 1)
        if not options.lr > 0:
            raise ContrastkitError(f"towers.lr must be positive, got {options.lr!r}.")
        return options


@dataclass(frozen=True, eq=False)
class TwoTowerResult:
    """Test metrics, the trained model, per-step losses and wall-clock seconds."""

    metrics: dict[str, float]
    model: nn.Module
    losses: list[float]
    train_seconds: float
    test_embeddings: dict[str, np.ndarray]


def fit_evaluate(config: Config, data: TwoTowerData | None = None) -> TwoTowerResult:
    """Train ``config.method`` on ``config.data.source`` and evaluate it on the test split."""
    data = check_config(config, data)
    options = TowerOptions.from_dict(dict(config.towers))
    torch.manual_seed(config.seed)
    train, test = _cap(data.splits.train, options.max_train_pairs, config.seed), data.splits.test
    test = _cap(test, options.max_test_pairs, 0)
    sides = _Sides(data, options)
    model = build_model(config, options, sides)
    train_a, train_b = sides.inputs("a", train.a), sides.inputs("b", train.b)

    def make_batch(rows: np.ndarray) -> tuple[Any, Any]:
        return sides.prepare("a", [train_a[i] for i in rows]), sides.prepare(
            "b", [train_b[i] for i in rows]
        )

    started = time.perf_counter()
    losses = train_steps(
        model,
        make_batch,
        len(train),
        n_steps=options.steps,
        batch_size=options.batch_size,
        lr=options.lr,
        weight_decay=options.weight_decay,
        warmup=options.warmup,
        seed=config.seed,
    )
    train_seconds = time.perf_counter() - started
    metrics, embeddings = evaluate(model, config.method, data, test, sides, options)
    metrics |= {"train_seconds": round(train_seconds, 1), "steps": options.steps}
    if losses:
        metrics["final_loss"] = losses[-1]
    return TwoTowerResult(metrics, model, losses, train_seconds, embeddings)


def check_config(config: Config, data: TwoTowerData | None = None) -> TwoTowerData:
    """Everything that can reject a two-tower config before a run directory is written: the
    method, the ``towers:`` section, trainer flags these runs do not read, the data source and
    whether each side's tower can read its data. Returns the data (loaded unless given)."""
    if config.method not in OBJECTIVES:
        raise unknown_name("two-tower method", config.method, OBJECTIVES)
    options = TowerOptions.from_dict(dict(config.towers))
    refuse_trainer_options(config, "towers.steps", "towers.batch_size")
    _objective_options(config, ())
    if data is None:
        data = load_two_tower_data(
            config.data.source, seed=config.data.split_seed, image_size=options.image_size
        )
    for side, kind, name in zip("ab", data.kinds, (options.a, options.b), strict=True):
        if kind == "images" and name != IMAGE_TOWER:
            raise ContrastkitError(f"Side {side} holds images; set towers.{side}: {IMAGE_TOWER}.")
        if kind == "text" and name == IMAGE_TOWER:
            raise ContrastkitError(f"Side {side} holds text; choose a text tower for it.")
    if options.shared and data.kinds[0] != data.kinds[1]:
        raise ContrastkitError("towers.shared needs the same kind of data on both sides.")
    if config.method in SENTENCE_METHODS and data.kinds[0] != "text":
        raise ContrastkitError(f"{config.method} trains a text encoder; use a text data source.")
    return data


def fit_config(config: Config, data: TwoTowerData | None = None) -> LoopResult:
    """``contrastkit fit`` for two-tower methods: the trained towers, the test embeddings of both
    sides and the test metrics."""
    result = fit_evaluate(config, data)
    return LoopResult(result.metrics, result.model, result.test_embeddings, len(result.losses))


def build_model(config: Config, options: TowerOptions, sides: _Sides) -> nn.Module:
    """Towers, projections and the objective named by ``config.method``."""
    method = config.method
    if method in SENTENCE_METHODS:
        tower = sides.tower("a")
        defaults: dict[str, Any] = {"num_pos": 2 if method == "simcse" else 3}
        if method == "whitenedcse":
            defaults["whitening_groups"] = max(1, tower.out_dim // 6)  # groups of 6 channels
        objective = _objective(config, defaults, dim=tower.out_dim)
        return SentenceContrast(tower, objective, objective.num_pos)
    tower_a = sides.tower("a")
    tower_b = tower_a if options.shared else sides.tower("b")
    momentum, augment, fixed = None, [None, None], {}
    if method == "cocosoda":
        fixed["dim"] = options.dim if options.projection != "none" else tower_a.out_dim
        momentum = options.momentum
        augment = [sides.augmenter(side) for side in "ab"]
    return DualEncoder(
        tower_a,
        tower_b,
        _objective(config, {}, **fixed),
        dim=options.dim,
        projection_kind=options.projection,
        momentum=momentum,
        augment_a=augment[0],
        augment_b=augment[1],
    )


def _objective_options(config: Config, fixed: Any) -> None:
    """``objective.name`` must be the method; ``objective.options`` must be its constructor's
    keywords (those the towers fix excepted)."""
    method, spec = config.method, config.objective
    if spec.name != method:
        raise ContrastkitError(
            f"Two-tower method {method!r} trains objective {method!r}; set objective.name: "
            f"{method} (got {spec.name!r})."
        )
    fixed = {"self", "temperature", "dim", *fixed}
    settable = set(inspect.signature(OBJECTIVES[method]).parameters) - fixed
    for name in spec.options:
        if name not in settable:
            raise ContrastkitError(
                f"Unknown option {name!r} for objective {method!r}{did_you_mean(name, settable)}; "
                f"valid options: {', '.join(sorted(settable))}."
            )


def _objective(config: Config, defaults: dict[str, Any], **fixed: Any) -> nn.Module:
    """The method's objective from ``objective.temperature`` and ``objective.options`` over
    ``defaults``; ``fixed`` come from the towers."""
    _objective_options(config, fixed)
    factory = OBJECTIVES[config.method]
    options = {**defaults, **config.objective.options, **fixed}
    try:
        return factory(temperature=config.objective.temperature, **options)
    except TypeError as error:  # a value of the wrong type
        raise ContrastkitError(
            f"Objective {config.method!r} rejected its options: {error}."
        ) from None


def evaluate(
    model: nn.Module,
    method: str,
    data: TwoTowerData,
    test: Any,
    sides: _Sides,
    options: TowerOptions,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Held-out metrics of a trained model (see the module docstring)."""
    metrics: dict[str, float] = {}

    def embed(side: str, items: Sequence) -> Tensor:
        return encode(
            model,
            side,
            sides.inputs(side, list(items)),
            lambda chunk: sides.prepare(side, list(chunk), evaluation=True),
            batch_size=options.eval_batch_size,
        )

    if method in SENTENCE_METHODS:
        metrics |= sentence_benchmarks(lambda texts: embed("a", texts).numpy())
        return metrics, {}
    a, b = embed("a", test.a), embed("b", test.b)
    if data.classes is not None and data.test_labels is not None:
        prompts = [t.format(c) for c in data.classes for t in data.templates]
        prompt_embeddings = torch.nn.functional.normalize(embed("b", prompts), dim=1)
        per_class = prompt_embeddings.view(len(data.classes), len(data.templates), -1).mean(1)
        metrics["zero_shot_accuracy"] = zero_shot_accuracy(
            a.numpy(), per_class.numpy(), data.test_labels[: len(a)]
        )
    else:
        metrics |= bidirectional_retrieval(a.numpy(), b.numpy())
    gap = modality_gap(a, b, paired=True, seed=0)
    metrics |= {f"gap/{k}": float(v) for k, v in gap.items()}
    return metrics, {"test_a": a.numpy(), "test_b": b.numpy()}


class _Sides:
    """What each side's items are and how a list of them becomes a tower's batch."""

    def __init__(self, data: TwoTowerData, options: TowerOptions) -> None:
        self.kinds, self.options = data.kinds, options
        self.names = (options.a, options.b)
        self.tokenizers: dict[str, Any] = {}
        for side, kind, name in zip("ab", self.kinds, self.names, strict=True):
            if kind == "text":  # a token tower reads the MiniLM tokenizer's ids
                path = resolve_text_model("minilm" if name == "tokens" else name)
                self.tokenizers[side] = load_tokenizer(path)
        self._features: dict[int, np.ndarray] = {}

    def tower(self, side: str) -> nn.Module:
        name, freeze = getattr(self.options, side), getattr(self.options, f"freeze_{side}")
        if name == IMAGE_TOWER:
            return _FeatureInput()
        if name == "tokens":
            tokenizer = self.tokenizers[side]
            return text_tower(
                "tokens",
                vocab_size=tokenizer.vocab_size,
                dim=self.options.token_dim,
                layers=self.options.token_layers,
                max_length=self._max_length(side),
                pad_id=tokenizer.pad_token_id,
            )
        return text_tower(name, freeze=freeze)

    def _max_length(self, side: str) -> int:
        return getattr(self.options, f"max_length_{side}")

    def inputs(self, side: str, items: list) -> list:
        """Items as the tower sees them: frozen image features are computed once here."""
        if self.kinds["ab".index(side)] != "images":
            return items
        pixels = np.stack(items)
        if pixels.ndim == 4 and pixels.shape[-1] == 3:  # [N, H, W, 3] → [N, 3, H, W]
            pixels = pixels.transpose(0, 3, 1, 2)
        cache = self.options.feature_cache
        return list(
            image_features(
                pixels,
                image_size=self.options.image_size,
                cache_dir=None if cache is None else Path(cache).expanduser(),
            )
        )

    def prepare(self, side: str, items: list, evaluation: bool = False) -> Any:
        """A tower's batch; at evaluation a pre-trained text tower reads up to
        ``eval_max_length`` tokens (a small token tower only knows its training length)."""
        if self.kinds["ab".index(side)] == "images":
            return torch.from_numpy(np.stack(items))
        length = self._max_length(side)
        if evaluation and getattr(self.options, side) != "tokens":
            length = max(length, self.options.eval_max_length)
        return tokenize(self.tokenizers[side], items, max_length=length)

    def augmenter(self, side: str) -> Any:
        if self.kinds["ab".index(side)] != "text":
            return None
        tokenizer = self.tokenizers[side]
        views = TokenViews(mask_probability=self.options.mask_probability)
        return lambda tokens: views(
            tokens, mask_id=tokenizer.mask_token_id, vocab_size=tokenizer.vocab_size
        )


class _FeatureInput(nn.Module):
    """The image side's tower once frozen features are cached: the features themselves."""

    out_dim = 1280

    def forward(self, features: Tensor) -> Tensor:
        return features.float()


def _cap(data: Any, limit: int | None, seed: int) -> Any:
    """At most ``limit`` rows, a seeded sample (all of them when ``limit`` is None)."""
    if limit is None or len(data) <= limit:
        return data
    rows = np.sort(np.random.default_rng(seed).choice(len(data), limit, replace=False))
    return data.subset(rows)
