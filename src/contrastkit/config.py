"""Run configuration: typed sections read from YAML recipes (``configs/*.yaml``) plus overrides.

A recipe is plain data (``yaml.safe_load``); unknown keys and wrong types are rejected with the
nearest valid key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from contrastkit.errors import ContrastkitError, did_you_mean

CONFIG_DIR = Path(__file__).resolve().parent / "recipes"


@dataclass
class DataConfig:
    source: str = "digits"
    test_fraction: float = 0.2
    split_seed: int = (
        0  # the train/test split of sources without a fixed one; not the training seed
    )
    image_size: int | None = None
    download: bool = False


@dataclass
class ModelConfig:
    backbone: str = "small-cnn"
    backbone_options: dict[str, Any] = field(default_factory=dict)
    head_hidden_dim: int = 512
    head_out_dim: int = 128
    head_layers: int = 2
    heads: int = 1  # independent projection heads (AMCL's multi-head projector when > 1)
    predictor_layers: int = 0  # an MLP after the head on the online branch (MoCo v3, BYOL)
    predictor_hidden_dim: int = 512
    momentum: float | None = None  # EMA momentum of a key encoder (MoCo: 0.99–0.999); None: none
    momentum_schedule: str = "constant"  # or "cosine": from `momentum` up to 1 (BYOL)
    key_bn_groups: int = 1  # keys encoded in shuffled groups (MoCo's shuffling BN on one device)


@dataclass
class ViewsConfig:
    recipe: str = "small-gray"
    n_views: int = 2
    options: dict[str, Any] = field(default_factory=dict)
    small_crops: int = 0  # extra low-resolution views (SwAV's multi-crop)
    small_size: int | None = None  # their side; default round(image_size · 96/224), at least 8
    small_options: dict[str, Any] = field(default_factory=dict)  # overrides `options` for them


@dataclass
class ObjectiveConfig:
    name: str = "ntxent"
    temperature: float = 0.1
    # keyword options of the objective named (e.g. dclw: {sigma: 0.5}; moco: {queue_size: 4096});
    # checked against its signature when the method is built
    options: dict[str, Any] = field(default_factory=dict)
    # which ids make positives: "views" (instances) or "labels" (classes, SupCon's structure);
    # null: the method's own (methods.registry.METHODS); `contrastkit fit --labels` sets "labels"
    positives: str | None = None


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    warmup_steps: int | None = None  # replaces warmup_epochs when set (step budgets)
    min_lr_ratio: float = 0.0  # 1.0 with no warm-up: a constant learning rate


@dataclass
class TrainConfig:
    epochs: int | None = 30  # null: train.max_steps alone is the budget
    max_steps: int | None = None  # optimiser steps per process; training stops at either budget
    batch_size: int = 256  # per process
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = (
        "auto"  # Lightning strategy: "ddp" under torchrun, "ddp_spawn" for CPU processes
    )
    num_nodes: int = 1
    precision: str = "32-true"
    # BatchNorm statistics over the global batch under DDP (SimCLR's global BN; Chen et al. 2020 §3)
    sync_batchnorm: bool = False
    num_threads: int | None = None
    grad_cache_chunk: int | None = None  # views per chunk: GradCache, one chunk's activation memory
    progress_bar: bool = True


@dataclass
class EvalConfig:
    knn_k: int = 200
    knn_temperature: float = 0.1
    linear_probe: bool = True
    report: bool = True  # write report.html (health summary, curves, diagnostics) after fit


@dataclass
class AutoTCLConfig:
    """AutoTCL (Zheng et al. 2024; code ``AutoTCL_CoST.py``): defaults are the official class /
    ``fit`` defaults, with the mask heads per variable as the official script (``agu_channel =
    F``; ``mask_channels: 1`` shares them). The augmentation network (``aug_dim``,
    ``aug_depth``, ``aug_mask_mode``) trains with AdamW at ``meta_lr`` every ``ratio_step``
    steps on ``aug_objective`` (``"pri"``: MMD + ``reg_weight``·mask size over
    ``reg_threshold`` + ``regular_weight``·temporal consistency; ``"adversarial"``: minus the
    encoder's InfoNCE); the encoder on global + ``local_weight``·local InfoNCE at
    ``temperature``. ``global_normalize: false`` swaps the global InfoNCE's cosine for raw dot
    products and ``global_intra_view: true`` makes it NT-Xent over both views; with
    ``local_normalize: false``, ``local_weight: 1`` and ``local_segments: 8`` the encoder loss
    is InfoTS's (Luo et al. 2023, ``infots.py::fit``), the authors' classification predecessor.
    """

    aug_dim: int = 16
    aug_depth: int = 3
    aug_mask_mode: str = "all_true"  # the official code calls the augmentation encoder unmasked
    meta_lr: float = 0.01
    local_weight: float = 0.1
    reg_weight: float = 0.001
    regular_weight: float = 0.001
    reg_threshold: float = 0.4
    gumbel_bias: float = 0.001
    gamma_zeta: float = 0.05
    hard_mask: bool = True
    ratio_step: int = 1
    aug_objective: str = "pri"  # or "adversarial"
    temperature: float = 1.0
    global_normalize: bool = True
    global_intra_view: bool = False
    local_segments: int = 16
    local_normalize: bool = True
    mask_channels: int | None = None


@dataclass
class COMETConfig:
    """COMET (Wang et al. 2023; ``config_files/*``): ``factors`` and encoder ``masks`` of the
    patient, trial, sample and observation levels. ``faithful_factors: false`` reproduces the
    code, where the patient and trial factors only switch their level on; ``true`` multiplies
    them as the paper intends."""

    factors: list[float] = field(default_factory=lambda: [0.25, 0.25, 0.25, 0.25])
    masks: list[str] = field(
        default_factory=lambda: ["all_true", "all_true", "continuous", "continuous"]
    )
    id_temperature: float = 0.1
    faithful_factors: bool = False


@dataclass
class TimeSeriesConfig:
    """Time-series methods (ts2vec / autotcl / comet; the task
    :mod:`contrastkit.tasks.timeseries` checks the values).

    TS2Vec's encoder (Yue et al. 2022): ``output_dims``, ``hidden_dims``, ``depth`` residual
    blocks, ``dropout`` on its output (and on AutoTCL's augmentation encoder's), ``causal``
    convolutions; series longer than
    ``max_train_length`` are cut into sections and windows while training (``null``: kept
    whole); ``temporal_unit`` and ``alpha`` shape the hierarchical loss. ``augment`` adds
    input-space views to ts2vec / comet: ``{jitter: σ, scaling: σ}`` or a list of those names.
    """

    output_dims: int = 320
    hidden_dims: int = 64
    depth: int = 10
    dropout: float = 0.1
    max_train_length: int | None = 3000
    temporal_unit: int = 0
    alpha: float = 0.5
    causal: bool = False
    augment: dict[str, float] | list[str] = field(default_factory=dict)
    autotcl: AutoTCLConfig = field(default_factory=AutoTCLConfig)
    comet: COMETConfig = field(default_factory=COMETConfig)


@dataclass
class Config:
    method: str = "simclr"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # options of the time-series methods (ts2vec / autotcl / comet); unused by the others
    timeseries: TimeSeriesConfig = field(default_factory=TimeSeriesConfig)
    # options of two-tower methods (clip / convirt / cocosoda / simcse / whitenedcse; see
    # contrastkit.multimodal.TowerOptions); unused by the others
    towers: dict[str, Any] = field(default_factory=dict)
    # options of multiple-instance methods (scmil / abmil / ins; contrastkit.mil.run) and of
    # continuous-target methods (regression / conr / supremix; contrastkit.regression.run)
    mil: dict[str, Any] = field(default_factory=dict)
    regression: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(
    recipe: str | Path = "simclr", overrides: dict[str, Any] | list[str] | None = None
) -> Config:
    """Read a recipe (a bundled name such as ``"simclr"`` or a YAML path) and apply overrides
    given as ``{"train.epochs": 5}`` or ``["train.epochs=5"]``."""
    path = _recipe_path(recipe)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ContrastkitError(
            f"Cannot read config {path}: {_first_line(error)}; fix the YAML and retry."
        ) from None
    if not isinstance(raw, dict):
        raise ContrastkitError(
            f"Config {path} must be a YAML mapping of sections, not {type(raw).__name__}."
        )
    for key, value in _parse_overrides(overrides).items():
        _set_dotted(raw, key, value)
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build a validated :class:`Config` from nested plain data."""
    return _build(Config, raw, "")


def available_recipes() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _recipe_path(recipe: str | Path) -> Path:
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ContrastkitError(f"Config file {path} does not exist; check the path.")
        return path
    bundled = CONFIG_DIR / f"{recipe}.yaml"
    if not bundled.is_file():
        raise ContrastkitError(
            f"Unknown recipe {str(recipe)!r}{did_you_mean(str(recipe), available_recipes())}; "
            f"available: {', '.join(available_recipes())} (or pass a .yaml path)."
        )
    return bundled


def _parse_overrides(overrides: dict[str, Any] | list[str] | None) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ContrastkitError(
                f"Override {item!r} must look like section.key=value, e.g. train.epochs=5."
            )
        try:
            parsed[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed[key.strip()] = value
    return parsed


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    *sections, last = key.split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ContrastkitError(f"Cannot set {key!r}: {section!r} is not a section.")
    node[last] = value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ContrastkitError(
            f"Config section {where or 'root'!r} must be a mapping, got {raw!r}."
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            raise ContrastkitError(
                f"Unknown config key {where + key!r}{did_you_mean(key, fields)}; "
                f"valid keys here: {', '.join(fields)}."
            )
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, f"{where}{name}.")
        else:
            values[name] = _coerce(value, hint, where + name)
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        origin = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return None
        if origin is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin in (str, bool, dict, list) and isinstance(value, origin):
            return value
    names = " or ".join(getattr(o, "__name__", str(o)).replace("NoneType", "null") for o in options)
    raise ContrastkitError(f"Config key {key!r} must be {names}, got {value!r}.")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
