"""What the int8 kernels may assume, checked once per operator before its kernel is built.

A crafted or damaged file must end in one `TFLiteError` naming the operator, never in an
IndexError, ZeroDivisionError or a torch shape error inside a kernel. `check_model` checks each
operator against its `Signature` (which inputs are integer codes, constants or optional, which
options it needs) and against the output shape its kernel will produce, then the graph's ends
and that every activation is produced before it is read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from mobilenetv3.tflite.interpreter import geometry
from mobilenetv3.tflite.interpreter.ops_int8 import KERNELS
from mobilenetv3.tflite.model import Model, Operator, Tensor, TFLiteError

Shape = tuple[int, ...]

#: Far above any MobileNet activation (1x112x112x96 at 224 is 1.2M values); the interpreter
#: holds values as int64, so a file asking more is refused before anything is allocated.
MAX_ACTIVATION_VALUES = 1 << 26
CODE_TYPES = (np.dtype(np.uint8), np.dtype(np.int8))
PADDINGS = ("SAME", "VALID")
ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
FILTER_AXIS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}  # output channels


@dataclass(frozen=True)
class Signature:
    """What an operator's kernel reads: `arity` inputs, of which the `optional` ones may be
    absent (-1 or missing); `codes` are the positions holding quantized 8-bit codes (None:
    every input), `constants` those that must hold data; `options` the option fields it
    needs; `shape` the output shape it produces from its inputs."""

    arity: int
    shape: Callable[[Model, Operator], Shape]
    codes: tuple[int, ...] | None = (0,)
    constants: tuple[int, ...] = ()
    optional: tuple[int, ...] = ()
    options: tuple[str, ...] = ()


def _shape(model: Model, op: Operator, position: int, rank: int | None = None) -> Shape:
    shape = model.tensors[op.inputs[position]].shape
    if rank is not None and len(shape) != rank:
        raise TFLiteError(f"input {position} has shape {shape}, the kernel needs rank {rank}")
    return shape


def _window(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    """Output length of a window of `kernel` taps along `size` values (TF SAME/VALID)."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride) if padding == "SAME" else -(-(size - effective + 1) // stride)
    if out < 1:
        raise TFLiteError(f"a window of {effective} does not fit an input of {size} ({padding})")
    return out


def _spatial(op: Operator, x: Shape, kernel: tuple[int, int], channels: int) -> Shape:
    """NHWC output of a window op, placed as `geometry` places it."""
    (sh, sw), (dh, dw) = geometry.strides(op.options), geometry.dilations(op.options)
    padding = op.options.get("padding", "VALID")
    rows = _window(x[1], kernel[0], sh, dh, padding)
    return x[0], rows, _window(x[2], kernel[1], sw, dw, padding), channels


def _conv_shape(model: Model, op: Operator) -> Shape:
    x, w = _shape(model, op, 0, 4), _shape(model, op, 1, 4)
    depthwise = op.opcode == "DEPTHWISE_CONV_2D"
    fits = w[0] == 1 and w[3] % x[3] == 0 if depthwise else w[3] == x[3]
    if min(w) < 1 or not fits:
        raise TFLiteError(f"filter {w} does not fit input {x}")
    return _spatial(op, x, (w[1], w[2]), w[3] if depthwise else w[0])


def _fully_connected_shape(model: Model, op: Operator) -> Shape:
    x, w = _shape(model, op, 0), _shape(model, op, 1, 2)
    if w[1] == 0 or math.prod(x) % w[1]:
        raise TFLiteError(f"filter {w} does not fit input {x}")
    return math.prod(x) // w[1], w[0]


def _pool_shape(model: Model, op: Operator) -> Shape:
    x = _shape(model, op, 0, 4)
    return _spatial(op, x, geometry.pool_kernel(op.options), x[3])


def _mean_shape(model: Model, op: Operator) -> Shape:
    x = _shape(model, op, 0, 4)
    return (x[0], 1, 1, x[3]) if op.options.get("keep_dims", False) else (x[0], x[3])


def _same_shape(model: Model, op: Operator) -> Shape:
    return _shape(model, op, 0)


def _broadcast_shape(model: Model, op: Operator) -> Shape:
    a, b = _shape(model, op, 0), _shape(model, op, 1)
    try:
        return tuple(int(d) for d in np.broadcast_shapes(a, b))
    except ValueError:
        raise TFLiteError(f"inputs {a} and {b} do not broadcast") from None


def _reshape_shape(model: Model, op: Operator) -> Shape:
    """The output shape itself, once its values per batch item match the input's."""
    x, out = _shape(model, op, 0), model.tensors[op.outputs[0]].shape
    if not x or not out or math.prod(x[1:]) != math.prod(out[1:]):
        raise TFLiteError(f"cannot reshape {x} into {out} keeping the batch")
    return (x[0], *out[1:])


def _pad_shape(model: Model, op: Operator) -> Shape:
    x, pads = _shape(model, op, 0), model.tensors[op.inputs[1]].data
    if pads is None or pads.shape != (len(x), 2) or (pads < 0).any():
        raise TFLiteError(f"paddings must be [{len(x)}, 2] non-negative values")
    return tuple(int(d + before + after) for d, (before, after) in zip(x, pads.tolist(),
                                                                      strict=True))  # fmt: skip


def _concatenation_shape(model: Model, op: Operator) -> Shape:
    shapes = [_shape(model, op, i) for i in range(len(op.inputs))]
    rank, axis = len(shapes[0]), int(op.options.get("axis", 0))
    if not -rank <= axis < rank:
        raise TFLiteError(f"axis {axis} is outside rank {rank}")
    axis %= rank
    rest = {s[:axis] + s[axis + 1 :] for s in shapes}
    if len(rest) != 1 or any(len(s) != rank for s in shapes):
        raise TFLiteError(f"inputs {shapes} differ outside axis {axis}")
    return (*shapes[0][:axis], sum(s[axis] for s in shapes), *shapes[0][axis + 1 :])


_CONV = Signature(3, _conv_shape, codes=(0, 1), constants=(1, 2), optional=(2,))
_POOL = Signature(1, _pool_shape, options=("filter_height", "filter_width"))
_ELEMENTWISE = Signature(1, _same_shape)
_BINARY = Signature(2, _broadcast_shape, codes=(0, 1))
_RESHAPE = Signature(2, _reshape_shape, optional=(1,))  # the new shape: in the options too

SIGNATURES: dict[str, Signature] = {
    "ADD": _BINARY,
    "AVERAGE_POOL_2D": _POOL,
    "CONCATENATION": Signature(1, _concatenation_shape, codes=None),
    "CONV_2D": _CONV,
    "DEPTHWISE_CONV_2D": _CONV,
    "FULLY_CONNECTED": Signature(3, _fully_connected_shape, codes=(0, 1), constants=(1, 2),
                                 optional=(2,)),  # fmt: skip
    "HARD_SWISH": _ELEMENTWISE,
    "LOGISTIC": _ELEMENTWISE,
    "MAX_POOL_2D": _POOL,
    "MEAN": Signature(2, _mean_shape, constants=(1,)),
    "MUL": _BINARY,
    "PAD": Signature(2, _pad_shape, constants=(1,)),
    "QUANTIZE": _ELEMENTWISE,
    "RELU": _ELEMENTWISE,
    "RELU6": _ELEMENTWISE,
    "RESHAPE": _RESHAPE,
    "SOFTMAX": _ELEMENTWISE,
    "SQUEEZE": _RESHAPE,
}


def _check_codes(t: Tensor, role: str, per_channel: bool = False) -> None:
    """`t` holds 8-bit codes with finite positive scales and zero points in its range, one of
    each unless `per_channel` (a filter)."""
    if t.dtype not in CODE_TYPES:
        raise TFLiteError(f"{role} {t.name!r} is {t.dtype}, the kernel needs uint8 or int8 codes")
    q = t.quantization
    if not q.is_quantized or (q.scales.size > 1 and not per_channel):
        raise TFLiteError(f"{role} {t.name!r} has {q.scales.size} scales, the kernel needs one "
                          "scale and zero point")  # fmt: skip
    if not (np.isfinite(q.scales) & (q.scales > 0)).all():
        raise TFLiteError(f"{role} {t.name!r} has scale(s) {q.scales[:4].tolist()}: each must be "
                          "finite and > 0")  # fmt: skip
    info = np.iinfo(t.dtype)
    if ((q.zero_points < info.min) | (q.zero_points > info.max)).any():
        raise TFLiteError(f"{role} {t.name!r} has zero point(s) {q.zero_points[:4].tolist()} "
                          f"outside {t.dtype}'s range")  # fmt: skip


def _check_options(op: Operator, needed: tuple[str, ...]) -> None:
    o = op.options
    missing = [k for k in needed if k not in o]
    if missing:
        raise TFLiteError(f"its options lack {', '.join(missing)}")
    windows = ("stride_h", "stride_w", "dilation_h_factor", "dilation_w_factor",
               "filter_height", "filter_width")  # fmt: skip
    bad = {k: o[k] for k in windows if k in o and not (isinstance(o[k], int) and o[k] > 0)}
    if bad:
        raise TFLiteError(f"options {bad} must be positive integers")
    if o.get("padding", "VALID") not in PADDINGS:
        raise TFLiteError(f"padding {o['padding']!r} is not one of {PADDINGS}")
    if o.get("fused_activation_function", "NONE") not in ACTIVATIONS:
        raise TFLiteError(f"fused activation {o['fused_activation_function']!r} is not one of "
                          f"{ACTIVATIONS}")  # fmt: skip


def _check_filter(model: Model, op: Operator, channels: int) -> None:
    """Per-channel filter quantization runs along the output channels, one entry each; the
    bias, where present, holds one integer per output channel."""
    q = model.tensors[op.inputs[1]].quantization
    axis = FILTER_AXIS[op.opcode]
    if q.scales.size not in (1, channels) or (q.scales.size > 1 and q.quantized_dimension != axis):
        raise TFLiteError(f"the filter has {q.scales.size} scales along dimension "
                          f"{q.quantized_dimension}; the kernel needs 1 or {channels} along "
                          f"{axis}")  # fmt: skip
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        bias = model.tensors[op.inputs[2]]
        if bias.shape != (channels,) or bias.dtype.kind not in "iu":
            raise TFLiteError(f"bias {bias.name!r} is {bias.dtype} {bias.shape}, the kernel "
                              f"needs {channels} integers")  # fmt: skip


def _check_inputs(model: Model, op: Operator, sig: Signature) -> None:
    if len(op.inputs) < sig.arity - len(sig.optional) or len(op.outputs) != 1:
        raise TFLiteError(f"it has {len(op.inputs)} inputs and {len(op.outputs)} outputs")
    n = len(model.tensors)
    for position, t in enumerate(op.inputs):
        absent = t == -1 and position in sig.optional
        if not absent and not 0 <= t < n:
            raise TFLiteError(f"input {position} names tensor {t}, the file has {n}")
        if not absent and position in sig.constants and model.tensors[t].data is None:
            raise TFLiteError(f"input {position} {model.tensors[t].name!r} must be a constant")
    first = model.tensors[op.inputs[0]]
    if first.data is not None:
        raise TFLiteError(f"input 0 {first.name!r} is a constant, the kernel reads an activation")
    codes = range(len(op.inputs)) if sig.codes is None else sig.codes
    for position in codes:
        is_filter = position == 1 and op.opcode in FILTER_AXIS
        _check_codes(model.tensors[op.inputs[position]], f"input {position}", is_filter)
    if not 0 <= op.outputs[0] < n:
        raise TFLiteError(f"its output names tensor {op.outputs[0]}, the file has {n}")
    _check_codes(model.tensors[op.outputs[0]], "output")


def check_operator(model: Model, op: Operator) -> None:
    """Raise a TFLiteError saying what in `op` its int8 kernel could not run."""
    sig = SIGNATURES.get(op.opcode)
    if sig is None:
        return  # a kernel that refuses the operator itself (DEQUANTIZE)
    _check_inputs(model, op, sig)
    _check_options(op, sig.options)
    expected = sig.shape(model, op)
    out = model.tensors[op.outputs[0]]
    if tuple(out.shape) != tuple(expected):
        raise TFLiteError(f"its output {out.name!r} has shape {out.shape}, its inputs give "
                          f"{expected}")  # fmt: skip
    if math.prod(expected) > MAX_ACTIVATION_VALUES or min(expected, default=1) < 1:
        raise TFLiteError(f"its output shape {expected} is empty or larger than "
                          f"{MAX_ACTIVATION_VALUES} values")  # fmt: skip
    if op.opcode in FILTER_AXIS:
        _check_filter(model, op, expected[-1])


@contextmanager
def operator_errors(model: Model, i: int, op: Operator) -> Iterator[None]:
    """Prefix what a check or a kernel's build refuses with the file and the operator."""
    try:
        yield
    except TFLiteError as exc:
        out = op.outputs[0] if op.outputs else -1
        name = model.tensors[out].name if 0 <= out < len(model.tensors) else "?"
        raise TFLiteError(f"{model.source}: operator {i} ({op.opcode}, producing {name!r}): "
                          f"{exc}") from exc  # fmt: skip


def check_model(model: Model) -> None:
    """Every operator against its kernel, then the graph's ends and flow."""
    for i, op in enumerate(model.operators):
        with operator_errors(model, i, op):
            if op.opcode not in KERNELS:
                raise TFLiteError("has no int path")
            check_operator(model, op)
    _check_graph(model)


def _check_graph(model: Model) -> None:
    """The graph's input and output hold codes, and every activation an operator reads is the
    graph input or an earlier operator's output."""
    for role, t in (("input", model.inputs[0]), ("output", model.outputs[0])):
        try:
            _check_codes(model.tensors[t], f"graph {role}")
        except TFLiteError as exc:
            raise TFLiteError(f"{model.source}: {exc}") from None
    ready = set(model.inputs)
    for i, op in enumerate(model.operators):
        for t in op.inputs:
            if t >= 0 and model.tensors[t].data is None and t not in ready:
                raise TFLiteError(f"{model.source}: operator {i} ({op.opcode}) reads tensor {t} "
                                  f"{model.tensors[t].name!r} before anything produces it")
        ready.update(op.outputs)
    missing = [t for t in model.outputs if t not in ready]
    if missing:
        raise TFLiteError(f"{model.source}: graph output {model.tensors[missing[0]].name!r} is "
                          "produced by no operator")  # fmt: skip
