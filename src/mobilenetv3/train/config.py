"""Every training hyperparameter in one dataclass; YAML/TOML files and CLI flags fill it.

Why one flat dataclass: the resolved value of every knob is written to RUN_DIR/config.yaml, so a
run is reproducible from that file alone, and a typo in a config file is an error rather than a
silently ignored key.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

OPTIMIZERS = ("rmsprop_tf", "rmsprop", "sgd", "adamw")
SCHEDULES = ("exponential", "cosine", "poly", "constant")
AUGMENTS = ("inception", "randaugment", "none")
AMP = ("none", "bf16")
TASKS = ("classification", "detection", "segmentation")


class ConfigError(ValueError):
    """A config file or value that cannot be used (unknown key, bad value, unreadable file)."""


@dataclass
class TrainConfig:
    """Defaults are the original recipe (see configs/slim_original.yaml for sources)."""

    # model and data
    task: str = "classification"  # detection: SSDLite models, segmentation: LR-ASPP models
    model: str | None = None  # None: inferred from `weights`
    weights: str | None = None
    data: str | None = None
    val_data: str | None = None
    # detection: COCO annotations of --data / --val-data (images = folder / file_name)
    annotations: str | None = None
    val_annotations: str | None = None
    # segmentation: mask folders of --data / --val-data (Cityscapes label ids, or train ids)
    masks: str | None = None
    val_masks: str | None = None
    train_ids: bool = False
    output: str | None = None
    num_classes: int | None = None  # None: the number of class folders
    image_size: int = 224
    eval_preprocess: str = "slim_eval"  # a preset of data.preprocess, resized to image_size
    # schedule length
    epochs: int = 1
    batch_size: int = 32  # per process
    max_steps: int | None = None
    # optimiser
    optimizer: str = "rmsprop_tf"
    lr: float = 0.1
    lr_reference_batch: int | None = 4096  # lr is for this global batch; scaled linearly
    momentum: float = 0.9
    rmsprop_decay: float = 0.9
    eps: float = 0.002
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    nesterov: bool = False
    weight_decay: float = 1e-5
    regularize_depthwise: bool = False
    # learning-rate schedule (epochs may be fractional)
    schedule: str = "exponential"
    warmup_epochs: float = 0.0
    warmup_start: float = 0.0  # warm-up's first lr / lr (TF's warmup_learning_rate / base)
    decay_factor: float = 0.99
    decay_epochs: float = 3.0
    staircase: bool = True
    min_lr: float = 0.0
    poly_power: float = 0.9  # poly: lr (1 - step / steps)^power (DeepLab's learning_power)
    # regularisation
    label_smoothing: float = 0.1
    dropout: float = 0.2
    bn_momentum: float = 0.01  # torch convention: 1 - TF decay
    ema_decay: float = 0.9999  # 0 disables the EMA
    ema_warmup: bool = True  # TF's num_updates: decay = min(decay, (1 + n) / (10 + n))
    # augmentation
    augment: str = "inception"
    crop_area: list[float] = field(default_factory=lambda: [0.08, 1.0])
    crop_aspect: list[float] = field(default_factory=lambda: [0.75, 1.3333333])
    flip: bool = True
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])  # segmentation crops
    color_distortion: bool = True
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9
    # execution
    amp: str = "none"
    freeze_backbone: bool = False
    # Quantization-aware fine-tuning: train the BN-folded graph with fake-quantized weights and
    # activations (FX, x86 int8 scheme), end with RUN_DIR/model_int8.pt2 instead of safetensors.
    qat: bool = False
    cache_features: bool = True  # frozen backbone + augment none: run the backbone once
    sync_bn: bool = False
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"  # auto (a GPU where there is one), cpu, cuda, cuda:N
    checkpoint_every: int = 0  # steps; 0: only at each epoch end
    log_every: int = 10
    progress: bool = True
    plot: bool = True

    def validate(self) -> TrainConfig:
        choices = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "augment": AUGMENTS, "amp": AMP,
                   "task": TASKS}  # fmt: skip
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}: {getattr(self, key)!r} is not one of {allowed}")
        positive = ("epochs", "batch_size", "image_size")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.data is None or self.output is None:
            raise ConfigError("data (--data TRAIN_DIR) and output (--output RUN_DIR) are required")
        if self.model is None and self.weights is None:
            raise ConfigError("give a model name (--model) or weights to infer it from")
        if self.qat and self.freeze_backbone:
            raise ConfigError("qat trains the whole fake-quantized graph: drop freeze_backbone")
        self._check_task()
        if self.qat and self.task != "classification":
            raise ConfigError(f"qat fine-tunes classifiers only, not task {self.task}")
        return self

    def _check_task(self) -> None:
        from mobilenetv3.heads.specs import parse_name

        if self.model and (self.task == "classification") == (parse_name(self.model) is not None):
            raise ConfigError(f"model {self.model} does not fit task {self.task}: classification "
                              "trains MobileNet variants, detection ssdlite_* models, "
                              "segmentation lraspp_* models (--task)")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_file(path: str | Path) -> dict[str, Any]:
    """A YAML (.yaml/.yml) or TOML (.toml) mapping."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config {path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of key: value")
    return data


def merge(base: dict[str, Any], overrides: dict[str, Any], source: str = "config") -> TrainConfig:
    """`overrides` over `base` over the defaults; unknown keys are errors."""
    known = {f.name for f in fields(TrainConfig)}
    values = {**base, **overrides}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) in {source}: {', '.join(unknown)}; "
            f"known keys: {', '.join(sorted(known))}"
        )
    return TrainConfig(**{k: _coerce(k, v) for k, v in values.items()})


def _coerce(key: str, value: Any) -> Any:
    """Numbers written as text (YAML 1.1 reads `1e-8` as a string) become the field's type."""
    kind = str(TrainConfig.__dataclass_fields__[key].type).split(" |")[0]
    if value is None or kind not in ("float", "int") or isinstance(value, bool):
        return value
    try:
        return float(value) if kind == "float" else int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: expected a number, got {value!r}") from exc


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """The config of a run: file (if any), then keyword overrides; validated."""
    base = read_file(path) if path is not None else {}
    return merge(base, overrides, source=str(path or "overrides")).validate()


def bundled_config(name: str) -> Path:
    """Path of a config shipped in the package (`slim_original`, `finetune_modern`)."""
    path = Path(__file__).resolve().parents[1] / "configs" / f"{name.removesuffix('.yaml')}.yaml"
    if not path.is_file():
        raise ConfigError(f"no bundled config {name!r}")
    return path


def save_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
