"""Float TFLite export without TensorFlow: the model walked into the data model of
`tflite.model`, written by `tflite.writer.serialize`.

The file reads like an official slim release: NHWC float input `input` [1, H, W, 3];
BatchNorm folded into conv weights (`<scope>/weights`, `<scope>/depthwise_weights`) and biases
(`<scope>/Conv2D_Fold_bias`, `<scope>/depthwise_Fold_bias`, `<scope>/Conv2D_bias` where slim
has real biases); TF "SAME" padding is the conv's own SAME mode (slim's asymmetric padding
exactly, so no PAD ops); ReLU/ReLU6 fused into the conv; HARD_SWISH as its own op; the SE gate
as AVERAGE_POOL_2D -> CONV_2D -> CONV_2D -> ADD(+3, fused RELU6) -> MUL(0.16667) -> MUL; the
classifier as a 1x1 CONV_2D `<scope>/Logits/Conv2d_1c_1x1`, RESHAPE `Logits/SpatialSqueeze`
and, with `softmax=True`, SOFTMAX `Predictions/Softmax`. The batch dimension is resizable.

The module tree is walked with one emitter per layer type (`EMITTERS`); the int8 exporter
(`quantize.tflite_int8`) rewrites the same graph.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenetv3.atomic import atomic_output
from mobilenetv3.core import layers
from mobilenetv3.core.deploy import fold_batch_norm
from mobilenetv3.export.check import ExportResult, engine_difference, refuse_head
from mobilenetv3.tflite.model import Model
from mobilenetv3.tflite.writer import serialize

_FUSED = {nn.ReLU: ("RELU", "Relu"), nn.ReLU6: ("RELU6", "Relu6")}


def emit_conv(g: Model, layer: layers.ConvBNAct, x: int) -> int:
    """CONV_2D / DEPTHWISE_CONV_2D (BN folded, SAME, ReLU fused) [+ HARD_SWISH]."""
    scope, depthwise = layer.conv.slim_scope, layer.conv.groups > 1
    weight, bias = fold_batch_norm(layer)
    has_bn = isinstance(layer.bn, nn.BatchNorm2d)
    kind = "depthwise" if depthwise else "Conv2D"
    layout = (1, 2, 3, 0) if depthwise else (0, 2, 3, 1)  # OIHW -> 1HWC / OHWI
    weights_name = "depthwise_weights" if depthwise else "weights"
    w = g.add_constant(f"{scope}/{weights_name}", weight.transpose(layout))
    b = g.add_constant(f"{scope}/{kind}_Fold_bias" if has_bn else f"{scope}/Conv2D_bias", bias)
    fused, suffix = _FUSED.get(type(layer.act), ("NONE", "add_fold" if has_bn else "BiasAdd"))
    batch, height, width, _ = g.shape(x)
    shape = (batch, -(-height // layer.stride), -(-width // layer.stride), weight.shape[0])
    options = {"padding": "SAME", "stride_h": layer.stride, "stride_w": layer.stride,
               "dilation_h_factor": 1, "dilation_w_factor": 1, "fused_activation_function": fused}
    if depthwise:
        out = g.op("DEPTHWISE_CONV_2D", [x, w, b], f"{scope}/{suffix}", shape,
                   depth_multiplier=1, **options)  # fmt: skip
    else:
        out = g.op("CONV_2D", [x, w, b], f"{scope}/{suffix}", shape, **options)
    if isinstance(layer.act, layers.HardSwish):
        out = g.op("HARD_SWISH", [out], f"{scope}/hard_swish/mul_1", shape)
    elif fused == "NONE" and not isinstance(layer.act, nn.Identity):
        raise ValueError(f"{scope}: no TFLite mapping for activation {type(layer.act).__name__}")
    return out


def average_pool(g: Model, x: int, name: str, window: tuple[int, int] | None = None,
                 stride: tuple[int, int] = (1, 1)) -> int:  # fmt: skip
    """AVERAGE_POOL_2D, VALID; the whole map unless `window` is given."""
    batch, height, width, channels = g.shape(x)
    kh, kw = window or (height, width)
    shape = (batch, (height - kh) // stride[0] + 1, (width - kw) // stride[1] + 1, channels)
    return g.op("AVERAGE_POOL_2D", [x], name, shape, padding="VALID", stride_h=stride[0],
                stride_w=stride[1], filter_height=kh, filter_width=kw,
                fused_activation_function="NONE")  # fmt: skip


def emit_hard_sigmoid(g: Model, x: int, scope: str) -> int:
    """Slim's gate `relu6(x + 3) * 0.16667`, op for op: ADD (fused RELU6), MUL."""
    shape = g.shape(x)
    three = g.add_constant(f"{scope}/add/y", np.array(3.0, np.float32))
    x = g.op("ADD", [x, three], f"{scope}/Relu6", shape, fused_activation_function="RELU6")
    sixth = g.add_constant(f"{scope}/mul/y", np.array(0.16667, np.float32))
    return g.op("MUL", [x, sixth], f"{scope}/mul", shape, fused_activation_function="NONE")


def emit_squeeze_excite(g: Model, layer: layers.SqueezeExcite, x: int) -> int:
    """Slim's gate, op for op: mean -> conv+relu -> conv -> +3 -> relu6 -> *0.16667 -> rescale."""
    scope = layer.reduce.conv.slim_scope.rsplit("/", 1)[0]
    pooled = average_pool(g, x, f"{scope}/AvgPool")
    gate = emit_conv(g, layer.expand, emit_conv(g, layer.reduce, pooled))
    gate = emit_hard_sigmoid(g, gate, f"{scope}/Conv_1")
    return g.op("MUL", [x, gate], f"{scope}/mul", g.shape(x), fused_activation_function="NONE")


def emit_bottleneck(g: Model, block: layers.Bottleneck, x: int,
                    tap: Callable[[nn.Module, int], None] | None = None) -> int:  # fmt: skip
    """The block's layers [+ the residual ADD]; `tap` sees each inner layer's output (the
    heads take slim's inner endpoints, e.g. `layer_14/expansion_output`)."""
    out = x
    for layer in block.block:
        out = emit(g, layer, out)
        if tap is not None:
            tap(layer, out)
    if not block.residual:
        return out
    scope = block.block[-1].conv.slim_scope.rsplit("/", 1)[0]  # the project conv's block
    return g.op("ADD", [out, x], f"{scope}/add", g.shape(out), fused_activation_function="NONE")


def emit_reduce_to_1x1(g: Model, layer: layers.ReduceTo1x1, x: int) -> int:
    _, height, width, _ = g.shape(x)
    window = None if height == width else (min(layer.default_size, height),
                                           min(layer.default_size, width))  # fmt: skip
    scope = g.tensors[x].name.split("/", 1)[0]  # the network's scope, as every name starts
    return average_pool(g, x, f"{scope}/AvgPool2D/AvgPool", window)


EMITTERS: dict[type, Callable[[Model, Any, int], int]] = {
    layers.ConvBNAct: emit_conv,
    layers.SqueezeExcite: emit_squeeze_excite,
    layers.Bottleneck: emit_bottleneck,
    layers.ReduceTo1x1: emit_reduce_to_1x1,
}


def emit(g: Model, layer: nn.Module, x: int) -> int:
    emitter = EMITTERS.get(type(layer))
    if emitter is None:
        raise ValueError(f"no TFLite emitter for {type(layer).__name__}")
    return emitter(g, layer, x)


def emit_classifier(g: Model, scope: str, classifier: nn.Module, x: int, softmax: bool) -> int:
    """Global pool, the logits 1x1 conv, SpatialSqueeze, optional softmax."""
    x = average_pool(g, x, f"{scope}/Logits/AvgPool")
    if isinstance(classifier, nn.Linear):
        conv = classifier.slim_scope
        weight = classifier.weight.detach().numpy()[:, None, None, :]
        w = g.add_constant(f"{conv}/weights", weight)
        b = g.add_constant(f"{conv}/Conv2D_bias", classifier.bias.detach().numpy())
        x = g.op("CONV_2D", [x, w, b], f"{conv}/BiasAdd", (*g.shape(x)[:3], weight.shape[0]),
                 padding="VALID", stride_h=1, stride_w=1, dilation_h_factor=1,
                 dilation_w_factor=1, fused_activation_function="NONE")  # fmt: skip
    classes = g.shape(x)[-1]
    squeeze = f"{scope}/Logits/SpatialSqueeze"
    new_shape = g.add_constant(f"{squeeze}_shape", np.array([-1, classes], np.int32))
    x = g.op("RESHAPE", [x, new_shape], squeeze, (1, classes), new_shape=[-1, classes])
    if softmax:
        x = g.op("SOFTMAX", [x], f"{scope}/Predictions/Softmax", (1, classes), beta=1.0)
    return x


def build_graph(model: nn.Module, image_size: tuple[int, int], softmax: bool = False,
                dynamic_batch: bool = False) -> Model:  # fmt: skip
    """Walk a `MobileNet` (eval mode) into a TFLite graph: input tensor 0, output the last."""
    g = Model(description=f"mobilenetv3 export: {model.variant.name} at {tuple(image_size)}")
    x = g.add_activation("input", (1, *image_size, 3))
    if dynamic_batch:
        g.tensors[x].shape_signature = (-1, *image_size, 3)
    with torch.no_grad():
        for layer in [*model.features, *model.head]:
            x = emit(g, layer, x)
        out = emit_classifier(g, model.variant.spec.scope, model.classifier, x, softmax)
    g.inputs, g.outputs = [0], [out]
    return g


def tflite_bytes(model: nn.Module, image_size: tuple[int, int] = (224, 224), softmax: bool = False,
                 dynamic_batch: bool = False) -> bytes:  # fmt: skip
    """The .tflite file of `model` at `image_size` as bytes."""
    return serialize(build_graph(model.eval(), tuple(image_size), softmax, dynamic_batch))


def export_tflite(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    image_size: tuple[int, int] = (224, 224),
    dynamic_batch: bool = False,
    softmax: bool = False,
    check: bool = True,
) -> ExportResult:
    """Write `model` as a float .tflite, then run it in LiteRT against PyTorch."""
    refuse_head(model, "export_tflite")
    data = tflite_bytes(model, image_size, softmax, dynamic_batch)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
        diff = check_tflite(tmp, model, tuple(image_size), softmax) if check else None
    return ExportResult(Path(path), "tflite", diff)


def check_tflite(path: str | os.PathLike, model: nn.Module, image_size: tuple[int, int],
                 softmax: bool, batch: int = 1) -> float:  # fmt: skip
    """Max abs difference between LiteRT on `path` and PyTorch on the same batch."""
    return engine_difference("litert", path, model, image_size, softmax, batch)
