"""SOFTMAX (reference softmax.h, quantized): gemmlowp's fixed-point exp and reciprocal."""

from __future__ import annotations

import math

import torch

from mobilenetv3.tflite.interpreter.context import Context, Step, Values
from mobilenetv3.tflite.interpreter.fixedpoint import (
    INT32_MAX,
    f32,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
    saturating_shift_left,
)
from mobilenetv3.tflite.model import Operator, TFLiteError

Tensor = torch.Tensor
srdhm = saturating_rounding_doubling_high_mul
INTEGER_BITS, ACCUMULATION_BITS = 5, 12
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))  # fmt: skip


def _exp_on_interval_minus_quarter_to_zero(a: Tensor) -> Tensor:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out (Taylor series around -1/8)."""
    constant_term = 1895147668  # exp(-1/8)
    one_third = 715827883
    x = a + (1 << 28)
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4_over_4 = rounding_divide_by_pot(srdhm(x2, x2), 2)
    poly = rounding_divide_by_pot(srdhm(x4_over_4 + x3, one_third) + x2, 1)
    return constant_term + srdhm(torch.full_like(x, constant_term), x + poly)


def _exp_on_negative_values(a: Tensor, integer_bits: int) -> Tensor:
    """gemmlowp exp_on_negative_values: Q(integer_bits).(31-integer_bits) in, Q0.31 out."""
    frac = 31 - integer_bits
    quarter = 1 << (frac - 2)
    a_mod = torch.bitwise_and(a, quarter - 1) - quarter
    result = _exp_on_interval_minus_quarter_to_zero(saturating_shift_left(a_mod, integer_bits))
    remainder = a_mod - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            hit = torch.bitwise_and(remainder, 1 << (frac + exponent)) != 0
            result = torch.where(hit, srdhm(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = torch.where(a < clamp, torch.zeros_like(result), result)
    return torch.where(a == 0, torch.full_like(result, INT32_MAX), result)


def _one_over_one_plus_x(a: Tensor) -> Tensor:
    """gemmlowp one_over_one_plus_x_for_x_in_0_1 (Newton-Raphson), Q0.31 in and out."""
    s = a + INT32_MAX
    half_den = torch.div(s + torch.where(s >= 0, 1, -1), 2, rounding_mode="trunc")
    x = 1515870810 + srdhm(half_den, -1010580540)
    for _ in range(3):
        one_minus = (1 << 29) - srdhm(half_den, x)
        x = x + saturating_shift_left(srdhm(x, one_minus), 2)
    return saturating_shift_left(x, 1)


def softmax(ctx: Context, op: Operator) -> Step:
    s_in, _ = ctx.qparams(op.inputs[0])
    beta = float(f32(op.options.get("beta", 1.0)))
    real = min(beta * float(f32(s_in)) * (1 << (31 - INTEGER_BITS)), float((1 << 31) - 1))
    mult, left_shift = quantize_multiplier(real)
    if left_shift < 0:
        name = ctx.info(op.outputs[0]).name
        raise TFLiteError(f"SOFTMAX {name!r}: input scale too small for the reference kernel")
    max_rescaled = 1.0 * ((1 << INTEGER_BITS) - 1) * (1 << (31 - INTEGER_BITS)) / (1 << left_shift)
    diff_min = -math.floor(max_rescaled)
    olo, ohi = ctx.qrange(op.outputs[0])
    out_bits = ctx.info(op.outputs[0]).dtype.itemsize * 8

    def step(values: Values) -> None:
        x = ctx.value(values, op.inputs[0])
        diff = x - x.max(dim=-1, keepdim=True).values
        valid = diff >= diff_min
        exps = _exp_on_negative_values(srdhm(diff * (1 << left_shift), mult), INTEGER_BITS)
        total = torch.where(valid, rounding_divide_by_pot(exps, ACCUMULATION_BITS), 0).sum(
            dim=-1, keepdim=True)  # fmt: skip
        _, e = torch.frexp(total.to(torch.float64))
        headroom_plus_one = 32 - e.to(torch.int64)  # count of leading zeros of a uint32
        shifted_minus_one = torch.bitwise_left_shift(total, headroom_plus_one) - (1 << 31)
        scale = _one_over_one_plus_x(shifted_minus_one)
        exponent = ACCUMULATION_BITS - headroom_plus_one + 31 - out_bits
        unsat = rounding_divide_by_pot(srdhm(scale.expand_as(exps), exps),
                                       exponent.expand_as(exps))  # fmt: skip
        y = (unsat + olo).clamp(olo, ohi)
        values[op.outputs[0]] = torch.where(valid, y, torch.full_like(y, olo))

    return step
