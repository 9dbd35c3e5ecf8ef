"""Exponential moving average of the weights, as slim's `--moving_average_decay` keeps it.

Slim wraps `tf.train.ExponentialMovingAverage(decay, num_updates=global_step)` around every
model variable, BatchNorm moving statistics included, so the effective decay early in training
is `min(decay, (1 + step) / (10 + step))`; evaluation and the released checkpoints use the
averages. The same is done here for all floating-point parameters and buffers.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """A frozen copy of the model whose state follows the trained one."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup, self.updates = decay, warmup, 0

    def current_decay(self) -> float:
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        ema_state = self.module.state_dict()
        floats_ema, floats_new = [], []
        for name, value in model.state_dict().items():
            target = ema_state[name]
            if target.is_floating_point():
                floats_ema.append(target)
                floats_new.append(value.detach())
            else:
                target.copy_(value)
        torch._foreach_lerp_(floats_ema, floats_new, 1.0 - decay)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
