"""What differs between training a classifier, a detector and a segmenter: the model, the data
and the loss. The trainer (`setup`, `loop`, `validation`) takes one `Task` and runs any alike.

Every dataset yields (input, target, index) and has `set_epoch`; every loss is `LossTerms` (a
sum and its divisor, which the trainer sums over processes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset

from mobilenetv3.data import preprocess as pp
from mobilenetv3.data.datasets import DatasetError, ImageDataset
from mobilenetv3.factory import create_model
from mobilenetv3.heads import LRASPP, SSDLite
from mobilenetv3.heads.losses import LossTerms, segmentation_loss, ssd_loss
from mobilenetv3.heads.specs import HEADS, TASK_MODELS
from mobilenetv3.train.config import ConfigError, TrainConfig
from mobilenetv3.train.data import TrainTransform, eval_preset, list_image_folder, val_samples
from mobilenetv3.train.distributed import DistInfo
from mobilenetv3.train.synthetic import SHAPES, SyntheticShapes, synthetic_count


@dataclass
class TaskData:
    train_set: Dataset
    val_set: Dataset | None  # this process's share
    labels: list[str]
    preset: pp.Preprocess | None  # evaluation preprocessing saved with a classifier


def _shard(dataset: Dataset, info: DistInfo) -> Subset:
    """This process's share of a validation set: every world_size-th item."""
    return Subset(dataset, range(info.rank, len(dataset), info.world_size))


class Task:
    """The parts of one kind of training, for the run's `config`: `data`, `build_model`,
    `frozen` (the parts --freeze-backbone freezes), `outputs` (the module a step runs),
    `loss` (`LossTerms` of a batch) and `metadata` (saved with the trained weights)."""

    name = ""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def frozen(self, model: nn.Module) -> list[nn.Module]:
        return [model.backbone]

    def prepared(self, model: nn.Module) -> nn.Module:
        """`model` with the recipe's BatchNorm momentum, its frozen parts frozen."""
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = self.config.bn_momentum
        if self.config.freeze_backbone:
            for part in self.frozen(model):
                part.requires_grad_(False)
        return model


class Classification(Task):
    """ImageFolder data, a MobileNet classifier, cross-entropy with label smoothing."""

    name = "classification"

    def data(self, info: DistInfo) -> TaskData:
        config = self.config
        samples, classes = list_image_folder(config.data)
        preset = eval_preset(config)
        train_set = ImageDataset(samples, preset, transform=TrainTransform(config),
                                 seed=config.seed)  # fmt: skip
        val_set = None
        if config.val_data:
            val_set = _shard(ImageDataset(val_samples(config.val_data, classes), preset), info)
        return TaskData(train_set, val_set, classes, preset)

    def build_model(self, num_classes: int) -> nn.Module:
        """Fresh or pretrained, with a `num_classes` head, the recipe's dropout, BN momentum."""
        config = self.config
        # training is float: an 8-bit .tflite's weights start it dequantized
        model = create_model(config.model, num_classes=num_classes, weights=config.weights,
                             dropout=config.dropout, dequantize=True)  # fmt: skip
        return self.prepared(model)

    def frozen(self, model: nn.Module) -> list[nn.Module]:
        return [model.features, model.head]

    def metadata(self) -> dict[str, Any]:
        """Saved with the trained weights: the evaluation preprocessing."""
        return {"preprocess": eval_preset(self.config).to_dict()}

    def outputs(self, model: nn.Module) -> nn.Module:
        return model

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, training: bool) -> LossTerms:
        """Cross-entropy (label-smoothed in training) summed over the images; top-1."""
        logits = logits.float()
        smoothing = self.config.label_smoothing if training else 0.0
        total = F.cross_entropy(logits, labels, reduction="sum", label_smoothing=smoothing)
        correct = float((logits.argmax(1) == labels).sum())
        return LossTerms(total, labels.numel(), correct, labels.numel())


class RawOutputs(nn.Module):
    """A head model whose forward is its `forward_raw` (what the losses take), for DDP."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.forward_raw(x)


class HeadTask(Task):
    """SSDLite or LR-ASPP on synthetic shapes (`--data synthetic:N`)."""

    labels: tuple[str, ...] = ()
    model_type: type[nn.Module] = nn.Module

    def data(self, info: DistInfo) -> TaskData:
        config = self.config
        val_set = None
        if config.val_data:
            val_set = _shard(self._synthetic(config.val_data, split=1), info)
        return TaskData(self._synthetic(config.data, split=0), val_set, list(self.labels), None)

    def _synthetic(self, data: str, split: int) -> SyntheticShapes:
        count = synthetic_count(data)
        if count is None:
            raise DatasetError(f"{data}: {self.name} trains on synthetic:N images (shapes drawn "
                               "on noise) for now; no folder reader yet")  # fmt: skip
        return SyntheticShapes(self.name, count, self.config.image_size, self.config.seed, split)

    def build_model(self, num_classes: int) -> nn.Module:
        """A fresh head model (`--model`, initialized as the config says) or trained weights."""
        config = self.config
        model = create_model(config.model, num_classes=num_classes, weights=config.weights)
        if not isinstance(model, self.model_type):
            raise ConfigError(f"{config.model or config.weights} is not a {self.name} model; "
                              f"--task {self.name} trains {', '.join(TASK_MODELS[self.name])} "
                              "(or another depth multiplier)")  # fmt: skip
        if model.num_classes != num_classes:
            raise ConfigError(f"{config.weights} has {model.num_classes} classes, the data "
                              f"{num_classes}")  # fmt: skip
        if config.weights is None:
            self.initialize(model)
        self.spec = model.spec  # the loss's settings
        return self.prepared(model)

    def initialize(self, model: nn.Module) -> None:
        """A fresh model's task-specific initial values (none by default)."""

    def metadata(self) -> dict[str, Any]:
        """Saved with the trained weights: the head model's family (its backbone is the
        variant)."""
        return {"head": next(name for name, spec in HEADS.items() if spec == self.spec)}

    def outputs(self, model: nn.Module) -> nn.Module:
        return RawOutputs(model)


class Detection(HeadTask):
    name = "detection"
    model_type = SSDLite
    labels = SHAPES

    def initialize(self, model: nn.Module) -> None:
        """The config's class_prediction_bias_init: every class starts unlikely (sigmoid -4.6
        = 1%), so the focal loss of the many background anchors starts small."""
        with torch.no_grad():
            for head in model.class_heads:
                head[-1].conv.bias.fill_(model.spec.class_bias_init)

    def loss(self, raw: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
             training: bool) -> LossTerms:  # fmt: skip
        raw = {k: v.float() for k, v in raw.items()}
        spec = self.spec
        return ssd_loss(raw, target["boxes"], target["classes"], spec.box_scales, spec.loss)


class Segmentation(HeadTask):
    name = "segmentation"
    model_type = LRASPP
    labels = ("background", *SHAPES)

    def loss(self, raw: dict[str, torch.Tensor], labels: torch.Tensor,
             training: bool) -> LossTerms:  # fmt: skip
        return segmentation_loss(raw["decoder_logits"].float(), labels, self.spec.ignore_label)


def make_task(config: TrainConfig) -> Classification | Detection | Segmentation:
    tasks = {"classification": Classification, "detection": Detection,
             "segmentation": Segmentation}  # fmt: skip
    return tasks[config.task](config)
