"""ONNX export: native HardSwish/HardSigmoid, TF "SAME" padding as static Pad ops, BN folded.

The model is first rewritten into an export graph whose every shape decision is made in
Python at the known image size (the slim padding and `reduce_to_1x1` read `x.shape`, which a
tracer would otherwise record as Shape/Gather/Slice chains). The TorchScript exporter
(`dynamo=False`) then gives a graph of only Pad, Conv, Relu/Clip, HardSwish, HardSigmoid,
ReduceMean, GlobalAveragePool, Mul, Add and Gemm in ~1 s; the dynamo exporter gives a
similarly clean graph from the unmodified model but takes ~15 s per variant and cannot emit
the gate's custom HardSigmoid constants without a translation table.

The squeeze-excite gate is slim's `relu6(x + 3) * 0.16667`, which saturates at 6 * 0.16667 =
1.00002. HardSigmoid(alpha=0.16667, beta=0.50001) saturates at 1: with the official Small
weights that moved the logits by 6e-4 (measured), over the 1e-4 budget. So the gate is
exported exactly as `HardSigmoid(alpha=0.16667/1.00002, beta=0.50001/1.00002) * 1.00002`
(the alpha and beta are 1/6 and 0.5 to float precision): one native op and a Mul on the
[N, C, 1, 1] gate, max abs logit difference ~1e-6.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mobilenetv3.core import layers
from mobilenetv3.export import (
    ExportResult,
    atomic_output,
    example_input,
    fold_batch_norm,
    input_sizes,
    max_abs_diff,
    reference_output,
)

OPSET = 17
# relu6(x + 3) * a == 6a * clamp((x + 3) / 6, 0, 1) with a = 0.16667, so 6a = 1.00002
GATE_SCALE = 6 * 0.16667
GATE_ALPHA, GATE_BETA = 0.16667 / GATE_SCALE, 3 * 0.16667 / GATE_SCALE


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
        self.act = _export_activation(layer.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = _PadFunction.apply(x, self.pad)
        return self.act(self.conv(x))


def _export_activation(act: nn.Module) -> nn.Module:
    """Slim's activations as modules the exporter maps onto single native ONNX ops."""
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


def export_graph(model: nn.Module, image_size: tuple[int, int], softmax: bool = False) -> nn.Module:
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
                setattr(parent, name, _export_activation(child))
    return nn.Sequential(model, nn.Softmax(-1)) if softmax else model


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    image_size: tuple[int, int] = (224, 224),
    dynamic_batch: bool = False,
    softmax: bool = False,
    opset: int = OPSET,
    check: bool = True,
) -> ExportResult:
    """Write `model` as ONNX (input `input` NCHW float in [-1, 1], output `logits` or
    `probabilities`), then run it in ONNX Runtime against PyTorch."""
    if opset < 14:
        raise ValueError(f"opset {opset} lacks native HardSwish; use 14 or newer")
    image_size = tuple(image_size)
    graph = export_graph(model, image_size, softmax)
    output = "probabilities" if softmax else "logits"
    axes = {"input": {0: "batch"}, output: {0: "batch"}} if dynamic_batch else None
    with atomic_output(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(graph, (example_input(image_size),), str(tmp), input_names=["input"],
                          output_names=[output], dynamic_axes=axes, opset_version=opset,
                          dynamo=False, do_constant_folding=True)  # fmt: skip
        batch = 2 if dynamic_batch else 1
        diff = check_onnx(tmp, model, image_size, softmax, batch) if check else None
    return ExportResult(Path(path), "onnx", diff)


def check_onnx(
    path: str | os.PathLike, model: nn.Module, image_size: tuple[int, int], softmax: bool,
    batch: int = 1,
) -> float:  # fmt: skip
    """Max abs difference between ONNX Runtime on `path` and PyTorch on the same batch."""
    from mobilenetv3.runtime.engines import make_runner

    x = example_input(image_size, batch, seed=1)
    runner = make_runner("onnxruntime", path, threads=1)
    return max_abs_diff(runner(x.numpy()), reference_output(model, x, softmax))
