"""Validation during training, and the frozen-backbone shortcut.

`evaluate_model` gives loss and top-1 on the validation images (each rank its share, summed
over ranks). With a frozen backbone and no augmentation the backbone's features are the same
every epoch, so `cache_features` computes them once and training runs only the classifier on
them (`FrozenFeatures`, `ClassifierOnly`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from mobilenetv3.core.model import MobileNet
from mobilenetv3.data.datasets import DatasetError, ImageDataset
from mobilenetv3.train.config import TrainConfig
from mobilenetv3.train.data import list_image_folder
from mobilenetv3.train.distributed import DistInfo, all_reduce_sum, gather_objects


def val_samples(root: str, classes: list[str]) -> list[tuple[str, int]]:
    """Validation images labelled by the training class of their folder name."""
    samples, val_classes = list_image_folder(root)
    unknown = sorted(set(val_classes) - set(classes))
    if unknown:
        raise DatasetError(f"validation classes not in the training data: {unknown[:5]}")
    index = {name: classes.index(name) for name in val_classes}
    return [(path, index[val_classes[label]]) for path, label in samples]


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
def evaluate_model(model: nn.Module, val_set: Dataset, config: TrainConfig,
                   info: DistInfo) -> dict[str, Any]:  # fmt: skip
    """Loss and top-1 of `model` on this rank's `val_set`, summed over ranks."""
    was_training = model.training
    model.eval()
    sums = [0.0, 0.0, 0.0]
    for images, labels, _ in DataLoader(val_set, config.batch_size,
                                        num_workers=config.num_workers):  # fmt: skip
        images, labels = images.to(info.device), labels.to(info.device)
        with torch.autocast(info.device.type, torch.bfloat16, enabled=config.amp == "bf16"):
            logits = model(images).float()
        sums[0] += F.cross_entropy(logits, labels, reduction="sum").item()
        sums[1] += (logits.argmax(1) == labels).sum().item()
        sums[2] += labels.numel()
    model.train(was_training)
    loss, correct, count = all_reduce_sum(sums, info)
    return {"val_loss": loss / max(count, 1), "val_accuracy": correct / max(count, 1),
            "val_images": int(count)}  # fmt: skip
