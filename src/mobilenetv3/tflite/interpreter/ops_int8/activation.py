"""HARD_SWISH (reference hard_swish.h), LOGISTIC, RELU and RELU6.

Each is elementwise on 8-bit codes, so HARD_SWISH and LOGISTIC are evaluated once for every
input code and run as one table lookup.
"""

from __future__ import annotations

import numpy as np
import torch

from mobilenetv3.tflite.interpreter.context import Context, Step, Values
from mobilenetv3.tflite.interpreter.fixedpoint import (
    activation_range,
    downscale_to_int16,
    f32,
    quantize_multiplier,
    round_half_away,
    rounding_divide_by_pot,
    sdhm16,
    srdhm16,
    wrap16,
)
from mobilenetv3.tflite.model import Operator, TFLiteError


def _table_step(ctx: Context, op: Operator, table: torch.Tensor) -> Step:
    """Look every input code up in `table` (indexed from the input dtype's lowest code)."""
    lo, _ = ctx.qrange(op.inputs[0])

    def step(values: Values) -> None:
        values[op.outputs[0]] = table[values[op.inputs[0]].to(torch.int32) - lo]

    return step


def _all_codes(ctx: Context, idx: int) -> torch.Tensor:
    lo, hi = ctx.qrange(idx)
    return torch.arange(lo, hi + 1, dtype=torch.int64)


def hard_swish(ctx: Context, op: Operator) -> Step:
    """16-bit fixed point, the reluish factor in [0, 1]."""
    s_in, z_in = ctx.qparams(op.inputs[0])
    s_out, z_out = ctx.qparams(op.outputs[0])
    hires = f32(1.0 / 128.0) * f32(s_in)
    out_m32, out_exp = quantize_multiplier(float(hires / f32(s_out)))
    out_m16 = downscale_to_int16(out_m32)
    if out_exp > 0:
        name = ctx.info(op.outputs[0]).name
        raise TFLiteError(f"HARD_SWISH {name!r}: output multiplier exponent {out_exp} > 0")
    rel_m32, rel_exp = quantize_multiplier(float(hires / f32(3.0 / 32768.0)))
    rel_m16 = downscale_to_int16(rel_m32)
    lo, hi = ctx.qrange(op.outputs[0])

    def sat16(v: torch.Tensor, amount: int) -> torch.Tensor:
        return (v * (1 << amount)).clamp(-32768, 32767)

    codes = _all_codes(ctx, op.inputs[0])
    hires_v = wrap16(wrap16(codes - z_in) * 128)
    preshift = srdhm16(hires_v, out_m16)
    reluish = sat16(hires_v, rel_exp - 1) if rel_exp > 0 else hires_v
    reluish = srdhm16(reluish, rel_m16)
    if rel_exp > 0:
        reluish = sat16(reluish, 1)
    if rel_exp < 0:
        reluish = rounding_divide_by_pot(reluish, -rel_exp)
    reluish = wrap16(torch.bitwise_right_shift(reluish + (1 << 15), 1))
    y = wrap16(rounding_divide_by_pot(sdhm16(reluish, preshift), -out_exp) + z_out)
    return _table_step(ctx, op, y.clamp(lo, hi))


def logistic(ctx: Context, op: Operator) -> Step:
    """1 / (1 + exp(-x)) over all input codes in float32, as LiteRT's table.

    Not validated against LiteRT on a release: neither shared file has a LOGISTIC operator.
    """
    s_in, z_in = ctx.qparams(op.inputs[0])
    s_out, z_out = ctx.qparams(op.outputs[0])
    olo, ohi = ctx.qrange(op.outputs[0])
    x = (_all_codes(ctx, op.inputs[0]).numpy() - z_in).astype(np.float32) * np.float32(s_in)
    y = (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)
    table = [min(ohi, max(olo, z_out + round_half_away(float(v / np.float32(s_out))))) for v in y]
    return _table_step(ctx, op, torch.tensor(table, dtype=torch.int64))


def _rescale_clamped(ctx: Context, op: Operator, act: str) -> Step:
    """RELU / RELU6 as a requantization to the output scale cut at the activation's codes."""
    s_in, z_in = ctx.qparams(op.inputs[0])
    s_out, z_out = ctx.qparams(op.outputs[0])
    mult, shift = quantize_multiplier(float(s_in) / float(s_out))
    lo, hi = activation_range(act, s_out, z_out, *ctx.qrange(op.outputs[0]))

    def step(values: Values) -> None:
        v = ctx.value(values, op.inputs[0]) - z_in
        values[op.outputs[0]] = (ctx.mbqm(v, mult, shift) + z_out).clamp(lo, hi)

    return step


def relu(ctx: Context, op: Operator) -> Step:
    return _rescale_clamped(ctx, op, "RELU")


def relu6(ctx: Context, op: Operator) -> Step:
    return _rescale_clamped(ctx, op, "RELU6")
