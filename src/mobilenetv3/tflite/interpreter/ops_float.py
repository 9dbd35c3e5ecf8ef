"""The float graph an exporter builds, run in PyTorch (NCHW) operator by operator: what the
int8 exporter calibrates on, every operator output handed to an observer."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mobilenetv3.tflite.interpreter import geometry
from mobilenetv3.tflite.model import Model, Operator

_ACTIVATIONS = {"RELU": (0.0, math.inf), "RELU6": (0.0, 6.0)}


def _fused(y: torch.Tensor, op: Operator) -> torch.Tensor:
    act = op.options.get("fused_activation_function", "NONE")
    lo, hi = _ACTIVATIONS.get(act, (-math.inf, math.inf))
    return y.clamp(lo, hi)


def _conv(op: Operator, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    depthwise = op.opcode == "DEPTHWISE_CONV_2D"
    weight = w.permute(3, 0, 1, 2) if depthwise else w.permute(0, 3, 1, 2)  # -> OIHW
    x = geometry.pad(x, op.options, tuple(weight.shape[2:]))
    y = F.conv2d(x, weight, b, stride=geometry.strides(op.options),
                 dilation=geometry.dilations(op.options),
                 groups=x.shape[1] if depthwise else 1)  # fmt: skip
    return _fused(y, op)


def _average_pool(op: Operator, x: torch.Tensor) -> torch.Tensor:
    """VALID windows (the exporter's only kind: SAME would need the in-bounds count)."""
    return F.avg_pool2d(x, geometry.pool_kernel(op.options), geometry.strides(op.options))


FLOAT_KERNELS: dict[str, Callable[..., torch.Tensor]] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _conv,
    "HARD_SWISH": lambda op, x: F.hardswish(x),
    "ADD": lambda op, x, y: _fused(x + y, op),
    "MUL": lambda op, x, y: _fused(x * y, op),
    "AVERAGE_POOL_2D": _average_pool,
    "RESHAPE": lambda op, x, shape: x.reshape(x.shape[0], -1),
    "SOFTMAX": lambda op, x: torch.softmax(x * op.options.get("beta", 1.0), dim=-1),
}


def run_float(g: Model, x: torch.Tensor, observe: Callable[[int, torch.Tensor], None]) -> None:
    """Evaluate `g` on NCHW `x` and hand every operator output to `observe`; each activation
    is dropped after its last use so a calibration batch stays small."""
    last_use = {i: n for n, op in enumerate(g.operators) for i in op.inputs}
    values = {g.inputs[0]: x}
    consts = {t.index: torch.from_numpy(t.data) for t in g.tensors if t.data is not None}
    for n, op in enumerate(g.operators):
        args = [values[i] if i in values else consts[i] for i in op.inputs]
        out = FLOAT_KERNELS[op.opcode](op, *args)
        observe(op.outputs[0], out)
        values[op.outputs[0]] = out
        for i in op.inputs:
            if last_use.get(i) == n:
                values.pop(i, None)
