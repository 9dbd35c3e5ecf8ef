"""The int8/uint8 reference path: run a quantized .tflite in PyTorch, bit-exact with LiteRT.

`QuantizedTFLiteModule` executes the file's operator list in order with the integer arithmetic
of LiteRT's *reference* kernels (`OpResolverType.BUILTIN_REF`): asymmetric uint8 (or int8)
activations, exact 32-bit accumulation with input/filter offsets, int32 bias, and output
requantization through `QuantizeMultiplier` + `MultiplyByQuantizedMultiplier`
(SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT). Hard-swish, softmax and the
others follow the fixed-point formulations of `kernels/internal/reference/*.h` and gemmlowp.

Every value is held in int64 tensors (exact 64-bit products; int32 wrap-around never occurs in
these networks). Convolutions run as float64 convolutions of zero-point-centred integers, which
is exact: each product is below 2^16 and every partial sum stays far below 2^53.

Why: it lets a user inspect each quantized activation of the official 8-bit releases
(`forward_all`) and check a LiteRT deployment against an independent implementation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mobilenetv3.tflite.reader import OperatorInfo, TensorInfo, TFLiteError, TFLiteModel

__all__ = [
    "QuantizedTFLiteModule",
    "quantize",
    "multiply_by_quantized_multiplier",
    "quantize_multiplier",
    "rounding_divide_by_pot",
    "saturating_rounding_doubling_high_mul",
]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
Tensor = torch.Tensor

# --------------------------------------------------------------------------------------------
# scalar helpers (double/float32 arithmetic exactly as the kernels' Prepare functions do it)


def _round_half_away(v: float) -> int:
    """C++ std::round: halves away from zero (Python's round() goes to even)."""
    r = math.floor(abs(v) + 0.5)
    return int(r) if v >= 0 else -int(r)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TF's QuantizeMultiplier: real = q * 2^(shift - 31), q in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    if shift > 30:
        shift, q_fixed = 30, (1 << 31) - 1
    return int(q_fixed), int(shift)


def _f32(v: float) -> np.float32:
    return np.float32(v)


def _quantize_float(f: float, scale: float, zero_point: int) -> int:
    """zero_point + round(f / scale) in float32, as CalculateActivationRangeQuantized does."""
    return zero_point + _round_half_away(float(_f32(f) / _f32(scale)))


def _activation_range(
    act: str, scale: float, zero_point: int, qmin: int, qmax: int
) -> tuple[int, int]:
    if act in ("NONE", None):
        return qmin, qmax
    if act == "RELU":
        return max(qmin, _quantize_float(0.0, scale, zero_point)), qmax
    if act == "RELU6":
        lo = max(qmin, _quantize_float(0.0, scale, zero_point))
        return lo, min(qmax, _quantize_float(6.0, scale, zero_point))
    if act == "RELU_N1_TO_1":
        lo = max(qmin, _quantize_float(-1.0, scale, zero_point))
        return lo, min(qmax, _quantize_float(1.0, scale, zero_point))
    raise TFLiteError(f"fused activation {act} is not supported on quantized tensors")


# --------------------------------------------------------------------------------------------
# fixed-point primitives on int64 tensors holding int32 (or int16) values


def _as_t(v: Tensor | int, like: Tensor) -> Tensor:
    return v if isinstance(v, Tensor) else torch.tensor(v, dtype=torch.int64, device=like.device)


def saturating_rounding_doubling_high_mul(a: Tensor, b: Tensor | int) -> Tensor:
    """gemmlowp SaturatingRoundingDoublingHighMul for int32: round(a * b / 2^31), saturated."""
    b = _as_t(b, a)
    ab = a * b
    nudge = torch.where(ab >= 0, torch.full_like(ab, 1 << 30), torch.full_like(ab, 1 - (1 << 30)))
    out = torch.div(ab + nudge, 1 << 31, rounding_mode="trunc")
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return torch.where(overflow, torch.full_like(out, INT32_MAX), out)


def rounding_divide_by_pot(x: Tensor, exponent: Tensor | int) -> Tensor:
    """gemmlowp RoundingDivideByPOT: x / 2^exponent, halves away from zero."""
    e = _as_t(exponent, x)
    mask = torch.bitwise_left_shift(torch.ones_like(e), e) - 1
    remainder = torch.bitwise_and(x, mask)
    threshold = torch.bitwise_right_shift(mask, 1) + (x < 0).to(torch.int64)
    return torch.bitwise_right_shift(x, e) + (remainder > threshold).to(torch.int64)


def _saturating_shift_left(x: Tensor, exponent: int, bits: int = 32) -> Tensor:
    """gemmlowp SaturatingRoundingMultiplyByPOT for a positive exponent."""
    hi, lo = 2 ** (bits - 1) - 1, -(2 ** (bits - 1))
    threshold = (1 << (bits - 1 - exponent)) - 1
    out = x * (1 << exponent)
    out = torch.where(x > threshold, torch.full_like(out, hi), out)
    return torch.where(x < -threshold, torch.full_like(out, lo), out)


def multiply_by_quantized_multiplier(
    x: Tensor, multiplier: Tensor | int, shift: Tensor | int, single_rounding: bool = False
) -> Tensor:
    """TFLite MultiplyByQuantizedMultiplier: x * multiplier * 2^(shift - 31), rounded.

    Default: the double-rounding form (SRDHM then RoundingDivideByPOT) of the standard build;
    `single_rounding=True` emulates a TFLITE_SINGLE_ROUNDING build. For a multiplier in
    [0, 2^31) both gemmlowp steps reduce to shifts (checked against the literal forms in the
    tests): SRDHM(a, m) = (a*m + 2^30) >> 31, and RoundingDivideByPOT(v, e) =
    (v + 2^(e-1) - [v < 0]) >> e, which is what makes this fast on large tensors.
    """
    if isinstance(multiplier, int) and isinstance(shift, int):
        if single_rounding:
            total = 31 - shift
            return (x * multiplier + (1 << (total - 1))) >> total
        v = x * (1 << shift) if shift > 0 else x
        v = (v * multiplier + (1 << 30)) >> 31
        if shift >= 0:
            return v
        right = -shift
        return (v + ((1 << (right - 1)) - (v < 0).to(torch.int64))) >> right
    m = _as_t(multiplier, x)
    s = _as_t(shift, x)
    if single_rounding:
        total = 31 - s
        rnd = torch.bitwise_left_shift(torch.ones_like(total), total - 1)
        return torch.bitwise_right_shift(x * m + rnd, total)
    left = torch.clamp(s, min=0)
    right = torch.clamp(-s, min=0)
    shifted = x * torch.bitwise_left_shift(torch.ones_like(left), left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, m), right)


def _srdhm16(a: Tensor, b: int) -> Tensor:
    """gemmlowp SaturatingRoundingDoublingHighMul for int16."""
    ab = a * b
    nudge = torch.where(ab >= 0, torch.full_like(ab, 1 << 14), torch.full_like(ab, 1 - (1 << 14)))
    out = torch.div(ab + nudge, 1 << 15, rounding_mode="trunc")
    if b == -32768:
        out = torch.where(a == -32768, torch.full_like(out, 32767), out)
    return out


def _sdhm16(a: Tensor, b: Tensor) -> Tensor:
    """hard_swish.h SaturatingDoublingHighMul: like SRDHM but truncating toward zero."""
    out = torch.div(a * b, 1 << 15, rounding_mode="trunc")
    overflow = (a == -32768) & (b == -32768)
    return torch.where(overflow, torch.full_like(out, 32767), out)


def _wrap16(x: Tensor) -> Tensor:
    """static_cast<int16_t>: keep the low 16 bits, signed."""
    return torch.bitwise_and(x + 32768, 0xFFFF) - 32768


def _downscale_to_int16(m: int) -> int:
    """DownScaleInt32ToInt16Multiplier: round an int32 Q31 multiplier to Q15."""
    if m >= INT32_MAX - (1 << 15):
        return 32767
    return (m + (1 << 15)) >> 16


# gemmlowp fixed-point exp / reciprocal (softmax) --------------------------------------------


def _exp_on_interval_minus_quarter_to_zero(a: Tensor) -> Tensor:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out (Taylor series around -1/8)."""
    constant_term = 1895147668  # exp(-1/8)
    one_third = 715827883
    x = a + (1 << 28)
    x2 = saturating_rounding_doubling_high_mul(x, x)
    x3 = saturating_rounding_doubling_high_mul(x2, x)
    x4 = saturating_rounding_doubling_high_mul(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x4_over_4 + x3, one_third) + x2, 1
    )
    return constant_term + saturating_rounding_doubling_high_mul(
        torch.full_like(x, constant_term), x + poly
    )


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))  # fmt: skip


def _exp_on_negative_values(a: Tensor, integer_bits: int) -> Tensor:
    """gemmlowp exp_on_negative_values: Q(integer_bits).(31-integer_bits) in, Q0.31 out."""
    frac = 31 - integer_bits
    quarter = 1 << (frac - 2)
    a_mod = torch.bitwise_and(a, quarter - 1) - quarter
    result = _exp_on_interval_minus_quarter_to_zero(_saturating_shift_left(a_mod, integer_bits))
    remainder = a_mod - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = 1 << (frac + exponent)
            hit = torch.bitwise_and(remainder, bit) != 0
            result = torch.where(
                hit, saturating_rounding_doubling_high_mul(result, multiplier), result
            )
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = torch.where(a < clamp, torch.zeros_like(result), result)
    return torch.where(a == 0, torch.full_like(result, INT32_MAX), result)


def _one_over_one_plus_x(a: Tensor) -> Tensor:
    """gemmlowp one_over_one_plus_x_for_x_in_0_1 (Newton-Raphson), Q0.31 in and out."""
    s = a + INT32_MAX
    half_den = torch.div(s + torch.where(s >= 0, 1, -1), 2, rounding_mode="trunc")
    x = 1515870810 + saturating_rounding_doubling_high_mul(half_den, -1010580540)
    for _ in range(3):
        hdx = saturating_rounding_doubling_high_mul(half_den, x)
        one_minus = (1 << 29) - hdx
        x = x + _saturating_shift_left(saturating_rounding_doubling_high_mul(x, one_minus), 2)
    return _saturating_shift_left(x, 1)


# --------------------------------------------------------------------------------------------


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return {
        np.dtype(np.uint8): torch.uint8,
        np.dtype(np.int8): torch.int8,
        np.dtype(np.int16): torch.int16,
        np.dtype(np.int32): torch.int32,
        np.dtype(np.int64): torch.int64,
        np.dtype(np.float32): torch.float32,
    }[dtype]


def _qrange(dtype: np.dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _same_pad(size: int, stride: int, kernel: int, dilation: int) -> tuple[int, int, int]:
    """TF SAME: (output size, pad before, pad after); the odd pixel goes after."""
    out = (size + stride - 1) // stride
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    return out, total // 2, total - total // 2


Step = Callable[[dict[int, Tensor]], None]


def quantize(x: Tensor, scale: float, zero_point: int, dtype: torch.dtype = torch.uint8) -> Tensor:
    """LiteRT's QUANTIZE (reference AffineQuantize): round(x / scale) + zero_point, clamped.

    The division is float32 and the rounding is TfLiteRound (std::round: halves away from
    zero), not torch.round (halves to even); the tests check this against LiteRT on ties.
    """
    v = x.to(torch.float32) / torch.tensor(scale, dtype=torch.float32)
    t = torch.trunc(v)
    r = t + torch.where((v - t).abs() >= 0.5, torch.sign(v), torch.zeros_like(v))
    info = torch.iinfo(dtype)
    return (r.to(torch.int64) + zero_point).clamp(info.min, info.max).to(dtype)


def _mbqm_np(x: np.ndarray, m: int, shift: int, single_rounding: bool) -> np.ndarray:
    """multiply_by_quantized_multiplier on numpy int64 (same shift forms; |x| < 2^31 >> shift)."""
    x = np.asarray(x, dtype=np.int64)
    if single_rounding:
        total = 31 - shift
        return (x * m + (1 << (total - 1))) >> total
    v = ((x << shift if shift > 0 else x) * m + (1 << 30)) >> 31
    if shift >= 0:
        return v
    return (v + (1 << (-shift - 1)) - (v < 0)) >> -shift


def _first_reaching(
    f: Callable[[np.ndarray], np.ndarray], k: np.ndarray, lo: int, hi: int
) -> np.ndarray:
    """For each k, the smallest a in [lo, hi] with f(a) >= k, f non-decreasing (hi if none)."""
    below = np.full(k.shape, lo, dtype=np.int64)
    above = np.full(k.shape, hi, dtype=np.int64)
    at_lo = f(below) >= k
    while bool((above - below > 1).any()):  # invariant: f(below) < k (unless at_lo)
        mid = (below + above) // 2
        reached = f(mid) >= k
        above = np.where(reached, mid, above)
        below = np.where(reached, below, mid)
    return np.where(at_lo, lo, above)


class QuantizedTFLiteModule(torch.nn.Module):
    """A quantized .tflite run operator by operator with LiteRT's reference integer kernels.

    `forward(x)` takes float NCHW in [-1, 1] and returns the file's output dequantized
    (softmax probabilities [N, 1001] for the MobileNet releases); `forward_all(x)` returns the
    integer codes of every tensor by name; `run(codes)` does the same from input codes (NHWC,
    the file's dtype), which is how a comparison feeds both engines the same bytes.
    """

    def __init__(self, model: TFLiteModel, *, single_rounding: bool = False) -> None:
        super().__init__()
        self.model = model
        self.single_rounding = single_rounding
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise TFLiteError(f"{model.source}: expected one input and one output")
        self.input_info = model.tensor(model.inputs[0])
        self.output_info = model.tensor(model.outputs[0])
        if self.input_info.dtype.kind not in "iu" or not self.input_info.quantization.is_quantized:
            raise TFLiteError(
                f"{model.source}: input {self.input_info.name!r} is {self.input_info.dtype}, not a "
                "quantized integer tensor; float files run in the float model, not here"
            )
        self._constants: dict[int, Tensor] = {}
        self._steps: list[tuple[OperatorInfo, Step]] = []
        for op in model.operators:
            builder = getattr(self, f"_build_{op.opcode.lower()}", None)
            if builder is None:
                raise TFLiteError(
                    f"{model.source}: operator {op.index} {op.opcode} has no int path"
                )
            self._steps.append((op, builder(op)))

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: bool) -> QuantizedTFLiteModule:
        return cls(TFLiteModel.from_file(path), **kwargs)

    # public API --------------------------------------------------------------------------

    @property
    def input_name(self) -> str:
        return self.input_info.name

    @property
    def output_name(self) -> str:
        return self.output_info.name

    def quantize_input(self, x: Tensor) -> Tensor:
        """Float NCHW -> input codes NHWC with the file's input scale and zero point."""
        q = self.input_info.quantization
        nhwc = x.detach().permute(0, 2, 3, 1)
        return quantize(nhwc, q.scale, q.zero_point, self._dtype(self.input_info)).contiguous()

    def run(self, codes: Tensor) -> dict[str, Tensor]:
        """Every activation (file dtype, NHWC, batch first) from input codes, by tensor name."""
        expected = self.input_info.shape[1:]
        if tuple(codes.shape[1:]) != expected:
            raise ValueError(f"input codes {tuple(codes.shape)}, the file wants [N, *{expected}]")
        values: dict[int, Tensor] = {self.input_info.index: codes.to(self._dtype(self.input_info))}
        for op, step in self._steps:
            step(values)
            out_idx = op.outputs[0]
            values[out_idx] = values[out_idx].to(self._dtype(self._info(out_idx)))
        return {self.model.tensors[idx].name: v for idx, v in values.items()}

    def forward_all(self, x: Tensor) -> dict[str, Tensor]:
        """Integer codes of every tensor for float NCHW input in [-1, 1]."""
        return self.run(self.quantize_input(x))

    def dequantize_output(self, codes: Tensor) -> Tensor:
        q = self.output_info.quantization
        return (codes.to(torch.int64) - q.zero_point).to(torch.float32) * torch.tensor(
            q.scale, dtype=torch.float32
        )

    def forward(self, x: Tensor) -> Tensor:
        codes = self.forward_all(x)[self.output_name]
        return self.dequantize_output(codes)

    # helpers -----------------------------------------------------------------------------

    def _const(self, idx: int) -> Tensor:
        if idx not in self._constants:
            data = self.model.constant(idx)
            if data is None:
                raise TFLiteError(f"tensor {self.model.tensors[idx].name!r} should be constant")
            self._constants[idx] = torch.from_numpy(data.astype(np.int64))
        return self._constants[idx]

    def _value(self, values: dict[int, Tensor], idx: int) -> Tensor:
        """A tensor's codes as int64 (activation or constant)."""
        if idx in values:
            return values[idx].to(torch.int64)
        return self._const(idx)

    def _raw(self, values: dict[int, Tensor], idx: int) -> Tensor:
        """A tensor's codes in whatever integer dtype they are held."""
        return values[idx] if idx in values else self._const(idx)

    @staticmethod
    def _dtype(info: TensorInfo) -> torch.dtype:
        return _torch_dtype(info.dtype)

    def _requantizer(
        self,
        mult: Tensor,
        shift: Tensor,
        bias: Tensor,
        out_zp: int,
        lo: int,
        hi: int,
        acc_bound: int,
    ) -> Callable[[Tensor], Tensor]:
        """Map NHWC accumulators (without bias) to clamped output codes.

        The map acc -> clamp(MultiplyByQuantizedMultiplier(acc + bias) + zp) is non-decreasing,
        so with one multiplier per tensor it is a table over the accumulator values between
        "always lo" and "always hi": one add, one clamp and one gather instead of a dozen int64
        passes. The table is cut where the exact integer function reaches each code (binary
        search), so it returns what the arithmetic returns; the tests check both forms agree.
        """
        per_tensor = bool((mult == mult[0]).all() and (shift == shift[0]).all())
        bias_b = bias.view(1, 1, 1, -1)
        if per_tensor:
            m, sh = int(mult[0]), int(shift[0])

            def f(a: np.ndarray) -> np.ndarray:
                return _mbqm_np(a, m, sh, self.single_rounding) + out_zp

            domain = (1 << 31) >> max(sh, 0)
            codes = np.arange(lo + 1, hi + 1, dtype=np.int64)
            starts = _first_reaching(f, codes, -domain, domain - 1)  # where each code begins
            first, last = int(starts[0]), int(starts[-1])
            size = last - first + 2
            reach = acc_bound + int(bias.abs().max()) + size
            exact = first > -domain and bool((f(starts) >= codes).all())
            if exact and size <= 1 << 22 and reach < 1 << 31:
                base = first - 1
                counts = np.diff(np.concatenate([[base], starts, [last + 1]]))
                values = np.repeat(np.arange(lo, hi + 1, dtype=np.int64), counts)
                table = torch.from_numpy(values)
                offset = (bias - base).to(torch.int32).view(1, 1, 1, -1)

                def lookup(acc: Tensor) -> Tensor:
                    idx = acc.to(torch.int32).add_(offset).clamp_(0, size - 1)
                    return table[idx]

                return lookup
            mult_b: Tensor | int = m
            shift_b: Tensor | int = sh
        else:
            mult_b, shift_b = mult.view(1, 1, 1, -1), shift.view(1, 1, 1, -1)

        def literal(acc: Tensor) -> Tensor:
            y = self._mbqm(acc.to(torch.int64) + bias_b, mult_b, shift_b) + out_zp
            return y.clamp(lo, hi)

        return literal

    def _pair_table(
        self, op: OperatorInfo, fn: Callable[[Tensor, Tensor], Tensor]
    ) -> Callable[[dict[int, Tensor]], Tensor] | None:
        """For a binary op on two 8-bit tensors: a 256x256 table of `fn` over all code pairs."""
        i0, i1 = (self._info(i) for i in op.inputs[:2])
        if i0.dtype.itemsize != 1 or i1.dtype.itemsize != 1:
            return None
        lo0, hi0 = _qrange(i0.dtype)
        lo1, hi1 = _qrange(i1.dtype)
        a = torch.arange(lo0, hi0 + 1, dtype=torch.int64).view(-1, 1)
        b = torch.arange(lo1, hi1 + 1, dtype=torch.int64).view(1, -1)
        table = fn(a.expand(256, 256), b.expand(256, 256)).reshape(-1)

        def lookup(values: dict[int, Tensor]) -> Tensor:
            x = self._raw(values, op.inputs[0]).to(torch.int32)
            y = self._raw(values, op.inputs[1]).to(torch.int32)
            return table[(x - lo0) * 256 + (y - lo1)]

        return lookup

    def _info(self, idx: int) -> TensorInfo:
        return self.model.tensors[idx]

    def _mbqm(self, x: Tensor, m: Tensor | int, s: Tensor | int) -> Tensor:
        return multiply_by_quantized_multiplier(x, m, s, self.single_rounding)

    def _qparams(self, idx: int) -> tuple[float, int]:
        q = self._info(idx).quantization
        if not q.is_quantized:
            raise TFLiteError(f"tensor {self._info(idx).name!r} is not quantized")
        return q.scale, q.zero_point

    def _out_range(self, op: OperatorInfo) -> tuple[int, int]:
        out = self._info(op.outputs[0])
        scale, zp = self._qparams(out.index)
        lo, hi = _qrange(out.dtype)
        return _activation_range(
            op.options.get("fused_activation_function", "NONE"), scale, zp, lo, hi
        )

    # convolution family --------------------------------------------------------------------

    def _conv_multipliers(self, op: OperatorInfo, channels: int) -> tuple[Tensor, Tensor]:
        """Per-output-channel (multiplier, shift) as LiteRT's conv Prepare derives them."""
        in_scale, _ = self._qparams(op.inputs[0])
        out_scale, _ = self._qparams(op.outputs[0])
        fq = self._info(op.inputs[1]).quantization
        if self._info(op.inputs[0]).dtype == np.uint8 and fq.scales.size == 1:
            # legacy uint8 path: GetQuantizedConvolutionMultipler, float32 product
            real = float(_f32(in_scale) * _f32(fq.scale)) / float(_f32(out_scale))
            pairs = [quantize_multiplier(real)] * channels
        else:
            scales = fq.scales if fq.scales.size > 1 else np.repeat(fq.scales, channels)
            pairs = [
                quantize_multiplier(float(_f32(in_scale)) * float(s) / float(_f32(out_scale)))
                for s in scales
            ]
        mult = torch.tensor([p[0] for p in pairs], dtype=torch.int64)
        shift = torch.tensor([p[1] for p in pairs], dtype=torch.int64)
        return mult, shift

    def _filter_offset(self, idx: int) -> Tensor:
        q = self._info(idx).quantization
        zps = q.zero_points if q.zero_points.size else np.zeros(1, np.int64)
        return torch.from_numpy(zps.astype(np.int64))

    def _build_conv_like(self, op: OperatorInfo, depthwise: bool) -> Step:
        o = op.options
        w_info = self._info(op.inputs[1])
        w = self._const(op.inputs[1])  # conv [O, kh, kw, I]; depthwise [1, kh, kw, O]
        zp = self._filter_offset(op.inputs[1])
        if depthwise:
            centred = w - zp.view(1, 1, 1, -1)
            weight = centred[0].permute(2, 0, 1).unsqueeze(1)  # [O, 1, kh, kw]
        else:
            centred = w - zp.view(-1, 1, 1, 1)
            weight = centred.permute(0, 3, 1, 2)  # [O, I, kh, kw]
        out_ch = weight.shape[0]
        bias = (
            self._const(op.inputs[2])
            if len(op.inputs) > 2 and op.inputs[2] >= 0
            else torch.zeros(out_ch, dtype=torch.int64)
        )
        mult, shift = self._conv_multipliers(op, out_ch)
        _, in_zp = self._qparams(op.inputs[0])
        _, out_zp = self._qparams(op.outputs[0])
        qlo, qhi = _qrange(self._info(op.inputs[0]).dtype)
        lo, hi = self._out_range(op)
        stride = (o.get("stride_h", 1), o.get("stride_w", 1))
        dilation = (o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1))
        padding = o.get("padding", "VALID")
        kh, kw = int(w_info.shape[1]), int(w_info.shape[2])
        max_abs_x = max(in_zp - qlo, qhi - in_zp)
        chunks = self._exact_chunks(weight, max_abs_x, depthwise)
        weights = [weight[:, a:b].to(torch.float32).contiguous() for a, b in chunks]
        acc_bound = int(weight.abs().sum(dim=(1, 2, 3)).max()) * max_abs_x
        requantize = self._requantizer(mult, shift, bias, out_zp, lo, hi, acc_bound)

        def step(values: dict[int, Tensor]) -> None:
            x = values[op.inputs[0]]
            xc = x.permute(0, 3, 1, 2).to(torch.float32).sub_(in_zp)  # NCHW view, NHWC memory
            if padding == "SAME":
                _, top, bottom = _same_pad(xc.shape[2], stride[0], kh, dilation[0])
                _, left, right = _same_pad(xc.shape[3], stride[1], kw, dilation[1])
                xc = F.pad(xc, (left, right, top, bottom))
            if depthwise:
                acc = F.conv2d(xc, weights[0], stride=stride, dilation=dilation, groups=xc.shape[1])
            elif len(chunks) == 1:
                acc = F.conv2d(xc, weights[0], stride=stride, dilation=dilation)
            else:  # partial sums exact in float32, their total in float64
                acc = sum(
                    F.conv2d(xc[:, a:b], wc, stride=stride, dilation=dilation).to(torch.float64)
                    for (a, b), wc in zip(chunks, weights, strict=True)
                )
            values[op.outputs[0]] = requantize(acc.permute(0, 2, 3, 1))

        return step

    @staticmethod
    def _exact_chunks(weight: Tensor, max_abs_x: int, depthwise: bool) -> list[tuple[int, int]]:
        """Input-channel ranges whose float32 convolution is exact.

        A float32 sum of integers is exact while every partial sum stays below 2^24; bound each
        output's partial sums by sum |w| * max |x| and split the input channels so that each
        range stays under it (one range for all but the widest 1x1 convolutions).
        """
        if depthwise:
            bound = int(weight.abs().sum(dim=(1, 2, 3)).max()) * max_abs_x
            if bound >= 1 << 24:
                raise TFLiteError("depthwise filter too large for an exact float32 convolution")
            return [(0, weight.shape[1])]
        per_channel = (weight.abs().sum(dim=(2, 3)) * max_abs_x).numpy()  # [O, I]
        chunks, start, n_in = [], 0, weight.shape[1]
        while start < n_in:
            running = np.cumsum(per_channel[:, start:], axis=1).max(axis=0)
            end = start + int(np.searchsorted(running, 1 << 24, side="left"))
            if end == start:
                raise TFLiteError("one input channel too large for an exact float32 convolution")
            chunks.append((start, min(end, n_in)))
            start = end
        return chunks

    def _build_conv_2d(self, op: OperatorInfo) -> Step:
        return self._build_conv_like(op, depthwise=False)

    def _build_depthwise_conv_2d(self, op: OperatorInfo) -> Step:
        return self._build_conv_like(op, depthwise=True)

    def _build_fully_connected(self, op: OperatorInfo) -> Step:
        w = self._const(op.inputs[1])  # [O, I]
        zp = self._filter_offset(op.inputs[1])
        weight = (w - zp.view(-1, 1)).to(torch.float64)
        bias = (
            self._const(op.inputs[2])
            if len(op.inputs) > 2 and op.inputs[2] >= 0
            else torch.zeros(w.shape[0], dtype=torch.int64)
        )
        mult, shift = self._conv_multipliers(op, w.shape[0])
        _, in_zp = self._qparams(op.inputs[0])
        _, out_zp = self._qparams(op.outputs[0])
        lo, hi = self._out_range(op)
        out_shape = self._info(op.outputs[0]).shape

        def step(values: dict[int, Tensor]) -> None:
            x = self._value(values, op.inputs[0])
            xc = (x.reshape(-1, w.shape[1]) - in_zp).to(torch.float64)
            acc = (xc @ weight.T).round().to(torch.int64) + bias
            y = (self._mbqm(acc, mult, shift) + out_zp).clamp(lo, hi)
            values[op.outputs[0]] = y.reshape(-1, *out_shape[1:])

        return step

    # pooling -------------------------------------------------------------------------------

    def _pool_windows(self, op: OperatorInfo, x: Tensor, pad_value: float) -> tuple[Tensor, Tensor]:
        """(input NCHW padded with pad_value, in-bounds mask NCHW padded with 0)."""
        o = op.options
        fh, fw = o["filter_height"], o["filter_width"]
        sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
        xc = x.permute(0, 3, 1, 2).to(torch.float64)
        ones = torch.ones_like(xc[:1, :1])
        if o.get("padding", "VALID") == "SAME":
            _, top, bottom = _same_pad(xc.shape[2], sh, fh, 1)
            _, left, right = _same_pad(xc.shape[3], sw, fw, 1)
            xc = F.pad(xc, (left, right, top, bottom), value=pad_value)
            ones = F.pad(ones, (left, right, top, bottom))
        return xc, ones

    def _build_average_pool_2d(self, op: OperatorInfo) -> Step:
        kernel, stride = _pool_geometry(op)
        lo, hi = self._out_range(op)

        def step(values: dict[int, Tensor]) -> None:
            xc, ones = self._pool_windows(op, values[op.inputs[0]], 0.0)
            total = F.avg_pool2d(xc, kernel, stride, divisor_override=1).round().to(torch.int64)
            count = F.avg_pool2d(ones, kernel, stride, divisor_override=1).round().to(torch.int64)
            # reference pooling.h: (acc +- count / 2) / count, C++ integer division; the sign
            # matters for int8 codes (uint8 sums are never negative)
            half = torch.where(total < 0, -(count // 2), count // 2)
            avg = torch.div(total + half, count, rounding_mode="trunc")
            values[op.outputs[0]] = avg.permute(0, 2, 3, 1).clamp(lo, hi)

        return step

    def _build_max_pool_2d(self, op: OperatorInfo) -> Step:
        kernel, stride = _pool_geometry(op)
        lo, hi = self._out_range(op)

        def step(values: dict[int, Tensor]) -> None:
            xc, _ = self._pool_windows(op, values[op.inputs[0]], -1e9)
            m = F.max_pool2d(xc, kernel, stride).round().to(torch.int64)
            values[op.outputs[0]] = m.permute(0, 2, 3, 1).clamp(lo, hi)

        return step

    def _build_mean(self, op: OperatorInfo) -> Step:
        """reference_ops::Mean for quantized 4-D input reduced over H and W."""
        axes = sorted(int(a) % 4 for a in self._const(op.inputs[1]).flatten().tolist())
        if axes != [1, 2]:
            raise TFLiteError(f"MEAN over axes {axes}: only the spatial mean (1, 2) is implemented")
        in_info = self._info(op.inputs[0])
        in_scale, in_zp = self._qparams(op.inputs[0])
        out_scale, out_zp = self._qparams(op.outputs[0])
        n = int(in_info.shape[1] * in_info.shape[2])
        temp = _f32(in_zp) * _f32(in_scale) / _f32(out_scale)
        temp = temp + _f32(0.5) if temp > 0 else temp - _f32(0.5)
        bias = out_zp - int(temp)
        mult, shift = quantize_multiplier(float(_f32(in_scale) / (_f32(n) * _f32(out_scale))))
        lo, hi = _qrange(self._info(op.outputs[0]).dtype)
        keep = bool(op.options.get("keep_dims", False))

        def step(values: dict[int, Tensor]) -> None:
            acc = self._value(values, op.inputs[0]).sum(dim=(1, 2), keepdim=keep)
            values[op.outputs[0]] = (self._mbqm(acc, mult, shift) + bias).clamp(lo, hi)

        return step

    # elementwise ---------------------------------------------------------------------------

    def _build_add(self, op: OperatorInfo) -> Step:
        s1, z1 = self._qparams(op.inputs[0])
        s2, z2 = self._qparams(op.inputs[1])
        so, zo = self._qparams(op.outputs[0])
        left_shift = 20
        twice_max = float(_f32(2) * max(_f32(s1), _f32(s2)))
        m1, sh1 = quantize_multiplier(float(_f32(s1)) / twice_max)
        m2, sh2 = quantize_multiplier(float(_f32(s2)) / twice_max)
        mo, sho = quantize_multiplier(twice_max / float(_f32(1 << left_shift) * _f32(so)))
        lo, hi = self._out_range(op)

        def add(x: Tensor, y: Tensor) -> Tensor:
            a = (x - z1) * (1 << left_shift)
            b = (y - z2) * (1 << left_shift)
            total = self._mbqm(a, m1, sh1) + self._mbqm(b, m2, sh2)
            return (self._mbqm(total, mo, sho) + zo).clamp(lo, hi)

        return self._binary_step(op, add)

    def _binary_step(self, op: OperatorInfo, fn: Callable[[Tensor, Tensor], Tensor]) -> Step:
        table = self._pair_table(op, fn)

        def step(values: dict[int, Tensor]) -> None:
            if table is not None:
                values[op.outputs[0]] = table(values)
            else:
                x, y = (self._value(values, i) for i in op.inputs[:2])
                values[op.outputs[0]] = fn(x, y)

        return step

    def _build_mul(self, op: OperatorInfo) -> Step:
        s1, z1 = self._qparams(op.inputs[0])
        s2, z2 = self._qparams(op.inputs[1])
        so, zo = self._qparams(op.outputs[0])
        mult, shift = quantize_multiplier(float(_f32(s1) * _f32(s2) / _f32(so)))
        lo, hi = self._out_range(op)

        def mul(x: Tensor, y: Tensor) -> Tensor:
            return (self._mbqm((x - z1) * (y - z2), mult, shift) + zo).clamp(lo, hi)

        return self._binary_step(op, mul)

    def _build_hard_swish(self, op: OperatorInfo) -> Step:
        """reference hard_swish.h: 16-bit fixed point, reluish factor in [0, 1]."""
        s_in, z_in = self._qparams(op.inputs[0])
        s_out, z_out = self._qparams(op.outputs[0])
        hires = _f32(1.0 / 128.0) * _f32(s_in)
        out_m32, out_exp = quantize_multiplier(float(hires / _f32(s_out)))
        out_m16 = _downscale_to_int16(out_m32)
        if out_exp > 0:
            raise TFLiteError(f"HARD_SWISH {op.index}: output multiplier exponent {out_exp} > 0")
        rel_m32, rel_exp = quantize_multiplier(float(hires / _f32(3.0 / 32768.0)))
        rel_m16 = _downscale_to_int16(rel_m32)
        lo, hi = _qrange(self._info(op.outputs[0]).dtype)

        def sat16(v: Tensor, amount: int) -> Tensor:
            return (v * (1 << amount)).clamp(-32768, 32767)

        def hard_swish(codes: Tensor) -> Tensor:
            v = _wrap16(codes - z_in)
            hires_v = _wrap16(v * 128)
            preshift = _srdhm16(hires_v, out_m16)
            reluish = hires_v
            if rel_exp > 0:
                reluish = sat16(reluish, rel_exp - 1)
            reluish = _srdhm16(reluish, rel_m16)
            if rel_exp > 0:
                reluish = sat16(reluish, 1)
            if rel_exp < 0:
                reluish = rounding_divide_by_pot(reluish, -rel_exp)
            reluish = _wrap16(torch.bitwise_right_shift(reluish + (1 << 15), 1))
            pre = _sdhm16(reluish, preshift)
            y = _wrap16(rounding_divide_by_pot(pre, -out_exp) + z_out)
            return y.clamp(lo, hi)

        # The function is elementwise on 8-bit codes: evaluate it once for every code.
        in_lo, in_hi = _qrange(self._info(op.inputs[0]).dtype)
        lut = hard_swish(torch.arange(in_lo, in_hi + 1, dtype=torch.int64))

        def step(values: dict[int, Tensor]) -> None:
            values[op.outputs[0]] = lut[values[op.inputs[0]].to(torch.int32) - in_lo]

        return step

    def _build_logistic(self, op: OperatorInfo) -> Step:
        """Table of 1 / (1 + exp(-x)) over all input codes (float32, as LiteRT's LUT).

        Not validated against LiteRT here: neither shared file has a LOGISTIC operator.
        """
        s_in, z_in = self._qparams(op.inputs[0])
        s_out, z_out = self._qparams(op.outputs[0])
        lo, hi = _qrange(self._info(op.inputs[0]).dtype)
        olo, ohi = _qrange(self._info(op.outputs[0]).dtype)
        codes = np.arange(lo, hi + 1)
        x = (codes - z_in).astype(np.float32) * np.float32(s_in)
        y = (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)
        table = [
            min(ohi, max(olo, z_out + _round_half_away(float(v / np.float32(s_out))))) for v in y
        ]
        lut = torch.tensor(table, dtype=torch.int64)

        def step(values: dict[int, Tensor]) -> None:
            values[op.outputs[0]] = lut[self._value(values, op.inputs[0]) - lo]

        return step

    def _build_relu_like(self, op: OperatorInfo, act: str) -> Step:
        s_in, z_in = self._qparams(op.inputs[0])
        s_out, z_out = self._qparams(op.outputs[0])
        mult, shift = quantize_multiplier(float(s_in) / float(s_out))
        qlo, qhi = _qrange(self._info(op.outputs[0]).dtype)
        lo, hi = _activation_range(act, s_out, z_out, qlo, qhi)

        def step(values: dict[int, Tensor]) -> None:
            v = self._value(values, op.inputs[0]) - z_in
            values[op.outputs[0]] = (self._mbqm(v, mult, shift) + z_out).clamp(lo, hi)

        return step

    def _build_relu(self, op: OperatorInfo) -> Step:
        return self._build_relu_like(op, "RELU")

    def _build_relu6(self, op: OperatorInfo) -> Step:
        return self._build_relu_like(op, "RELU6")

    def _build_softmax(self, op: OperatorInfo) -> Step:
        """reference softmax.h (quantized): gemmlowp fixed-point exp and reciprocal."""
        s_in, _ = self._qparams(op.inputs[0])
        beta = float(_f32(op.options.get("beta", 1.0)))
        integer_bits, acc_bits = 5, 12
        real = min(beta * float(_f32(s_in)) * (1 << (31 - integer_bits)), float((1 << 31) - 1))
        mult, left_shift = quantize_multiplier(real)
        if left_shift < 0:
            raise TFLiteError(f"SOFTMAX {op.index}: input scale too small for the reference kernel")
        max_rescaled = (
            1.0 * ((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift)
        )
        diff_min = -math.floor(max_rescaled)
        out_info = self._info(op.outputs[0])
        olo, ohi = _qrange(out_info.dtype)
        out_bits = out_info.dtype.itemsize * 8

        def step(values: dict[int, Tensor]) -> None:
            x = self._value(values, op.inputs[0])
            diff = x - x.max(dim=-1, keepdim=True).values
            valid = diff >= diff_min
            rescaled = saturating_rounding_doubling_high_mul(diff * (1 << left_shift), mult)
            exps = _exp_on_negative_values(rescaled, integer_bits)
            contrib = torch.where(valid, rounding_divide_by_pot(exps, acc_bits), 0)
            total = contrib.sum(dim=-1, keepdim=True)
            _, e = torch.frexp(total.to(torch.float64))
            headroom_plus_one = 32 - e.to(torch.int64)  # count of leading zeros of a uint32
            bits_over_unit = acc_bits - headroom_plus_one
            shifted_minus_one = torch.bitwise_left_shift(total, headroom_plus_one) - (1 << 31)
            scale = _one_over_one_plus_x(shifted_minus_one)
            unsat = rounding_divide_by_pot(
                saturating_rounding_doubling_high_mul(scale.expand_as(exps), exps),
                (bits_over_unit + 31 - out_bits).expand_as(exps),
            )
            y = (unsat + olo).clamp(olo, ohi)
            values[op.outputs[0]] = torch.where(valid, y, torch.full_like(y, olo))

        return step

    # data movement -------------------------------------------------------------------------

    def _build_reshape(self, op: OperatorInfo) -> Step:
        out_shape = self._info(op.outputs[0]).shape

        def step(values: dict[int, Tensor]) -> None:
            x = values[op.inputs[0]]
            values[op.outputs[0]] = x.reshape(x.shape[0], *out_shape[1:])

        return step

    _build_squeeze = _build_reshape

    def _build_pad(self, op: OperatorInfo) -> Step:
        pads = self._const(op.inputs[1]).reshape(-1, 2).tolist()
        _, zp = self._qparams(op.inputs[0])
        flat: list[int] = []
        for before, after in reversed(pads):
            flat += [int(before), int(after)]

        def step(values: dict[int, Tensor]) -> None:
            x = values[op.inputs[0]]
            values[op.outputs[0]] = F.pad(x, flat, value=zp)

        return step

    def _build_concatenation(self, op: OperatorInfo) -> Step:
        axis = int(op.options.get("axis", 0))
        so, zo = self._qparams(op.outputs[0])
        lo, hi = self._out_range(op)
        inv = _f32(1.0) / _f32(so)
        params = []
        for idx in op.inputs:
            s, z = self._qparams(idx)
            scale = _f32(s) * inv
            params.append((s == so and z == zo, float(scale), float(-_f32(z) * scale)))

        def step(values: dict[int, Tensor]) -> None:
            parts = []
            for idx, (same, scale, bias) in zip(op.inputs, params, strict=True):
                v = self._value(values, idx)
                if not same:  # ConcatenationWithScaling: float32 affine, std::round
                    f = v.to(torch.float32) * scale + bias
                    r = torch.sign(f) * torch.floor(f.abs() + 0.5)
                    v = r.to(torch.int64) + zo
                parts.append(v)
            values[op.outputs[0]] = torch.cat(parts, dim=axis).clamp(lo, hi)

        return step

    def _build_quantize(self, op: OperatorInfo) -> Step:
        in_info, out_info = self._info(op.inputs[0]), self._info(op.outputs[0])
        so, zo = self._qparams(op.outputs[0])
        lo, hi = _qrange(out_info.dtype)
        if in_info.dtype.kind == "f":
            raise TFLiteError("QUANTIZE from float inside the graph: feed codes to run() instead")
        si, zi = self._qparams(op.inputs[0])
        mult, shift = quantize_multiplier(float(si) / float(so))

        def step(values: dict[int, Tensor]) -> None:
            v = self._value(values, op.inputs[0]) - zi
            values[op.outputs[0]] = (self._mbqm(v, mult, shift) + zo).clamp(lo, hi)

        return step

    def _build_dequantize(self, op: OperatorInfo) -> Step:
        raise TFLiteError(
            f"operator {op.index} DEQUANTIZE produces float {self._info(op.outputs[0]).name!r}; "
            "the int path keeps integer codes only"
        )


def _pool_geometry(op: OperatorInfo) -> tuple[tuple[int, int], tuple[int, int]]:
    """(kernel, stride) of a pooling operator, as (height, width) pairs."""
    o = op.options
    return (o["filter_height"], o["filter_width"]), (o.get("stride_h", 1), o.get("stride_w", 1))
