"""Training configuration: one dataclass with defaults, overridden by a YAML file, then by ``--key value`` flags.

The resolved config is written next to the outputs and into the model card, so any model can be rebuilt.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from ..data.manifest import DatasetSpec
from ..errors import ConfigError, ManifestError


class LossName(StrEnum):
    CROSS_ENTROPY = "cross_entropy"
    MSE = "mse"  # squared error between softmax probabilities and one-hot targets


class OptimizerName(StrEnum):
    ADAMW = "adamw"
    SGD = "sgd"


class ScheduleName(StrEnum):
    COSINE = "cosine"
    CONSTANT = "constant"


@dataclass
class AugmentConfig:
    """Training-time augmentation (torchvision transforms v2), applied to the cached model-size squares."""

    hflip: float = 0.5
    degrees: float = 10.0
    translate: float = 0.08
    scale_min: float = 0.9
    scale_max: float = 1.15
    brightness: float = 0.2
    contrast: float = 0.2
    gamma: float = 0.0  # max |log gamma|; 0 disables
    speckle: float = 0.0  # std of multiplicative Gaussian noise, ultrasound speckle-like; 0 disables
    blur: float = 0.0  # probability of a Gaussian blur (sigma 0.1-1.0 px)
    erase: float = 0.0  # probability of random erasing (occlusion)


@dataclass
class TrainConfig:
    name: str = "busi_model"
    architecture: str = "efficientnet_lite0"
    model_args: dict[str, Any] = field(default_factory=dict)
    image_size: int = 160
    resize: str = "pad"
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = OptimizerName.ADAMW.value
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = ScheduleName.COSINE.value
    warmup_epochs: int = 1
    loss: str = LossName.CROSS_ENTROPY.value
    label_smoothing: float = 0.0
    class_weights: bool = False
    # weight of the lesion-mask loss (BCE + Dice on BUSI's radiologist masks); needs a model built with lesion
    # attention (model_args.lesion_block); 0 trains the classifier on labels alone
    lesion_weight: float = 0.0
    freeze_blocks: int = 0  # pretrained backbones: number of leading stages kept frozen
    patience: int = 10  # early stopping on validation AUC (malignant vs rest)
    # >0: ship the average of the last swa_epochs epochs' weights (Izmailov et al. 2018) instead of the single
    # epoch with the best validation AUC, whose choice on 78 images is noisy; runs every epoch (no early stop)
    swa_epochs: int = 0
    seed: int = 0
    # the datasets to train on, each a known name ("busi", "busbra") or {name, manifest, weight}: their train splits
    # are pooled (each dataset drawn in proportion to its weight when there are several), their val splits pooled
    # for selection, calibration and the scope gate
    datasets: list[Any] = field(default_factory=lambda: ["busi"])
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    val_split: str = "val"
    subset: int = 0  # >0: use only this many images per split (smoke tests)
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    min_sensitivity: float = 0.90  # operating threshold rule: highest threshold with val sensitivity >= this
    out_dir: str = "runs/busi_model"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # how the app's heatmaps are made, copied into the card (target_layer, method, flip_average, shift, smooth,
    # rule); chosen on the validation lesions with bench/cam_choice.py, after training, so it never steers training
    explain: dict[str, Any] = field(default_factory=dict)
    # headline probabilities from the mean logits of the explain entry's views (test-time augmentation), with
    # temperature and threshold fitted on that mean; chosen on validation NLL (docs/design_choices.md)
    tta_headline: bool = False

    def __post_init__(self) -> None:
        for key, enum in (("loss", LossName), ("optimizer", OptimizerName), ("schedule", ScheduleName)):
            value = getattr(self, key)
            try:
                setattr(self, key, enum(value).value)
            except ValueError as e:
                valid = ", ".join(v.value for v in enum)
                raise ConfigError(f"{key}={value!r} is not valid; choose one of: {valid}") from e
        if isinstance(self.augment, dict):
            self.augment = _build(AugmentConfig, self.augment, "augment.")
        try:
            specs = [DatasetSpec.parse(d) for d in self.datasets]
        except ManifestError as e:
            raise ConfigError(f"datasets: {e}") from e
        if not specs or len({s.name for s in specs}) != len(specs):
            raise ConfigError(f"datasets must name at least one dataset, each once; got {self.datasets!r}")
        if not 0 <= self.swa_epochs <= self.epochs:
            raise ConfigError(f"swa_epochs={self.swa_epochs} must be between 0 and epochs={self.epochs}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def dataset_specs(self) -> list[DatasetSpec]:
        return [DatasetSpec.parse(d) for d in self.datasets]


@dataclass
class OutlineConfig:
    """The lesion-outline decoder's training (:mod:`medapp.training.train_outline`) on a trained model's encoder."""

    name: str = "lesion_outline"
    base_model: str = "models/lite0_160_2site"
    datasets: list[Any] = field(default_factory=lambda: ["busi", "busbra"])
    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 0
    subset: int = 0  # >0: only this many images per split (smoke tests)
    out_dir: str = "runs/lesion_outline"
    # >0: the decoder gets its own trainable copy of encoder blocks branch_from.. (learning rate branch_lr); 0: the
    # shared encoder's features only (docs/design_choices.md)
    branch_from: int = 0
    branch_lr: float = 5e-4
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = _build(AugmentConfig, self.augment, "augment.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be positive, got {self.epochs} and {self.batch_size}")


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + u for u in unknown)}; "
                          f"valid keys: {', '.join(sorted(prefix + k for k in known))}")
    return cls(**values)


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``['--lr', '0.01', '--augment.blur=0.2']`` -> ``{'lr': 0.01, 'augment': {'blur': 0.2}}``."""
    result: dict[str, Any] = {}
    i = 0
    while i < len(pairs):
        token = pairs[i]
        if not token.startswith("--"):
            raise ConfigError(f"expected --key value, got {token!r}")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(pairs):
                raise ConfigError(f"--{key} needs a value")
            value = pairs[i + 1]
            i += 1
        i += 1
        target = result
        *parents, leaf = key.replace("-", "_").split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = _parse_value(value)
    return result


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                cls: type = TrainConfig) -> Any:
    """Defaults <- YAML file <- overrides, for ``cls`` (:class:`TrainConfig`, or :class:`OutlineConfig`)."""
    values: dict[str, Any] = dataclasses.asdict(cls())
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"could not read config {path}: {e}") from e
        values = _merge(values, loaded)
    values = _merge(values, overrides or {})
    return _build(cls, values)


def save_config(config: Any, path: str | Path) -> None:
    """The resolved config (any of this module's dataclasses) as YAML, so the run can be repeated."""
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
