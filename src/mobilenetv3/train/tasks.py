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
from mobilenetv3.data.cityscapes import TRAIN_NAMES, pair_masks
from mobilenetv3.data.coco import CocoSet, read_coco
from mobilenetv3.data.datasets import DatasetError, ImageDataset
from mobilenetv3.factory import create_model
from mobilenetv3.heads import LRASPP, SSDLite
from mobilenetv3.heads.losses import LossTerms, segmentation_loss, ssd_loss
from mobilenetv3.heads.specs import HEADS, TASK_MODELS, SSDLiteSpec
from mobilenetv3.train.config import ConfigError, TrainConfig
from mobilenetv3.train.data import TrainTransform, eval_preset, list_image_folder, val_samples
from mobilenetv3.train.distributed import DistInfo
from mobilenetv3.train.head_data import CocoDetection, MaskFolder
from mobilenetv3.train.head_metrics import CocoMAP, MeanIoU
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

    def val_metric(self, module: nn.Module) -> CocoMAP | MeanIoU | None:
        """The accumulator of the task's own validation metric for `module` (none by
        default: the loss and accuracy only)."""
        return None

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
    """SSDLite or LR-ASPP on synthetic shapes (`--data synthetic:N`) or on real data (`--data`
    a folder of images, labelled by the task's `input_flag`)."""

    labels: tuple[str, ...] = ()
    model_type: type[nn.Module] = nn.Module
    input_flag = ""  # the config key labelling --data: annotations or masks
    input_help = ""
    class_names: list[str] = []  # the data's, set by `data`

    def data(self, info: DistInfo) -> TaskData:
        config = self.config
        folders = {synthetic_count(d) is None for d in (config.data, config.val_data) if d}
        if len(folders) > 1:
            raise DatasetError(f"--data {config.data} and --val-data {config.val_data}: both "
                               "synthetic:N or both folders")  # fmt: skip
        data = self.real_data(info) if folders == {True} else self.synthetic_data(info)
        self.class_names = data.labels
        return data

    def synthetic_data(self, info: DistInfo) -> TaskData:
        config = self.config
        val_set = None
        if config.val_data:
            val_set = _shard(self._synthetic(config.val_data, split=1), info)
        return TaskData(self._synthetic(config.data, split=0), val_set, list(self.labels), None)

    def _synthetic(self, data: str, split: int) -> SyntheticShapes:
        return SyntheticShapes(self.name, synthetic_count(data), self.config.image_size,
                               self.config.seed, split)  # fmt: skip

    def labelled(self, val: bool = False) -> tuple[str, str]:
        """(images folder, its labels) of the training or validation data; both are needed."""
        prefix = "val_" if val else ""
        images, labels = (getattr(self.config, prefix + k) for k in ("data", self.input_flag))
        if not labels:
            flag = f"--{prefix}{self.input_flag}".replace("_", "-")
            raise DatasetError(f"--{prefix.replace('_', '-')}data {images}: {self.name} on a "
                               f"folder needs {flag} ({self.input_help}), or train on "
                               "synthetic:N images")  # fmt: skip
        return images, labels

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
    input_flag = "annotations"
    input_help = "a COCO instances_*.json naming the folder's images"
    val_coco: CocoSet | None = None

    def real_data(self, info: DistInfo) -> TaskData:
        """COCO files: class k is category id k (as `evaluate` maps them), the classes are
        1..the largest id (COCO's 90 with its 10 unused ids, as the zoo detectors have)."""
        c = self.config
        coco = read_coco(*reversed(self.labelled()), c.num_classes or SSDLiteSpec.num_classes)
        if not coco.names:
            raise DatasetError(f"{c.annotations}: no categories; a detector needs classes")
        labels = [coco.names.get(k, f"class {k}") for k in range(1, max(coco.names) + 1)]
        val_set = None
        if c.val_data:
            self.val_coco = read_coco(*reversed(self.labelled(val=True)),
                                      c.num_classes or len(labels))  # fmt: skip
            val_set = _shard(CocoDetection(self.val_coco, c.image_size, c.seed, False), info)
        return TaskData(CocoDetection(coco, c.image_size, c.seed, c.flip), val_set, labels, None)

    def val_metric(self, module: nn.Module) -> CocoMAP | None:
        """COCO mAP on real validation data (synthetic shapes have no COCO file)."""
        return CocoMAP(module.model.postprocess, self.val_coco) if self.val_coco else None

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
    input_flag = "masks"
    input_help = "a folder of Cityscapes label-id masks, or of train ids with --train-ids"

    def real_data(self, info: DistInfo) -> TaskData:
        """Cityscapes masks (`evaluate`'s pairing), 19 train ids; DeepLab's training crops of
        image_size, validation on whole images."""
        c = self.config
        low, high = c.scale_range
        if not 0 < low <= high:
            raise ConfigError(f"scale_range {c.scale_range}: give [low, high], 0 < low <= high")
        pairs = pair_masks(*self.labelled(), c.train_ids)
        train_set = MaskFolder(pairs, c.train_ids, c.seed, crop=c.image_size,
                               scale_range=(low, high), flip=c.flip)  # fmt: skip
        val_set = None
        if c.val_data:
            pairs = pair_masks(*self.labelled(val=True), c.train_ids)
            val_set = _shard(MaskFolder(pairs, c.train_ids, c.seed), info)
        return TaskData(train_set, val_set, list(TRAIN_NAMES), None)

    def val_metric(self, module: nn.Module) -> MeanIoU:
        """mIoU over the model's classes (synthetic or Cityscapes)."""
        classes = module.model.num_classes
        names = [*self.class_names, *(f"class {k}" for k in range(classes))][:classes]
        return MeanIoU(names)

    def loss(self, raw: dict[str, torch.Tensor], labels: torch.Tensor,
             training: bool) -> LossTerms:  # fmt: skip
        return segmentation_loss(raw["decoder_logits"].float(), labels, self.spec.ignore_label)


def make_task(config: TrainConfig) -> Classification | Detection | Segmentation:
    tasks = {"classification": Classification, "detection": Detection,
             "segmentation": Segmentation}  # fmt: skip
    return tasks[config.task](config)
