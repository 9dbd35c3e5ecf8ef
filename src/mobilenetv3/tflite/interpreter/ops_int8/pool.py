"""AVERAGE_POOL_2D, MAX_POOL_2D (reference pooling.h) and MEAN over H and W (reduce.h)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mobilenetv3.tflite.interpreter import geometry
from mobilenetv3.tflite.interpreter.context import Context, Step, Values
from mobilenetv3.tflite.interpreter.fixedpoint import f32, quantize_multiplier
from mobilenetv3.tflite.model import Operator, TFLiteError


def average_pool_2d(ctx: Context, op: Operator) -> Step:
    """Sum over the window, divided by the count of in-bounds values, rounded half away."""
    kernel, stride = geometry.pool_kernel(op.options), geometry.strides(op.options)
    lo, hi = ctx.out_range(op)

    def step(values: Values) -> None:
        xc = values[op.inputs[0]].permute(0, 3, 1, 2).to(torch.float64)
        padded = geometry.pad(xc, op.options, kernel)
        inside = geometry.pad(torch.ones_like(xc[:1, :1]), op.options, kernel)
        total = F.avg_pool2d(padded, kernel, stride, divisor_override=1).round().to(torch.int64)
        count = F.avg_pool2d(inside, kernel, stride, divisor_override=1).round().to(torch.int64)
        # reference pooling.h: (acc +- count / 2) / count, C++ integer division; the sign
        # matters for int8 codes (uint8 sums are never negative)
        half = torch.where(total < 0, -(count // 2), count // 2)
        avg = torch.div(total + half, count, rounding_mode="trunc")
        values[op.outputs[0]] = avg.permute(0, 2, 3, 1).clamp(lo, hi)

    return step


def max_pool_2d(ctx: Context, op: Operator) -> Step:
    kernel, stride = geometry.pool_kernel(op.options), geometry.strides(op.options)
    lo, hi = ctx.out_range(op)

    def step(values: Values) -> None:
        xc = values[op.inputs[0]].permute(0, 3, 1, 2).to(torch.float64)
        m = F.max_pool2d(geometry.pad(xc, op.options, kernel, -1e9), kernel, stride)
        values[op.outputs[0]] = m.round().to(torch.int64).permute(0, 2, 3, 1).clamp(lo, hi)

    return step


def mean(ctx: Context, op: Operator) -> Step:
    """reference_ops::Mean for quantized 4-D input reduced over H and W."""
    axes = sorted(int(a) % 4 for a in ctx.const(op.inputs[1]).flatten().tolist())
    if axes != [1, 2]:
        raise TFLiteError(f"MEAN over axes {axes}: only the spatial mean (1, 2) is implemented")
    shape = ctx.info(op.inputs[0]).shape
    in_scale, in_zp = ctx.qparams(op.inputs[0])
    out_scale, out_zp = ctx.qparams(op.outputs[0])
    n = int(shape[1] * shape[2])
    temp = f32(in_zp) * f32(in_scale) / f32(out_scale)
    temp = temp + f32(0.5) if temp > 0 else temp - f32(0.5)
    bias = out_zp - int(temp)
    mult, shift = quantize_multiplier(float(f32(in_scale) / (f32(n) * f32(out_scale))))
    lo, hi = ctx.qrange(op.outputs[0])
    keep = bool(op.options.get("keep_dims", False))

    def step(values: Values) -> None:
        acc = ctx.value(values, op.inputs[0]).sum(dim=(1, 2), keepdim=keep)
        values[op.outputs[0]] = (ctx.mbqm(acc, mult, shift) + bias).clamp(lo, hi)

    return step
