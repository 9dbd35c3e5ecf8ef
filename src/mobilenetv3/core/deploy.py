"""The deployment graph: a model with every shape decision made for one image size.

`deploy_graph(model, image_size)` copies a model and replaces its shape-dependent layers:
BatchNorm folded into the conv weights and bias (`fold_batch_norm`), TF "SAME" padding as a
fixed Pad only where slim pads asymmetrically (`StaticConv`), `reduce_to_1x1` as a fixed pool,
native hard-swish, and the squeeze-excite gate in the form the exporters map onto one op
(`SlimGate`). The torch engine runs this graph (25% faster than the training graph at batch
1); the ONNX exporter traces it; the PyTorch int8 quantizer makes it FX-traceable.

The squeeze-excite gate is slim's `relu6(x + 3) * 0.16667`, which saturates at 6 * 0.16667 =
1.00002. HardSigmoid(alpha=0.16667, beta=0.50001) saturates at 1: with the official Small
weights that moved the logits by 6e-4 (measured), over the 1e-4 budget. So the gate is
`HardSigmoid(alpha=0.16667/1.00002, beta=0.50001/1.00002) * 1.00002` (the alpha and beta are
1/6 and 0.5 to float precision): one native op and a Mul on the [N, C, 1, 1] gate.

The two autograd Functions carry a `symbolic` method: how `torch.onnx.export` writes them as
one native op each. It is plain data for the tracer and imports nothing from ONNX.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mobilenetv3.core import layers

# relu6(x + 3) * a == 6a * clamp((x + 3) / 6, 0, 1) with a = 0.16667, so 6a = 1.00002
GATE_SCALE = 6 * 0.16667
GATE_ALPHA, GATE_BETA = 0.16667 / GATE_SCALE, 3 * 0.16667 / GATE_SCALE


def fold_batch_norm(layer: layers.ConvBNAct) -> tuple[np.ndarray, np.ndarray]:
    """Conv weights (OIHW) and bias with the eval-mode BatchNorm folded in, as TFLite stores
    them; computed in float64 so folding adds no rounding of its own."""

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float64)

    weight = arr(layer.conv.weight)
    bias = arr(layer.conv.bias) if layer.conv.bias is not None else np.zeros(weight.shape[0])
    bn = layer.bn
    if isinstance(bn, nn.BatchNorm2d):
        scale = arr(bn.weight) / np.sqrt(arr(bn.running_var) + bn.eps)
        weight = weight * scale[:, None, None, None]
        bias = (bias - arr(bn.running_mean)) * scale + arr(bn.bias)
    return weight.astype(np.float32), bias.astype(np.float32)


def input_sizes(model: nn.Module, image_size: tuple[int, int]) -> dict[nn.Module, tuple]:
    """The NCHW input shape every submodule sees at `image_size`: static padding and pooling
    windows are fixed from it."""
    shapes: dict[nn.Module, tuple] = {}

    def hook(module: nn.Module, args: tuple, _: Any) -> None:
        shapes.setdefault(module, tuple(args[0].shape))

    hooks = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *image_size))
    finally:
        for h in hooks:
            h.remove()
    return shapes


class _GateFunction(torch.autograd.Function):
    """The saturating part of the SE gate, exported as one native ONNX HardSigmoid."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return torch.clamp(x * GATE_ALPHA + GATE_BETA, 0.0, 1.0)

    @staticmethod
    def symbolic(g: object, x: object) -> object:
        return g.op("HardSigmoid", x, alpha_f=GATE_ALPHA, beta_f=GATE_BETA)


class _PadFunction(torch.autograd.Function):
    """Zero padding exported as one Pad op with constant pads (F.pad traces into a
    Reshape/Slice/Transpose chain building the pads at run time)."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor, pad: tuple[int, ...]) -> torch.Tensor:  # noqa: ARG004
        return F.pad(x, pad)

    @staticmethod
    def symbolic(g: object, x: object, pad: tuple[int, ...]) -> object:
        left, right, top, bottom = pad
        pads = torch.tensor([0, 0, top, left, 0, 0, bottom, right], dtype=torch.int64)
        return g.op("Pad", x, g.op("Constant", value_t=pads), mode_s="constant")


class SlimGate(nn.Module):
    """Slim's gate `relu6(x + 3) * 0.16667` as HardSigmoid times its 1.00002 ceiling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GateFunction.apply(x) * GATE_SCALE


class StaticConv(nn.Module):
    """ConvBNAct at a known input size: a fixed Pad (only where slim pads asymmetrically), the
    conv with BatchNorm folded into weights and bias, the activation."""

    def __init__(self, layer: layers.ConvBNAct, in_shape: tuple) -> None:
        super().__init__()
        self.pad: tuple[int, ...] = ()
        if layer.stride > 1:
            top, bottom = layers.same_padding(in_shape[-2], layer.kernel, layer.stride)
            left, right = layers.same_padding(in_shape[-1], layer.kernel, layer.stride)
            self.pad = (left, right, top, bottom) if top or bottom or left or right else ()
        self.conv = copy.deepcopy(layer.conv)
        weight, bias = fold_batch_norm(layer)
        self.conv.weight = nn.Parameter(torch.from_numpy(weight), requires_grad=False)
        self.conv.bias = nn.Parameter(torch.from_numpy(bias), requires_grad=False)
        self.act = _deploy_activation(layer.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = _PadFunction.apply(x, self.pad)
        return self.act(self.conv(x))


def _deploy_activation(act: nn.Module) -> nn.Module:
    """Slim's activations as modules that map onto single native ops."""
    if isinstance(act, layers.HardSwish):
        return nn.Hardswish()
    if isinstance(act, layers.SlimHardSigmoid):
        return SlimGate()
    return act


def _static_pool(layer: layers.ReduceTo1x1, in_shape: tuple) -> nn.Module:
    height, width = in_shape[-2:]
    if height == width:
        return nn.AdaptiveAvgPool2d(1)
    return nn.AvgPool2d((min(layer.default_size, height), min(layer.default_size, width)), 1)


def deploy_graph(model: nn.Module, image_size: tuple[int, int], softmax: bool = False) -> nn.Module:
    """A copy of `model` with every shape-dependent layer made static for `image_size`."""
    model = copy.deepcopy(model).eval()
    shapes = input_sizes(model, image_size)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, layers.ConvBNAct):
                setattr(parent, name, StaticConv(child, shapes[child]))
            elif isinstance(child, layers.ReduceTo1x1):
                setattr(parent, name, _static_pool(child, shapes[child]))
            elif isinstance(child, layers.SlimHardSigmoid | layers.HardSwish):
                setattr(parent, name, _deploy_activation(child))
    return nn.Sequential(model, nn.Softmax(-1)) if softmax else model


class KeepdimPool(nn.Module):
    """A deploy graph whose final mean keeps rank 4 ([N, C, 1, 1], then flattened): the form
    XNNPACK delegates and PT2E quantizes (both want a 4-D mean); the same numbers."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.features, self.head, self.classifier = graph.features, graph.head, graph.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.head(self.features(x)).mean((2, 3), keepdim=True)
        return self.classifier(torch.flatten(pooled, 1))
