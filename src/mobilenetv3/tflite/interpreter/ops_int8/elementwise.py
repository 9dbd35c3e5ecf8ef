"""ADD and MUL (reference add.h, mul.h): both operands rescaled to a common fixed-point scale.

On two 8-bit operands each op is a 256x256 table over all code pairs, built once from the
arithmetic and read with one gather per element.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mobilenetv3.tflite.interpreter.context import Context, Step, Values
from mobilenetv3.tflite.interpreter.fixedpoint import f32, quantize_multiplier
from mobilenetv3.tflite.model import Operator

Binary = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _binary_step(ctx: Context, op: Operator, fn: Binary) -> Step:
    """`fn` on the operator's two inputs, through the table when both are 8-bit."""
    a, b = (ctx.info(i) for i in op.inputs[:2])
    if a.dtype.itemsize != 1 or b.dtype.itemsize != 1:

        def literal(values: Values) -> None:
            x, y = (ctx.value(values, i) for i in op.inputs[:2])
            values[op.outputs[0]] = fn(x, y)

        return literal
    (lo0, hi0), (lo1, hi1) = ctx.qrange(a.index), ctx.qrange(b.index)
    x = torch.arange(lo0, hi0 + 1, dtype=torch.int64).view(-1, 1).expand(256, 256)
    y = torch.arange(lo1, hi1 + 1, dtype=torch.int64).view(1, -1).expand(256, 256)
    table = fn(x, y).reshape(-1)

    def lookup(values: Values) -> None:
        x, y = (ctx.raw(values, i).to(torch.int32) for i in op.inputs[:2])
        values[op.outputs[0]] = table[(x - lo0) * 256 + (y - lo1)]

    return lookup


def add(ctx: Context, op: Operator) -> Step:
    s1, z1 = ctx.qparams(op.inputs[0])
    s2, z2 = ctx.qparams(op.inputs[1])
    so, zo = ctx.qparams(op.outputs[0])
    left_shift = 20
    twice_max = float(f32(2) * max(f32(s1), f32(s2)))
    m1, sh1 = quantize_multiplier(float(f32(s1)) / twice_max)
    m2, sh2 = quantize_multiplier(float(f32(s2)) / twice_max)
    mo, sho = quantize_multiplier(twice_max / float(f32(1 << left_shift) * f32(so)))
    lo, hi = ctx.out_range(op)

    def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = (x - z1) * (1 << left_shift)
        b = (y - z2) * (1 << left_shift)
        total = ctx.mbqm(a, m1, sh1) + ctx.mbqm(b, m2, sh2)
        return (ctx.mbqm(total, mo, sho) + zo).clamp(lo, hi)

    return _binary_step(ctx, op, fn)


def mul(ctx: Context, op: Operator) -> Step:
    s1, z1 = ctx.qparams(op.inputs[0])
    s2, z2 = ctx.qparams(op.inputs[1])
    so, zo = ctx.qparams(op.outputs[0])
    mult, shift = quantize_multiplier(float(f32(s1) * f32(s2) / f32(so)))
    lo, hi = ctx.out_range(op)

    def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (ctx.mbqm((x - z1) * (y - z2), mult, shift) + zo).clamp(lo, hi)

    return _binary_step(ctx, op, fn)
