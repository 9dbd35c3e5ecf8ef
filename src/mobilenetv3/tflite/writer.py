"""Float TFLite export written with `flatbuffers.Builder` and the `tflite` package's generated
builder functions (`tflite.ModelStart`, `tflite.Conv2DOptionsAddStrideH`, ...): no TensorFlow.

The file reads like an official slim release: NHWC float input `input` [1, H, W, 3];
BatchNorm folded into conv weights (`<scope>/weights`, `<scope>/depthwise_weights`) and biases
(`<scope>/Conv2D_Fold_bias`, `<scope>/depthwise_Fold_bias`, `<scope>/Conv2D_bias` where slim
has real biases); TF "SAME" padding is the conv's own SAME mode (slim's asymmetric padding
exactly, so no PAD ops); ReLU/ReLU6 fused into the conv; HARD_SWISH as its own op; the SE gate
as AVERAGE_POOL_2D -> CONV_2D -> CONV_2D -> ADD(+3, fused RELU6) -> MUL(0.16667) -> MUL; the
classifier as a 1x1 CONV_2D `<scope>/Logits/Conv2d_1c_1x1`, RESHAPE `Logits/SpatialSqueeze`
and, with `softmax=True`, SOFTMAX `Predictions/Softmax`. The batch dimension is resizable.

The module tree is walked with one emitter per layer type (`EMITTERS`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import tflite
import torch
from torch import nn

from mobilenetv3.atomic import atomic_output
from mobilenetv3.core import layers
from mobilenetv3.core.deploy import fold_batch_norm
from mobilenetv3.export.check import ExportResult, example_input, max_abs_diff, reference_output

ALIGNMENT = 16  # constant buffers aligned as the TF converter aligns them
_FUSED = {nn.ReLU: ("RELU", "Relu"), nn.ReLU6: ("RELU6", "Relu6")}


@dataclass
class Quantization:
    """Affine quantization of a tensor (real = scale * (q - zero_point)); one entry per tensor,
    or one per slice along `axis` (per-channel weights)."""

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 0


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]
    data: np.ndarray | None = None  # None: an activation
    quantization: Quantization | None = None
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))  # of an activation


@dataclass
class _Op:
    opcode: str  # a tflite.BuiltinOperator name
    inputs: list[int]
    outputs: list[int]
    options: str | None = None  # a tflite.BuiltinOptions name, e.g. "Conv2DOptions"
    fields: dict[str, Any] = field(default_factory=dict)  # its fields, e.g. {"StrideH": 2}
    version: int = 1  # the operator version the kernel registry is asked for (int8: higher)


class Graph:
    """Subgraph 0 under construction: tensors, operators, and the scope of the network."""

    def __init__(self, scope: str, dynamic_batch: bool = False) -> None:
        self.scope = scope
        self.dynamic_batch = dynamic_batch
        self.tensors: list[_Tensor] = []
        self.ops: list[_Op] = []

    def constant(self, name: str, array: np.ndarray) -> int:
        data = np.ascontiguousarray(array)
        self.tensors.append(_Tensor(name, data.shape, data))
        return len(self.tensors) - 1

    def activation(self, name: str, shape: tuple[int, ...]) -> int:
        self.tensors.append(_Tensor(name, tuple(shape)))
        return len(self.tensors) - 1

    def shape(self, tensor: int) -> tuple[int, ...]:
        return self.tensors[tensor].shape

    def op(self, opcode: str, inputs: list[int], name: str, shape: tuple[int, ...],
           options: str | None = None, **fields: Any) -> int:  # fmt: skip
        """Append an operator producing one new activation tensor; return that tensor."""
        out = self.activation(name, shape)
        self.ops.append(_Op(opcode, inputs, [out], options, fields))
        return out


# -- emitters: one per layer type -------------------------------------------------------------


def emit_conv(g: Graph, layer: layers.ConvBNAct, x: int) -> int:
    """CONV_2D / DEPTHWISE_CONV_2D (BN folded, SAME, ReLU fused) [+ HARD_SWISH]."""
    scope, depthwise = layer.conv.slim_scope, layer.conv.groups > 1
    weight, bias = fold_batch_norm(layer)
    has_bn = isinstance(layer.bn, nn.BatchNorm2d)
    kind = "depthwise" if depthwise else "Conv2D"
    layout = (1, 2, 3, 0) if depthwise else (0, 2, 3, 1)  # OIHW -> 1HWC / OHWI
    weights_name = "depthwise_weights" if depthwise else "weights"
    w = g.constant(f"{scope}/{weights_name}", weight.transpose(layout))
    b = g.constant(f"{scope}/{kind}_Fold_bias" if has_bn else f"{scope}/Conv2D_bias", bias)
    fused, suffix = _FUSED.get(type(layer.act), ("NONE", "add_fold" if has_bn else "BiasAdd"))
    batch, height, width, _ = g.shape(x)
    shape = (batch, -(-height // layer.stride), -(-width // layer.stride), weight.shape[0])
    options = {
        "Padding": tflite.Padding.SAME, "StrideH": layer.stride, "StrideW": layer.stride,
        "DilationHFactor": 1, "DilationWFactor": 1,
        "FusedActivationFunction": getattr(tflite.ActivationFunctionType, fused),
    }  # fmt: skip
    if depthwise:
        out = g.op("DEPTHWISE_CONV_2D", [x, w, b], f"{scope}/{suffix}", shape,
                   "DepthwiseConv2DOptions", DepthMultiplier=1, **options)  # fmt: skip
    else:
        out = g.op("CONV_2D", [x, w, b], f"{scope}/{suffix}", shape, "Conv2DOptions", **options)
    if isinstance(layer.act, layers.HardSwish):
        out = g.op("HARD_SWISH", [out], f"{scope}/hard_swish/mul_1", shape)
    elif fused == "NONE" and not isinstance(layer.act, nn.Identity):
        raise ValueError(f"{scope}: no TFLite mapping for activation {type(layer.act).__name__}")
    return out


def average_pool(g: Graph, x: int, name: str, window: tuple[int, int] | None = None) -> int:
    """AVERAGE_POOL_2D, VALID, stride 1; the whole map unless `window` is given."""
    batch, height, width, channels = g.shape(x)
    kh, kw = window or (height, width)
    return g.op("AVERAGE_POOL_2D", [x], name, (batch, height - kh + 1, width - kw + 1, channels),
                "Pool2DOptions", Padding=tflite.Padding.VALID, StrideH=1, StrideW=1,
                FilterHeight=kh, FilterWidth=kw,
                FusedActivationFunction=tflite.ActivationFunctionType.NONE)  # fmt: skip


def emit_squeeze_excite(g: Graph, layer: layers.SqueezeExcite, x: int) -> int:
    """Slim's gate, op for op: mean -> conv+relu -> conv -> +3 -> relu6 -> *0.16667 -> rescale."""
    scope = layer.reduce.conv.slim_scope.rsplit("/", 1)[0]
    pooled = average_pool(g, x, f"{scope}/AvgPool")
    gate = emit_conv(g, layer.expand, emit_conv(g, layer.reduce, pooled))
    shape = g.shape(gate)
    three = g.constant(f"{scope}/Conv_1/add/y", np.array(3.0, np.float32))
    gate = g.op("ADD", [gate, three], f"{scope}/Conv_1/Relu6", shape, "AddOptions",
                FusedActivationFunction=tflite.ActivationFunctionType.RELU6)  # fmt: skip
    sixth = g.constant(f"{scope}/Conv_1/mul/y", np.array(0.16667, np.float32))
    gate = g.op("MUL", [gate, sixth], f"{scope}/Conv_1/mul", shape, "MulOptions",
                FusedActivationFunction=tflite.ActivationFunctionType.NONE)  # fmt: skip
    return g.op("MUL", [x, gate], f"{scope}/mul", g.shape(x), "MulOptions",
                FusedActivationFunction=tflite.ActivationFunctionType.NONE)  # fmt: skip


def emit_bottleneck(g: Graph, block: layers.Bottleneck, x: int) -> int:
    out = x
    for layer in block.block:
        out = emit(g, layer, out)
    if not block.residual:
        return out
    scope = block.block[-1].conv.slim_scope.rsplit("/", 1)[0]  # the project conv's block
    return g.op("ADD", [out, x], f"{scope}/add", g.shape(out), "AddOptions",
                FusedActivationFunction=tflite.ActivationFunctionType.NONE)  # fmt: skip


def emit_reduce_to_1x1(g: Graph, layer: layers.ReduceTo1x1, x: int) -> int:
    _, height, width, _ = g.shape(x)
    window = None if height == width else (min(layer.default_size, height),
                                           min(layer.default_size, width))  # fmt: skip
    return average_pool(g, x, f"{g.scope}/AvgPool2D/AvgPool", window)


EMITTERS: dict[type, Callable[[Graph, Any, int], int]] = {
    layers.ConvBNAct: emit_conv,
    layers.SqueezeExcite: emit_squeeze_excite,
    layers.Bottleneck: emit_bottleneck,
    layers.ReduceTo1x1: emit_reduce_to_1x1,
}


def emit(g: Graph, layer: nn.Module, x: int) -> int:
    emitter = EMITTERS.get(type(layer))
    if emitter is None:
        raise ValueError(f"no TFLite emitter for {type(layer).__name__}")
    return emitter(g, layer, x)


def emit_classifier(g: Graph, classifier: nn.Module, x: int, softmax: bool) -> int:
    """Global pool, the logits 1x1 conv, SpatialSqueeze, optional softmax."""
    x = average_pool(g, x, f"{g.scope}/Logits/AvgPool")
    if isinstance(classifier, nn.Linear):
        scope = classifier.slim_scope
        w = g.constant(f"{scope}/weights", classifier.weight.detach().numpy()[:, None, None, :])
        b = g.constant(f"{scope}/Conv2D_bias", classifier.bias.detach().numpy())
        x = g.op("CONV_2D", [x, w, b], f"{scope}/BiasAdd", (*g.shape(x)[:3], g.shape(w)[0]),
                 "Conv2DOptions", Padding=tflite.Padding.VALID, StrideH=1, StrideW=1,
                 DilationHFactor=1, DilationWFactor=1,
                 FusedActivationFunction=tflite.ActivationFunctionType.NONE)  # fmt: skip
    classes = g.shape(x)[-1]
    squeeze = f"{g.scope}/Logits/SpatialSqueeze"
    new_shape = g.constant(f"{squeeze}_shape", np.array([-1, classes], np.int32))
    x = g.op("RESHAPE", [x, new_shape], squeeze, (1, classes),
             "ReshapeOptions", NewShape=[-1, classes])  # fmt: skip
    if softmax:
        x = g.op("SOFTMAX", [x], f"{g.scope}/Predictions/Softmax", (1, classes), "SoftmaxOptions",
                 Beta=1.0)  # fmt: skip
    return x


def build_graph(model: nn.Module, image_size: tuple[int, int], softmax: bool = False,
                dynamic_batch: bool = False) -> Graph:  # fmt: skip
    """Walk a `MobileNet` (eval mode) into a TFLite graph."""
    g = Graph(model.variant.spec.scope, dynamic_batch)
    x = g.activation("input", (1, *image_size, 3))
    with torch.no_grad():
        for layer in [*model.features, *model.head]:
            x = emit(g, layer, x)
        emit_classifier(g, model.classifier, x, softmax)
    return g


# -- FlatBuffer serialization ---------------------------------------------------------------


def _byte_vector(b: flatbuffers.Builder, raw: bytes) -> int:
    """A ubyte vector aligned to ALIGNMENT (CreateNumpyVector aligns only to 1)."""
    b.StartVector(1, len(raw), ALIGNMENT)
    b.head -= len(raw)
    b.Bytes[b.head : b.head + len(raw)] = raw
    return b.EndVector()


def _int_vector(b: flatbuffers.Builder, values: Any) -> int:
    return b.CreateNumpyVector(np.asarray(values, np.int32))


def _table_vector(b: flatbuffers.Builder, start: Callable, offsets: list[int]) -> int:
    start(b, len(offsets))
    for offset in reversed(offsets):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


def _options(b: flatbuffers.Builder, name: str, fields: dict[str, Any]) -> int:
    """Any builtin options table from its schema field names: vectors first, then the table."""
    vectors = {k: _int_vector(b, v) for k, v in fields.items() if isinstance(v, list)}
    getattr(tflite, f"{name}Start")(b)
    for key, value in fields.items():
        getattr(tflite, f"{name}Add{key}")(b, vectors.get(key, value))
    return getattr(tflite, f"{name}End")(b)


_TYPES = {
    np.dtype(np.float32): tflite.TensorType.FLOAT32,
    np.dtype(np.int32): tflite.TensorType.INT32,
    np.dtype(np.int8): tflite.TensorType.INT8,
}


def _tensor(b: flatbuffers.Builder, t: _Tensor, buffer: int, signature: tuple | None) -> int:
    name = b.CreateString(t.name)
    shape = _int_vector(b, t.shape)
    sig = _int_vector(b, signature) if signature else None
    quant = _quantization(b, t.quantization) if t.quantization is not None else None
    tflite.TensorStart(b)
    tflite.TensorAddName(b, name)
    tflite.TensorAddShape(b, shape)
    if sig is not None:
        tflite.TensorAddShapeSignature(b, sig)
    if quant is not None:
        tflite.TensorAddQuantization(b, quant)
    dtype = t.dtype if t.data is None else t.data.dtype
    tflite.TensorAddType(b, _TYPES[dtype])
    tflite.TensorAddBuffer(b, buffer)
    return tflite.TensorEnd(b)


def _quantization(b: flatbuffers.Builder, q: Quantization) -> int:
    scale = b.CreateNumpyVector(np.asarray(q.scale, np.float32).reshape(-1))
    zero_point = b.CreateNumpyVector(np.asarray(q.zero_point, np.int64).reshape(-1))
    tflite.QuantizationParametersStart(b)
    tflite.QuantizationParametersAddScale(b, scale)
    tflite.QuantizationParametersAddZeroPoint(b, zero_point)
    tflite.QuantizationParametersAddQuantizedDimension(b, q.axis)
    return tflite.QuantizationParametersEnd(b)


def _operator(b: flatbuffers.Builder, op: _Op, opcode_index: int) -> int:
    inputs, outputs = _int_vector(b, op.inputs), _int_vector(b, op.outputs)
    options = _options(b, op.options, op.fields) if op.options else None
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, opcode_index)
    tflite.OperatorAddInputs(b, inputs)
    tflite.OperatorAddOutputs(b, outputs)
    if options is not None:
        tflite.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, op.options))
        tflite.OperatorAddBuiltinOptions(b, options)
    return tflite.OperatorEnd(b)


def _opcode(b: flatbuffers.Builder, name: str, version: int = 1) -> int:
    code = getattr(tflite.BuiltinOperator, name)
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))  # schema: 127 = see builtin_code
    tflite.OperatorCodeAddBuiltinCode(b, code)
    tflite.OperatorCodeAddVersion(b, version)
    return tflite.OperatorCodeEnd(b)


def _buffer(b: flatbuffers.Builder, data: np.ndarray | None) -> int:
    little = None if data is None else data.astype(data.dtype.newbyteorder("<"))
    vector = None if little is None else _byte_vector(b, little.tobytes())
    tflite.BufferStart(b)
    if vector is not None:
        tflite.BufferAddData(b, vector)
    return tflite.BufferEnd(b)


def serialize(g: Graph, output: int, description: str) -> bytes:
    """The whole model: buffer 0 empty (the convention), one buffer per constant."""
    size = sum(t.data.nbytes for t in g.tensors if t.data is not None)
    b = flatbuffers.Builder(size + (1 << 20))
    buffers = [_buffer(b, None)]
    tensors = []
    for t in g.tensors:
        index = 0
        if t.data is not None:
            buffers.append(_buffer(b, t.data))
            index = len(buffers) - 1
        signature = (-1, *t.shape[1:]) if g.dynamic_batch and t.name == "input" else None
        tensors.append(_tensor(b, t, index, signature))
    codes = list(dict.fromkeys((op.opcode, op.version) for op in g.ops))
    operators = [_operator(b, op, codes.index((op.opcode, op.version))) for op in g.ops]
    opcodes = [_opcode(b, name, version) for name, version in codes]
    subgraph = _subgraph(b, tensors, operators, [0], [output])
    text = b.CreateString(description)
    vectors = {
        "OperatorCodes": _table_vector(b, tflite.ModelStartOperatorCodesVector, opcodes),
        "Subgraphs": _table_vector(b, tflite.ModelStartSubgraphsVector, [subgraph]),
        "Buffers": _table_vector(b, tflite.ModelStartBuffersVector, buffers),
    }
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddDescription(b, text)
    for key, vector in vectors.items():
        getattr(tflite, f"ModelAdd{key}")(b, vector)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _subgraph(b: flatbuffers.Builder, tensors: list[int], operators: list[int],
              inputs: list[int], outputs: list[int]) -> int:  # fmt: skip
    vectors = (
        _table_vector(b, tflite.SubGraphStartTensorsVector, tensors),
        _int_vector(b, inputs),
        _int_vector(b, outputs),
        _table_vector(b, tflite.SubGraphStartOperatorsVector, operators),
        b.CreateString("main"),
    )
    tflite.SubGraphStart(b)
    for add, vector in zip((tflite.SubGraphAddTensors, tflite.SubGraphAddInputs,
                            tflite.SubGraphAddOutputs, tflite.SubGraphAddOperators,
                            tflite.SubGraphAddName), vectors, strict=True):  # fmt: skip
        add(b, vector)
    return tflite.SubGraphEnd(b)


def tflite_bytes(model: nn.Module, image_size: tuple[int, int] = (224, 224), softmax: bool = False,
                 dynamic_batch: bool = False) -> bytes:  # fmt: skip
    """The .tflite file of `model` at `image_size` as bytes."""
    g = build_graph(model.eval(), tuple(image_size), softmax, dynamic_batch)
    output = len(g.tensors) - 1
    return serialize(g, output, f"mobilenetv3 export: {model.variant.name} at {image_size}")


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
    data = tflite_bytes(model, image_size, softmax, dynamic_batch)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
        diff = check_tflite(tmp, model, tuple(image_size), softmax) if check else None
    return ExportResult(Path(path), "tflite", diff)


def check_tflite(path: str | os.PathLike, model: nn.Module, image_size: tuple[int, int],
                 softmax: bool, batch: int = 1) -> float:  # fmt: skip
    """Max abs difference between LiteRT on `path` and PyTorch on the same batch."""
    from mobilenetv3.runtime.engines import make_runner

    x = example_input(image_size, batch, seed=1)
    runner = make_runner("litert", path, threads=1)
    return max_abs_diff(runner(x.numpy()), reference_output(model, x, softmax))
