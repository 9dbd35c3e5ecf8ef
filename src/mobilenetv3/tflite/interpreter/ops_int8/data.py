"""Data movement and rescaling: RESHAPE, SQUEEZE, PAD, CONCATENATION, QUANTIZE (int to int)
and DEQUANTIZE (refused: the int path keeps integer codes only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mobilenetv3.tflite.interpreter.context import Context, Step, Values
from mobilenetv3.tflite.interpreter.fixedpoint import f32, quantize_multiplier
from mobilenetv3.tflite.model import Operator, TFLiteError


def reshape(ctx: Context, op: Operator) -> Step:
    """RESHAPE and SQUEEZE: the output's shape, the batch kept."""
    out_shape = ctx.info(op.outputs[0]).shape

    def step(values: Values) -> None:
        x = values[op.inputs[0]]
        values[op.outputs[0]] = x.reshape(x.shape[0], *out_shape[1:])

    return step


def pad(ctx: Context, op: Operator) -> Step:
    """Pads from the constant [[before, after], ...] (NHWC), filled with the zero point."""
    pads = ctx.const(op.inputs[1]).reshape(-1, 2).tolist()
    _, zp = ctx.qparams(op.inputs[0])
    flat = [int(v) for before, after in reversed(pads) for v in (before, after)]

    def step(values: Values) -> None:
        values[op.outputs[0]] = F.pad(values[op.inputs[0]], flat, value=zp)

    return step


def concatenation(ctx: Context, op: Operator) -> Step:
    """Inputs on the output's grid already are copied; others go through
    ConcatenationWithScaling (float32 affine, std::round)."""
    axis = int(op.options.get("axis", 0))
    so, zo = ctx.qparams(op.outputs[0])
    lo, hi = ctx.out_range(op)
    inv = f32(1.0) / f32(so)
    params = []
    for idx in op.inputs:
        s, z = ctx.qparams(idx)
        scale = f32(s) * inv
        params.append((s == so and z == zo, float(scale), float(-f32(z) * scale)))

    def step(values: Values) -> None:
        parts = []
        for idx, (same, scale, bias) in zip(op.inputs, params, strict=True):
            v = ctx.value(values, idx)
            if not same:
                f = v.to(torch.float32) * scale + bias
                v = (torch.sign(f) * torch.floor(f.abs() + 0.5)).to(torch.int64) + zo
            parts.append(v)
        values[op.outputs[0]] = torch.cat(parts, dim=axis).clamp(lo, hi)

    return step


def quantize(ctx: Context, op: Operator) -> Step:
    """Integer codes requantized to the output's scale and zero point."""
    if ctx.info(op.inputs[0]).dtype.kind == "f":
        raise TFLiteError("QUANTIZE from float inside the graph: feed codes to run() instead")
    si, zi = ctx.qparams(op.inputs[0])
    so, zo = ctx.qparams(op.outputs[0])
    mult, shift = quantize_multiplier(float(si) / float(so))
    lo, hi = ctx.qrange(op.outputs[0])

    def step(values: Values) -> None:
        v = ctx.value(values, op.inputs[0]) - zi
        values[op.outputs[0]] = (ctx.mbqm(v, mult, shift) + zo).clamp(lo, hi)

    return step


def dequantize(ctx: Context, op: Operator) -> Step:
    raise TFLiteError(f"DEQUANTIZE produces float {ctx.info(op.outputs[0]).name!r}; "
                      "the int path keeps integer codes only")  # fmt: skip
