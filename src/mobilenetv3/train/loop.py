"""The training loop: one process or one rank of `torchrun`, resumable at any step.

Run layout (RUN_DIR): config.yaml (the resolved config), log.jsonl (one JSON record per log
interval and per epoch), checkpoints/last.pt (+ last.prev.pt), model.safetensors (the EMA
weights when an EMA is kept, with labels and eval preprocessing), curves.png.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from mobilenetv3.train.config import TrainConfig
from mobilenetv3.train.curves import plot_curves
from mobilenetv3.train.data import to_device
from mobilenetv3.train.distributed import all_reduce_sum, barrier, cleanup, init_distributed
from mobilenetv3.train.optim import base_lr
from mobilenetv3.train.resume import Resumable
from mobilenetv3.train.setup import RunSetup
from mobilenetv3.train.validation import ClassifierOnly, evaluate_model
from mobilenetv3.weights.safetensors_io import save_safetensors


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path
    step: int
    metrics: dict[str, Any] = field(default_factory=dict)


def train(config: TrainConfig, resume: bool | str | Path = False) -> TrainResult:
    """Train as `config` says (joining torchrun's process group if launched by it)."""
    from mobilenetv3.runtime.auto import resolve_device

    config.validate()
    info = init_distributed(resolve_device(config.device))
    try:
        return Trainer(config, info).run(resume)
    finally:
        cleanup()


def set_train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    """Train mode, except frozen parts: their BatchNorm keeps its statistics (eval mode)."""
    model.train()
    for part in frozen:
        part.eval()


class Trainer(RunSetup, Resumable):
    """One run: built by `RunSetup`, checkpointed by `Resumable`; `run()` trains from scratch
    or from a checkpoint, step by step and epoch by epoch."""

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

    def train_step(self, images: torch.Tensor, target: Any) -> None:
        dev = self.info.device
        images, target = images.to(dev, non_blocking=True), to_device(target, dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.c.amp == "bf16"):
            outputs = self.ddp(images)
        terms = self.task.loss(outputs, target, training=True)
        # the divisor of every process's batch together: N processes' averaged gradients are
        # those of one process with the N batches
        normalizer = max(all_reduce_sum([terms.normalizer], self.info)[0], 1.0)
        loss = terms.total * (self.info.world_size / normalizer)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.ema:
            self.ema.update(self.model)
        n = images.shape[0]
        self.meters = [self.meters[0] + loss.item() * n, self.meters[1] + n,
                       self.meters[2] + terms.correct, self.meters[3] + terms.count]  # fmt: skip
        self.step += 1
        self.batch += 1

    def _done(self) -> bool:
        return self.c.max_steps is not None and self.step >= self.c.max_steps

    def train_epoch(self) -> None:
        set_train_mode(self.model, self.task.frozen(self.model) if self.c.freeze_backbone else [])
        bar, tick, tick_step = self._progress(), time.perf_counter(), self.step
        for images, labels, _ in self._loader():
            self.train_step(images, labels)
            if bar is not None:  # the epoch's running mean loss on this process
                bar.set_postfix(loss=f"{self.meters[0] / max(self.meters[1], 1):.4f}")
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

    def _means(self) -> dict[str, float]:
        """The epoch's mean loss (per input, over every process) and accuracy so far."""
        loss, inputs, correct, count = all_reduce_sum(self.meters, self.info)
        return {"loss": loss / max(inputs, 1),
                "accuracy": correct / max(count, 1)}

    def _log_interval(self, seconds: float, steps: int) -> None:
        self.log({"event": "train", "epoch": self.epoch, "step": self.step, **self._means(),
                  "lr": self.optimizer.param_groups[0]["lr"],
                  "images_per_s": steps * self.global_batch / max(seconds, 1e-9)})  # fmt: skip

    def end_epoch(self, seconds: float) -> dict[str, Any]:
        record = {"event": "epoch", "epoch": self.epoch, "step": self.step, **self._means(),
                  "lr": self.optimizer.param_groups[0]["lr"], "seconds": seconds,
                  "partial": self.batch < self.steps_per_epoch}  # fmt: skip
        if self.batch >= self.steps_per_epoch:
            self.epoch, self.batch, self.meters = self.epoch + 1, 0, [0.0] * 4
        self.save()
        if self.val_set is not None:
            model = self.ema.module if self.ema else self.model
            module = ClassifierOnly(model) if self.cached else self.task.outputs(model)
            record.update(evaluate_model(module, self.task, self.val_set, self.info))
        self.log(record)
        return record

    # -- run -------------------------------------------------------------------------------------

    def run(self, resume: bool | str | Path = False) -> TrainResult:
        self.prepare_run_dir(resume)
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
                                                     **self.task.metadata()})
            if self.c.plot:
                plot_curves(self.run_dir / "log.jsonl", self.run_dir / "curves.png")
        barrier(self.info)
        return TrainResult(self.run_dir, path, self.step, metrics)
