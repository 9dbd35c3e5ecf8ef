"""Checkpointing a run and resuming it (the `Resumable` part of `loop.Trainer`).

A checkpoint holds the model, EMA, optimiser, scheduler, the position in the epoch and every
rank's RNG state and meters, so a resumed run continues bitwise identically; a run directory
that already holds a run is resumed only on request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mobilenetv3.train import checkpoint as ckpt
from mobilenetv3.train.config import ConfigError, save_config
from mobilenetv3.train.distributed import barrier, gather_objects


class Resumable:
    """Save and restore of a trainer's state; the trainer provides `c`, `info`, `run_dir`,
    `ckpt_dir`, `model`, `ema`, `optimizer`, `scheduler`, `epoch`, `batch`, `step`, `meters`."""

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

    def prepare_run_dir(self, resume: bool | str | Path) -> None:
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
