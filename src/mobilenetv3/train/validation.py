"""Validation during training, and the frozen-backbone shortcut.

`evaluate_model` gives the task's loss and accuracy on the validation data (each rank its
share, summed over ranks). With a frozen backbone and no augmentation a classifier's backbone
features are the same every epoch, so `cache_features` computes them once and training runs
only the classifier on them (`FrozenFeatures`, `ClassifierOnly`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from mobilenetv3.core.model import MobileNet
from mobilenetv3.data.datasets import ImageDataset
from mobilenetv3.train.config import TrainConfig
from mobilenetv3.train.data import to_device
from mobilenetv3.train.distributed import DistInfo, all_reduce_sum, gather_objects
from mobilenetv3.train.tasks import Task


class FrozenFeatures(Dataset):
    """Stored pre-logits features of a frozen backbone, indexed like the image dataset."""

    def __init__(self, features: torch.Tensor, labels: list[int]) -> None:
        self.features, self.labels = features, labels

    def set_epoch(self, epoch: int) -> None:
        """Nothing is random: the features were computed without augmentation."""

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return self.features[index], self.labels[index], index


class ClassifierOnly(nn.Module):
    """The trainable part of a frozen-backbone model: dropout + classifier on stored features."""

    def __init__(self, model: MobileNet) -> None:
        super().__init__()
        self.dropout, self.classifier = model.dropout, model.classifier

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))


@torch.no_grad()
def backbone_features(model: MobileNet, dataset: ImageDataset, info: DistInfo,
                      batch_size: int, num_workers: int) -> torch.Tensor:  # fmt: skip
    """Pre-logits features of every image: each rank computes its share, then all gather."""
    model.eval()
    shard = Subset(dataset, range(info.rank, len(dataset), info.world_size))
    parts = [model.forward_head(model.forward_features(x.to(info.device)), pre_logits=True).cpu()
             for x, *_ in DataLoader(shard, batch_size, num_workers=num_workers)]  # fmt: skip
    mine = torch.cat(parts)
    shares = gather_objects(mine, info)
    out = torch.empty(len(dataset), mine.shape[1], dtype=mine.dtype)
    for rank, share in enumerate(shares):
        out[rank :: info.world_size] = share
    return out


def cache_features(model: MobileNet, train_set: ImageDataset, val_set: Subset | None,
                   config: TrainConfig, info: DistInfo) -> tuple[Dataset, Subset | None]:
    """The training and validation sets as stored backbone features."""
    images = ImageDataset(train_set.samples, train_set.preprocess)
    feats = backbone_features(model, images, info, config.batch_size, config.num_workers)
    cached_train = FrozenFeatures(feats, [label for _, label in images.samples])
    if val_set is None:
        return cached_train, None
    val = val_set.dataset
    feats = backbone_features(model, val, info, config.batch_size, config.num_workers)
    labels = [label for _, label in val.samples]
    return cached_train, Subset(FrozenFeatures(feats, labels), val_set.indices)


@torch.no_grad()
def evaluate_model(module: nn.Module, task: Task, val_set: Dataset,
                   info: DistInfo) -> dict[str, Any]:  # fmt: skip
    """The task's loss (without label smoothing) and accuracy of `module` on this rank's
    `val_set`, summed over ranks, and the task's own metric where it has one (mAP, mIoU)."""
    config = task.config
    was_training = module.training
    module.eval()
    metric = task.val_metric(module)
    sums = [0.0, 0.0, 0.0, 0.0, 0.0]  # loss, its divisor, correct, counted, inputs
    for images, target, _ in DataLoader(val_set, config.batch_size,
                                        num_workers=config.num_workers):  # fmt: skip
        images, target = images.to(info.device), to_device(target, info.device)
        with torch.autocast(info.device.type, torch.bfloat16, enabled=config.amp == "bf16"):
            outputs = module(images)
            terms = task.loss(outputs, target, training=False)
        if metric is not None:
            metric.add(outputs, target)
        sums = [a + b for a, b in zip(sums, [terms.total.item(), terms.normalizer, terms.correct,
                                             terms.count, images.shape[0]], strict=True)]
    module.train(was_training)
    loss, normalizer, correct, count, inputs = all_reduce_sum(sums, info)
    extra = metric.result(info) if metric is not None else {}
    return {"val_loss": loss / max(normalizer, 1), "val_accuracy": correct / max(count, 1),
            "val_images": int(inputs), **extra}  # fmt: skip
