"""What one training run is made of: its data, model, EMA, optimiser and schedule.

`RunSetup` builds them from the config and its task (`tasks`: classification, detection,
segmentation); `loop.Trainer` extends it with the steps and epochs that use them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from mobilenetv3.data.datasets import DatasetError
from mobilenetv3.train.config import ConfigError, TrainConfig
from mobilenetv3.train.data import ResumableSampler
from mobilenetv3.train.distributed import DistInfo, convert_sync_batchnorm, seed_everything
from mobilenetv3.train.ema import ModelEMA
from mobilenetv3.train.optim import build_optimizer, build_scheduler
from mobilenetv3.train.tasks import make_task
from mobilenetv3.train.validation import ClassifierOnly, cache_features


class RunSetup:
    """The data, model, EMA, optimiser and schedule of one run, built from its config."""

    def __init__(self, config: TrainConfig, info: DistInfo) -> None:
        self.c, self.info = config, info
        self.task = make_task(config)
        self.run_dir = Path(config.output)
        self.ckpt_dir = self.run_dir / "checkpoints"
        data = self.task.data(info)
        self.classes, self.preset = data.labels, data.preset
        self.num_classes = config.num_classes or len(self.classes)
        if self.num_classes < len(self.classes):
            raise ConfigError(f"num_classes {self.num_classes} < {len(self.classes)} classes "
                              "in the data")  # fmt: skip
        seed_everything(config.seed, info.rank)
        self._build_data(data.train_set, data.val_set)
        self._build_model()
        self._wrap_model()
        self.epoch, self.batch, self.step = 0, 0, 0
        self.meters = [0.0, 0.0, 0.0, 0.0]  # loss x inputs, inputs, correct, counted (this rank)

    def _build_data(self, train_set: Dataset, val_set: Dataset | None) -> None:
        c, info = self.c, self.info
        self.train_set, self.val_set = train_set, val_set
        self.sampler = ResumableSampler(self.train_set, info.world_size, info.rank, c.seed)
        self.steps_per_epoch = self.sampler.num_samples // c.batch_size
        if self.steps_per_epoch == 0:
            raise DatasetError(f"{len(train_set)} images over {info.world_size} process(es) do "
                               f"not fill one batch of {c.batch_size}")  # fmt: skip

    def _build_model(self) -> None:
        c, info = self.c, self.info
        self.model = self.task.build_model(self.num_classes).to(info.device)
        if c.qat:
            from mobilenetv3.quantize.qat import prepare_qat

            self.float_model = self.model  # its variant and classes label the int8 file
            self.model = prepare_qat(self.model, self._example()).to(info.device)
        self.ema = ModelEMA(self.model, c.ema_decay, c.ema_warmup) if c.ema_decay > 0 else None
        if c.sync_bn and info.distributed:
            convert_sync_batchnorm(self.model, info.device)

    def _wrap_model(self) -> None:
        """The module a step runs (under DDP when distributed), its optimiser and schedule."""
        c, info = self.c, self.info
        self.ddp: nn.Module = self.task.outputs(self.model)
        self.cached = False
        if c.task == "classification" and c.freeze_backbone and c.augment == "none" and (
                c.cache_features):  # fmt: skip
            # Why: a frozen backbone on unaugmented images gives the same features every epoch.
            self.train_set, self.val_set = cache_features(self.model, self.train_set,
                                                          self.val_set, c, info)  # fmt: skip
            self.ddp = ClassifierOnly(self.model)
            self.cached = True
        if info.distributed:
            ids = [info.local_rank] if info.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.ddp, device_ids=ids)
        self.global_batch = c.batch_size * info.world_size
        self.optimizer = build_optimizer(c, self.model, self.global_batch)
        self.scheduler = build_scheduler(c, self.optimizer, self.steps_per_epoch)

    def _example(self) -> np.ndarray:
        return np.zeros((2, 3, *self.preset.image_size), np.float32)
