"""Exact multiply-accumulates and parameters, by the convention of the README's table.

MACs count every conv, depthwise conv, squeeze-excite 1x1 conv, the 1x1 head conv and the
logits layer (weights x output positions), and every conv of a detection/segmentation head (SSD's
extra layers and box/class predictors; LR-ASPP's aspp0, image-pooling, projection and decoder
convs); BatchNorm, activations, pooling, resizing, the SE multiply and residual adds are free.
Counted from a run (a head model's `forward_raw`: NMS and anchors have no MACs), so any spec at
any input size is covered; a model built on the meta device is counted without computing.
"""

from __future__ import annotations

import torch
from torch import nn


def count_macs(model: nn.Module, image_size: tuple[int, int] | int = (224, 224)) -> int:
    """Multiply-accumulates of one image at `image_size` (H, W)."""
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    total = 0

    def conv_hook(module: nn.Conv2d, _: tuple, out: torch.Tensor) -> None:
        nonlocal total
        height, width = module.kernel_size
        per_output = module.in_channels // module.groups * height * width
        total += out[0].numel() * per_output

    def linear_hook(module: nn.Linear, _: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel() * module.in_features

    hooks = [
        m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            device = next(model.parameters()).device
            getattr(model, "forward_raw", model)(torch.zeros(1, 3, *size, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return total


def count_params(model: nn.Module) -> int:
    """Trainable parameters (slim's trainable variables: weights, biases, BN gamma and beta)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
