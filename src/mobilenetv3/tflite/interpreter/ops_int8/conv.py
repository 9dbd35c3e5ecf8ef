"""CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (reference conv.h, depthwise_conv.h,
fully_connected.h): exact accumulation with input/filter offsets, int32 bias, per-channel
requantization.

Convolutions run as float convolutions of zero-point-centred integers, which is exact while
every partial sum stays below 2^24 in float32 (`_exact_chunks`) or 2^53 in float64.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mobilenetv3.tflite.interpreter import geometry
from mobilenetv3.tflite.interpreter.context import Context, Step, Values
from mobilenetv3.tflite.interpreter.fixedpoint import f32, quantize_multiplier, requantizer
from mobilenetv3.tflite.model import Operator, TFLiteError

EXACT_F32 = 1 << 24


def _multipliers(ctx: Context, op: Operator, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel (multiplier, shift) as LiteRT's conv Prepare derives them."""
    in_scale, _ = ctx.qparams(op.inputs[0])
    out_scale, _ = ctx.qparams(op.outputs[0])
    fq = ctx.info(op.inputs[1]).quantization
    if ctx.info(op.inputs[0]).dtype == np.uint8 and fq.scales.size == 1:
        # legacy uint8 path: GetQuantizedConvolutionMultipler, float32 product
        real = float(f32(in_scale) * f32(fq.scale)) / float(f32(out_scale))
        pairs = [quantize_multiplier(real)] * channels
    else:
        scales = fq.scales if fq.scales.size > 1 else np.repeat(fq.scales, channels)
        pairs = [quantize_multiplier(float(f32(in_scale)) * float(s) / float(f32(out_scale)))
                 for s in scales]  # fmt: skip
    mult = torch.tensor([p[0] for p in pairs], dtype=torch.int64)
    shift = torch.tensor([p[1] for p in pairs], dtype=torch.int64)
    return mult, shift


def _centred_filter(ctx: Context, op: Operator, axis: int) -> torch.Tensor:
    """The filter minus its zero points (per channel along `axis`, or one)."""
    q = ctx.info(op.inputs[1]).quantization
    zps = q.zero_points if q.zero_points.size else np.zeros(1, np.int64)
    w = ctx.const(op.inputs[1])
    shape = [1] * w.ndim
    shape[axis] = -1
    return w - torch.from_numpy(zps.astype(np.int64)).view(shape)


def _bias(ctx: Context, op: Operator, channels: int) -> torch.Tensor:
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        return ctx.const(op.inputs[2])
    return torch.zeros(channels, dtype=torch.int64)


def _exact_chunks(weight: torch.Tensor, max_abs_x: int, depthwise: bool) -> list[tuple[int, int]]:
    """Input-channel ranges whose float32 convolution is exact.

    A float32 sum of integers is exact while every partial sum stays below 2^24; bound each
    output's partial sums by sum |w| * max |x| and split the input channels so that each
    range stays under it (one range for all but the widest 1x1 convolutions).
    """
    if depthwise:
        if int(weight.abs().sum(dim=(1, 2, 3)).max()) * max_abs_x >= EXACT_F32:
            raise TFLiteError("depthwise filter too large for an exact float32 convolution")
        return [(0, weight.shape[1])]
    per_channel = (weight.abs().sum(dim=(2, 3)) * max_abs_x).numpy()  # [O, I]
    chunks, start, n_in = [], 0, weight.shape[1]
    while start < n_in:
        running = np.cumsum(per_channel[:, start:], axis=1).max(axis=0)
        end = start + int(np.searchsorted(running, EXACT_F32, side="left"))
        if end == start:
            raise TFLiteError("one input channel too large for an exact float32 convolution")
        chunks.append((start, min(end, n_in)))
        start = end
    return chunks


def _conv(ctx: Context, op: Operator, weight: torch.Tensor, depthwise: bool) -> Step:
    """`weight` [O, I/groups, kh, kw] centred; the accumulators requantized per channel."""
    _, in_zp = ctx.qparams(op.inputs[0])
    _, out_zp = ctx.qparams(op.outputs[0])
    qlo, qhi = ctx.qrange(op.inputs[0])
    max_abs_x = max(in_zp - qlo, qhi - in_zp)
    mult, shift = _multipliers(ctx, op, weight.shape[0])
    acc_bound = int(weight.abs().sum(dim=(1, 2, 3)).max()) * max_abs_x
    requantize = requantizer(mult, shift, _bias(ctx, op, weight.shape[0]), out_zp,
                             *ctx.out_range(op), acc_bound, ctx.single_rounding)  # fmt: skip
    chunks = _exact_chunks(weight, max_abs_x, depthwise)
    weights = [weight[:, a:b].to(torch.float32).contiguous() for a, b in chunks]
    kernel = tuple(weight.shape[2:])
    stride, dilation = geometry.strides(op.options), geometry.dilations(op.options)

    def step(values: Values) -> None:
        xc = values[op.inputs[0]].permute(0, 3, 1, 2).to(torch.float32).sub_(in_zp)  # NCHW view
        xc = geometry.pad(xc, op.options, kernel)
        groups = xc.shape[1] if depthwise else 1
        if len(chunks) == 1:
            acc = F.conv2d(xc, weights[0], stride=stride, dilation=dilation, groups=groups)
        else:  # partial sums exact in float32, their total in float64
            acc = sum(F.conv2d(xc[:, a:b], wc, stride=stride, dilation=dilation).double()
                      for (a, b), wc in zip(chunks, weights, strict=True))  # fmt: skip
        values[op.outputs[0]] = requantize(acc.permute(0, 2, 3, 1))

    return step


def conv_2d(ctx: Context, op: Operator) -> Step:
    """Filter [O, kh, kw, I] per output channel."""
    return _conv(ctx, op, _centred_filter(ctx, op, 0).permute(0, 3, 1, 2), depthwise=False)


def depthwise_conv_2d(ctx: Context, op: Operator) -> Step:
    """Filter [1, kh, kw, O] per channel along the last axis."""
    weight = _centred_filter(ctx, op, 3)[0].permute(2, 0, 1).unsqueeze(1)  # [O, 1, kh, kw]
    return _conv(ctx, op, weight, depthwise=True)


def fully_connected(ctx: Context, op: Operator) -> Step:
    """Filter [O, I]: a matrix product in float64 (exact), the conv's requantization."""
    weight = _centred_filter(ctx, op, 0).to(torch.float64)
    bias = _bias(ctx, op, weight.shape[0])
    mult, shift = _multipliers(ctx, op, weight.shape[0])
    _, in_zp = ctx.qparams(op.inputs[0])
    _, out_zp = ctx.qparams(op.outputs[0])
    lo, hi = ctx.out_range(op)
    out_shape = ctx.info(op.outputs[0]).shape

    def step(values: Values) -> None:
        x = ctx.value(values, op.inputs[0])
        xc = (x.reshape(-1, weight.shape[1]) - in_zp).to(torch.float64)
        acc = (xc @ weight.T).round().to(torch.int64) + bias
        y = (ctx.mbqm(acc, mult, shift) + out_zp).clamp(lo, hi)
        values[op.outputs[0]] = y.reshape(-1, *out_shape[1:])

    return step
