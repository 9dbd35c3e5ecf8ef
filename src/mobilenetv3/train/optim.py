"""Optimisers, weight-decay parameter groups and the learning-rate schedule.

TF's RMSProp is not torch's: `tf.compat.v1.train.RMSPropOptimizer` (what slim and the TPU
trainers ran) computes

    ms  <- decay * ms + (1 - decay) * g^2          (ms starts at 1.0, not 0)
    mom <- momentum * mom + lr * g / sqrt(ms + epsilon)
    w   <- w - mom

while `torch.optim.RMSprop` starts the square average at 0, divides by `sqrt(v) + eps` (epsilon
outside the root) and multiplies by lr after the momentum buffer. With slim's epsilon 0.002 the
TF denominator never falls below sqrt(0.002) ~ 0.045; torch's `eps=0.002` would allow a 20x
larger step for rare features, and its zero-initialised average makes the first steps ~3x
larger (1/sqrt(0.1)). `TFRMSprop` implements the TF update exactly; `optimizer: rmsprop` uses
torch's with eps = sqrt(epsilon), the closest single-constant mapping.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mobilenetv3.train.config import TrainConfig


class TFRMSprop(torch.optim.Optimizer):
    """TF1 `RMSPropOptimizer` (centered=False); `weight_decay` adds `wd * w` to the gradient, as
    slim's L2 regulariser `wd * sum(w^2) / 2` in the loss does."""

    def __init__(self, params, lr: float, decay: float = 0.9, momentum: float = 0.9,
                 eps: float = 1e-10, weight_decay: float = 0.0) -> None:  # fmt: skip
        defaults = {"lr": lr, "decay": decay, "momentum": momentum, "eps": eps,
                    "weight_decay": weight_decay}  # fmt: skip
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params)
        return loss

    def _update(self, group: dict, params: list[torch.Tensor]) -> None:
        grads = [p.grad for p in params]
        if group["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        for p in params:
            if not self.state[p]:
                self.state[p]["ms"] = torch.ones_like(p)
                self.state[p]["mom"] = torch.zeros_like(p)
        ms = [self.state[p]["ms"] for p in params]
        mom = [self.state[p]["mom"] for p in params]
        torch._foreach_mul_(ms, group["decay"])
        torch._foreach_addcmul_(ms, grads, grads, value=1.0 - group["decay"])
        denom = torch._foreach_add(ms, group["eps"])
        torch._foreach_sqrt_(denom)
        torch._foreach_mul_(mom, group["momentum"])
        torch._foreach_addcdiv_(mom, grads, denom, value=group["lr"])
        torch._foreach_sub_(params, mom)


def param_groups(model: nn.Module, weight_decay: float, regularize_depthwise: bool) -> list[dict]:
    """Decay conv and linear weights only, as slim's arg scopes do: not BatchNorm, not biases,
    and not depthwise kernels unless asked (mobilenet `training_scope(regularize_depthwise=
    False)`). Frozen parameters are left out."""
    decay, rest = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            weight = name == "weight" and isinstance(module, nn.Conv2d | nn.Linear)
            depthwise = isinstance(module, nn.Conv2d) and module.groups > 1
            (decay if weight and (regularize_depthwise or not depthwise) else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def base_lr(config: TrainConfig, global_batch: int) -> float:
    """`lr` is given for `lr_reference_batch` images per step; scale linearly to ours."""
    if not config.lr_reference_batch:
        return config.lr
    return config.lr * global_batch / config.lr_reference_batch


def build_optimizer(
    config: TrainConfig, model: nn.Module, global_batch: int
) -> torch.optim.Optimizer:
    groups = param_groups(model, config.weight_decay, config.regularize_depthwise)
    lr, c = base_lr(config, global_batch), config
    if c.optimizer == "rmsprop_tf":
        return TFRMSprop(groups, lr, decay=c.rmsprop_decay, momentum=c.momentum, eps=c.eps)
    if c.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr, alpha=c.rmsprop_decay, momentum=c.momentum,
                                   eps=math.sqrt(c.eps))  # fmt: skip
    if c.optimizer == "sgd":
        return torch.optim.SGD(groups, lr, momentum=c.momentum, nesterov=c.nesterov)
    return torch.optim.AdamW(groups, lr, betas=tuple(c.betas), eps=c.eps)


class LRSchedule:
    """Multiplier of the base lr at a step: linear warm-up (from warmup_start), then exponential
    (slim's `exponential_decay`, counted from step 0 as the TPU trainers do), cosine decay or
    poly (DeepLab's `polynomial_decay` to min_lr over the whole run)."""

    def __init__(self, config: TrainConfig, steps_per_epoch: int) -> None:
        self.c, self.steps_per_epoch = config, max(1, steps_per_epoch)
        self.floor = config.min_lr / config.lr if config.lr else 0.0

    def __call__(self, step: int) -> float:
        c, epoch = self.c, step / self.steps_per_epoch
        if epoch < c.warmup_epochs:
            ramp = min(1.0, (step + 1) / (c.warmup_epochs * self.steps_per_epoch))
            return c.warmup_start + (1 - c.warmup_start) * ramp
        if c.schedule == "exponential":
            periods = epoch / c.decay_epochs
            periods = math.floor(periods) if c.staircase else periods
            return max(self.floor, c.decay_factor**periods)
        if c.schedule == "cosine":
            span = max(c.epochs - c.warmup_epochs, 1e-9)
            t = min(1.0, (epoch - c.warmup_epochs) / span)
            return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * t))
        if c.schedule == "poly":
            t = min(1.0, epoch / c.epochs)
            return self.floor + (1 - self.floor) * (1 - t) ** c.poly_power
        return 1.0


def build_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    schedule = LRSchedule(config, steps_per_epoch)
    # A plain function, so that the scheduler's state_dict holds numbers only, not the config.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step))
