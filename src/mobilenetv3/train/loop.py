"""The training loop: one process or one rank of `torchrun`, resumable at any step.

Run layout (RUN_DIR): config.yaml (the resolved config), log.jsonl (one JSON record per log
interval and per epoch), checkpoints/last.pt (+ last.prev.pt), model.safetensors (the EMA
weights when an EMA is kept, with labels and eval preprocessing), curves.png.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from mobilenetv3.core.model import MobileNet
from mobilenetv3.factory import create_model
from mobilenetv3.train import checkpoint as ckpt
from mobilenetv3.train.config import ConfigError, TrainConfig, save_config
from mobilenetv3.train.data import (
    DataError,
    ImageFolderDataset,
    ResumableSampler,
    TrainTransform,
    eval_preset,
    list_image_folder,
)
from mobilenetv3.train.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    cleanup,
    convert_sync_batchnorm,
    gather_objects,
    init_distributed,
    seed_everything,
)
from mobilenetv3.train.ema import ModelEMA
from mobilenetv3.train.optim import base_lr, build_optimizer, build_scheduler
from mobilenetv3.weights.safetensors_io import save_safetensors


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path
    step: int
    metrics: dict[str, Any] = field(default_factory=dict)


def train(config: TrainConfig, resume: bool | str | Path = False) -> TrainResult:
    """Train as `config` says (joining torchrun's process group if launched by it)."""
    config.validate()
    info = init_distributed()
    try:
        return Trainer(config, info).run(resume)
    finally:
        cleanup()


# -- model ---------------------------------------------------------------------------------------


def build_model(config: TrainConfig, num_classes: int) -> MobileNet:
    """Fresh or pretrained model with a `num_classes` head, the recipe's dropout and BN momentum."""
    model = create_model(config.model, num_classes=num_classes, weights=config.weights,
                         dropout=config.dropout)  # fmt: skip
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = config.bn_momentum
    if config.freeze_backbone:
        model.features.requires_grad_(False)
        model.head.requires_grad_(False)
    return model


def set_train_mode(model: MobileNet, freeze_backbone: bool) -> None:
    """Train mode, except frozen parts: their BatchNorm keeps its statistics (eval mode)."""
    model.train()
    if freeze_backbone:
        model.features.eval()
        model.head.eval()


# -- data ----------------------------------------------------------------------------------------


def val_samples(root: str, classes: list[str]) -> list[tuple[str, int]]:
    """Validation images labelled by the training class of their folder name."""
    samples, val_classes = list_image_folder(root)
    unknown = sorted(set(val_classes) - set(classes))
    if unknown:
        raise DataError(f"validation classes not in the training data: {unknown[:5]}")
    index = {name: classes.index(name) for name in val_classes}
    return [(path, index[val_classes[label]]) for path, label in samples]


class FrozenFeatures(torch.utils.data.Dataset):
    """Stored pre-logits features of a frozen backbone, indexed like the image dataset."""

    def __init__(self, features: torch.Tensor, labels: list[int]) -> None:
        self.features, self.labels = features, labels

    def set_epoch(self, epoch: int) -> None:
        """Nothing is random: the features were computed without augmentation."""

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.features[index], self.labels[index]


class ClassifierOnly(nn.Module):
    """The trainable part of a frozen-backbone model: dropout + classifier on stored features."""

    def __init__(self, model: MobileNet) -> None:
        super().__init__()
        self.dropout, self.classifier = model.dropout, model.classifier

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))


@torch.no_grad()
def backbone_features(model: MobileNet, dataset: ImageFolderDataset, info: DistInfo,
                      batch_size: int, num_workers: int) -> torch.Tensor:  # fmt: skip
    """Pre-logits features of every image: each rank computes its share, then all gather."""
    model.eval()
    shard = Subset(dataset, range(info.rank, len(dataset), info.world_size))
    parts = [model.forward_head(model.forward_features(x.to(info.device)), pre_logits=True).cpu()
             for x, _ in DataLoader(shard, batch_size, num_workers=num_workers)]  # fmt: skip
    mine = torch.cat(parts)
    shares = gather_objects(mine, info)
    out = torch.empty(len(dataset), mine.shape[1], dtype=mine.dtype)
    for rank, share in enumerate(shares):
        out[rank :: info.world_size] = share
    return out


class Trainer:
    """Holds the state of one run; `run()` trains from scratch or from a checkpoint."""

    def __init__(self, config: TrainConfig, info: DistInfo) -> None:
        self.c, self.info = config, info
        self.run_dir = Path(config.output)
        self.ckpt_dir = self.run_dir / "checkpoints"
        samples, self.classes = list_image_folder(config.data)
        self.num_classes = config.num_classes or len(self.classes)
        if self.num_classes < len(self.classes):
            raise ConfigError(f"num_classes {self.num_classes} < {len(self.classes)} class folders")
        self.preset = eval_preset(config)
        seed_everything(config.seed, info.rank)
        self._build_data(samples)
        self._build_model()
        self._wrap_model()
        self.epoch, self.batch, self.step = 0, 0, 0
        self.meters = [0.0, 0.0, 0.0]  # loss sum, correct, images (this rank, this epoch)

    def _build_data(self, samples: list[tuple[str, int]]) -> None:
        c, info = self.c, self.info
        self.train_set = ImageFolderDataset(samples, TrainTransform(c), self.preset, c.seed)
        self.sampler = ResumableSampler(self.train_set, info.world_size, info.rank, c.seed)
        self.steps_per_epoch = self.sampler.num_samples // c.batch_size
        if self.steps_per_epoch == 0:
            raise DataError(f"{len(samples)} images over {info.world_size} process(es) do not "
                            f"fill one batch of {c.batch_size}")  # fmt: skip
        self.val_set = None
        if c.val_data:
            val = ImageFolderDataset(val_samples(c.val_data, self.classes), None, self.preset)
            self.val_set = Subset(val, range(info.rank, len(val), info.world_size))

    def _build_model(self) -> None:
        c, info = self.c, self.info
        self.model = build_model(c, self.num_classes).to(info.device)
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
        self.ddp: nn.Module = self.model
        self.cached = False
        if c.freeze_backbone and c.augment == "none" and c.cache_features:
            # Why: a frozen backbone on unaugmented images gives the same features every epoch.
            images = ImageFolderDataset(self.train_set.samples, None, self.preset)
            feats = backbone_features(self.model, images, info, c.batch_size, c.num_workers)
            self.train_set = FrozenFeatures(feats, [label for _, label in images.samples])
            self.ddp = ClassifierOnly(self.model)
            self.cached = True
            if self.val_set is not None:
                val = self.val_set.dataset
                feats = backbone_features(self.model, val, info, c.batch_size, c.num_workers)
                labels = [label for _, label in val.samples]
                self.val_set = Subset(FrozenFeatures(feats, labels), self.val_set.indices)
        if info.distributed:
            ids = [info.local_rank] if info.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.ddp, device_ids=ids)
        self.global_batch = c.batch_size * info.world_size
        self.optimizer = build_optimizer(c, self.model, self.global_batch)
        self.scheduler = build_scheduler(c, self.optimizer, self.steps_per_epoch)

    # -- checkpoints -----------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        per_rank = gather_objects({"rng": ckpt.rng_state(), "meters": list(self.meters)}, self.info)
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch, "batch": self.batch, "step": self.step,
            "world_size": self.info.world_size, "ranks": per_rank, "config": self.c.to_dict(),
        }  # fmt: skip

    def save(self) -> None:
        state = self._state()  # collective: every rank takes part
        if self.info.is_main:
            ckpt.save_checkpoint(state, self.ckpt_dir)
        barrier(self.info)

    def restore(self, path: Path) -> None:
        state = ckpt.load_checkpoint(path)
        if state["world_size"] != self.info.world_size:
            raise ckpt.CheckpointError(
                f"{path} was written by {state['world_size']} process(es); "
                f"resume it with the same number, not {self.info.world_size}"
            )
        self.model.load_state_dict(state["model"])
        if self.ema and state["ema"]:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        mine = state["ranks"][self.info.rank]
        self.meters = list(mine["meters"])
        ckpt.set_rng_state(mine["rng"])

    # -- logging ---------------------------------------------------------------------------------

    def log(self, record: dict[str, Any]) -> None:
        if self.info.is_main:
            with open(self.run_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def _progress(self):  # noqa: ANN202 - a tqdm bar or None
        if not (self.info.is_main and self.c.progress):
            return None
        from tqdm import tqdm

        return tqdm(total=self.steps_per_epoch, initial=self.batch, leave=False,
                    desc=f"epoch {self.epoch + 1}/{self.c.epochs}")  # fmt: skip

    # -- training --------------------------------------------------------------------------------

    def _loader(self) -> DataLoader:
        self.train_set.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch)
        self.sampler.skip = self.batch * self.c.batch_size
        # A private generator: creating the iterator must not draw from the global RNG.
        gen = torch.Generator().manual_seed(self.c.seed + self.epoch)
        return DataLoader(self.train_set, self.c.batch_size, sampler=self.sampler, drop_last=True,
                          num_workers=self.c.num_workers, generator=gen,
                          pin_memory=self.info.device.type == "cuda")  # fmt: skip

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        dev = self.info.device
        images, labels = images.to(dev, non_blocking=True), labels.to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.c.amp == "bf16"):
            logits = self.ddp(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.c.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.ema:
            self.ema.update(self.model)
        n = labels.numel()
        correct = (logits.argmax(1) == labels).sum().item()
        self.meters = [self.meters[0] + loss.item() * n, self.meters[1] + correct,
                       self.meters[2] + n]  # fmt: skip
        self.step += 1
        self.batch += 1

    def _done(self) -> bool:
        return self.c.max_steps is not None and self.step >= self.c.max_steps

    def train_epoch(self) -> None:
        set_train_mode(self.model, self.c.freeze_backbone)
        bar, tick, tick_step = self._progress(), time.perf_counter(), self.step
        for images, labels in self._loader():
            self.train_step(images, labels)
            if bar is not None:  # the epoch's running mean loss on this process
                bar.set_postfix(loss=f"{self.meters[0] / max(self.meters[2], 1):.4f}")
                bar.update(1)
            if self.c.log_every and self.step % self.c.log_every == 0:
                self._log_interval(time.perf_counter() - tick, self.step - tick_step)
                tick, tick_step = time.perf_counter(), self.step
            end = self.batch >= self.steps_per_epoch or self._done()  # end_epoch saves then
            if self.c.checkpoint_every and self.step % self.c.checkpoint_every == 0 and not end:
                self.save()
            if self._done():
                break
        if bar is not None:
            bar.close()

    def _log_interval(self, seconds: float, steps: int) -> None:
        loss, correct, count = all_reduce_sum(self.meters, self.info)
        self.log({"event": "train", "epoch": self.epoch, "step": self.step,
                  "loss": loss / max(count, 1), "accuracy": correct / max(count, 1),
                  "lr": self.optimizer.param_groups[0]["lr"],
                  "images_per_s": steps * self.global_batch / max(seconds, 1e-9)})  # fmt: skip

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss and top-1 of the EMA weights (else the trained ones) on the validation set."""
        if self.val_set is None:
            return {}
        model = self.ema.module if self.ema else self.model
        model = ClassifierOnly(model) if self.cached else model
        was_training = model.training
        model.eval()
        sums = [0.0, 0.0, 0.0]
        for images, labels in DataLoader(self.val_set, self.c.batch_size,
                                         num_workers=self.c.num_workers):  # fmt: skip
            images, labels = images.to(self.info.device), labels.to(self.info.device)
            bf16 = self.c.amp == "bf16"
            with torch.autocast(self.info.device.type, torch.bfloat16, enabled=bf16):
                logits = model(images).float()
            sums[0] += F.cross_entropy(logits, labels, reduction="sum").item()
            sums[1] += (logits.argmax(1) == labels).sum().item()
            sums[2] += labels.numel()
        model.train(was_training)
        loss, correct, count = all_reduce_sum(sums, self.info)
        return {"val_loss": loss / max(count, 1), "val_accuracy": correct / max(count, 1),
                "val_images": int(count)}  # fmt: skip

    def end_epoch(self, seconds: float) -> dict[str, Any]:
        loss, correct, count = all_reduce_sum(self.meters, self.info)
        record = {"event": "epoch", "epoch": self.epoch, "step": self.step,
                  "loss": loss / max(count, 1), "accuracy": correct / max(count, 1),
                  "lr": self.optimizer.param_groups[0]["lr"], "seconds": seconds,
                  "partial": self.batch < self.steps_per_epoch}  # fmt: skip
        if self.batch >= self.steps_per_epoch:
            self.epoch, self.batch, self.meters = self.epoch + 1, 0, [0.0, 0.0, 0.0]
        self.save()
        record.update(self.evaluate())
        self.log(record)
        return record

    # -- run -------------------------------------------------------------------------------------

    def _prepare_run_dir(self, resume: bool | str | Path) -> None:
        if resume:
            explicit = None if resume is True else resume
            self.restore(ckpt.find_checkpoint(self.run_dir, explicit))
        elif (self.ckpt_dir / ckpt.LAST).exists():
            raise ConfigError(f"{self.run_dir} already holds a run ({self.ckpt_dir / ckpt.LAST}); "
                              "pass --resume to continue it or choose another --output")
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.c, self.run_dir / "config.yaml")
        barrier(self.info)

    def run(self, resume: bool | str | Path = False) -> TrainResult:
        self._prepare_run_dir(resume)
        self.log({"event": "start", "step": self.step, "world_size": self.info.world_size,
                  "global_batch": self.global_batch, "device": str(self.info.device),
                  "base_lr": base_lr(self.c, self.global_batch),
                  "steps_per_epoch": self.steps_per_epoch})  # fmt: skip
        metrics: dict[str, Any] = {}
        while self.epoch < self.c.epochs and not self._done():
            start = time.perf_counter()
            self.train_epoch()
            metrics = self.end_epoch(time.perf_counter() - start)
        return self.finish(metrics)

    def _example(self) -> np.ndarray:
        return np.zeros((2, 3, *self.preset.image_size), np.float32)

    def finish(self, metrics: dict[str, Any]) -> TrainResult:
        path = self.run_dir / ("model_int8.pt2" if self.c.qat else "model.safetensors")
        if self.info.is_main:
            final = (self.ema.module if self.ema else self.model)
            if self.c.qat:
                from mobilenetv3.quantize.qat import save_qat

                self.float_model.pretrained_info = {"labels": self.classes,
                                                    "preprocess": self.preset.to_dict()}
                save_qat(final, path, self._example(), self.float_model)
            else:
                save_safetensors(final, path, extra={"labels": self.classes,
                                                     "preprocess": self.preset.to_dict()})
            if self.c.plot:
                plot_curves(self.run_dir / "log.jsonl", self.run_dir / "curves.png")
        barrier(self.info)
        return TrainResult(self.run_dir, path, self.step, metrics)


def plot_curves(log_path: Path, png_path: Path) -> Path | None:
    """Loss, accuracy and learning rate against step, if matplotlib is installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    train = [r for r in records if r["event"] in ("train", "epoch") and math.isfinite(r["loss"])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, key in zip(axes, ("loss", "accuracy", "lr"), strict=True):
        for event, style in (("train", "-"), ("epoch", "o")):
            pts = [(r["step"], r[key]) for r in train if r["event"] == event]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label=f"{event} {key}")
        val = [(r["step"], r[f"val_{key}"]) for r in records if f"val_{key}" in r]
        if val:
            ax.plot(*zip(*val, strict=True), "s--", label=f"val {key}")
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
    return png_path
