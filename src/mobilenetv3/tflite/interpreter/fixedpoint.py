"""LiteRT's integer arithmetic, once: rounding, QuantizeMultiplier, gemmlowp's fixed-point
primitives, MultiplyByQuantizedMultiplier, input quantization, and the requantization tables
that make conv outputs one gather.

Values are held in int64 (torch tensors, or numpy arrays where the scalar forms say so):
exact 64-bit products, int32 wrap-around never occurs in these networks. Scalars follow the
kernels' Prepare functions (double and float32 arithmetic exactly as they do it).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from mobilenetv3.tflite.model import TFLiteError

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
Tensor = torch.Tensor
Array = np.ndarray | Tensor


def f32(v: float) -> np.float32:
    return np.float32(v)


def round_half_away(v: float) -> int:
    """C++ std::round: halves away from zero (Python's round() goes to even)."""
    r = math.floor(abs(v) + 0.5)
    return int(r) if v >= 0 else -int(r)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TF's QuantizeMultiplier: real = q * 2^(shift - 31), q in [2^30, 2^31)."""
    if not math.isfinite(real) or real < 0:
        raise TFLiteError(f"a requantization multiplier is {real}: the scales it is derived "
                          "from are out of range")  # fmt: skip
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = round_half_away(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    if shift > 30:
        shift, q_fixed = 30, (1 << 31) - 1
    return int(q_fixed), int(shift)


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: type | np.dtype,
             rounding: str = "away") -> np.ndarray:  # fmt: skip
    """LiteRT's QUANTIZE: round(x / scale) + zero_point, clamped, the division in float32.

    LiteRT rounds two ways, measured on ties in the tests: its reference kernels
    (`BUILTIN_REF`, which the int8 interpreter emulates) use TfLiteRound, halves away from
    zero (`rounding="away"`); its optimized kernels (the default resolver, XNNPACK or not)
    round halves to even (`rounding="even"`).
    """
    v = np.asarray(x, np.float32) / np.float32(scale)
    if rounding == "even":
        r = np.rint(v)
    else:
        t = np.trunc(v)
        r = t + np.where(np.abs(v - t) >= 0.5, np.sign(v), np.float32(0))
    info = np.iinfo(dtype)
    return np.clip(r.astype(np.int64) + zero_point, info.min, info.max).astype(dtype)


def quantize_float(f: float, scale: float, zero_point: int) -> int:
    """zero_point + round(f / scale) in float32, as CalculateActivationRangeQuantized does."""
    return zero_point + round_half_away(float(f32(f) / f32(scale)))


def qrange(dtype: np.dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


_ACTIVATION_BOUNDS = {"RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}


def activation_range(act: str | None, scale: float, zero_point: int, qmin: int,
                     qmax: int) -> tuple[int, int]:  # fmt: skip
    """The codes a fused activation keeps: [qmin, qmax] cut at its bounds' codes."""
    if act in ("NONE", None):
        return qmin, qmax
    if act not in _ACTIVATION_BOUNDS:
        raise TFLiteError(f"fused activation {act} is not supported on quantized tensors")
    low, high = _ACTIVATION_BOUNDS[act]
    lo = max(qmin, quantize_float(low, scale, zero_point))
    return lo, qmax if high is None else min(qmax, quantize_float(high, scale, zero_point))


# gemmlowp primitives on int64 tensors holding int32 (or int16) values ----------------------


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


def saturating_shift_left(x: Tensor, exponent: int, bits: int = 32) -> Tensor:
    """gemmlowp SaturatingRoundingMultiplyByPOT for a positive exponent."""
    hi, lo = 2 ** (bits - 1) - 1, -(2 ** (bits - 1))
    threshold = (1 << (bits - 1 - exponent)) - 1
    out = x * (1 << exponent)
    out = torch.where(x > threshold, torch.full_like(out, hi), out)
    return torch.where(x < -threshold, torch.full_like(out, lo), out)


def multiply_by_quantized_multiplier(
    x: Array, multiplier: Tensor | int, shift: Tensor | int, single_rounding: bool = False
) -> Array:
    """TFLite MultiplyByQuantizedMultiplier: x * multiplier * 2^(shift - 31), rounded.

    Default: the double-rounding form (SRDHM then RoundingDivideByPOT) of the standard build;
    `single_rounding=True` emulates a TFLITE_SINGLE_ROUNDING build. For a multiplier in
    [0, 2^31) both gemmlowp steps reduce to shifts (checked against the literal forms in the
    tests): SRDHM(a, m) = (a*m + 2^30) >> 31, and RoundingDivideByPOT(v, e) =
    (v + 2^(e-1) - [v < 0]) >> e, which is what makes this fast on large tensors. With int
    `multiplier` and `shift`, `x` may be an int64 numpy array as well as a tensor.
    """
    if isinstance(multiplier, int) and isinstance(shift, int):
        if single_rounding:
            total = 31 - shift
            return (x * multiplier + (1 << (total - 1))) >> total
        v = x * (1 << shift) if shift > 0 else x
        v = (v * multiplier + (1 << 30)) >> 31
        if shift >= 0:
            return v
        return (v + (1 << (-shift - 1)) + (v >> 63)) >> -shift  # v >> 63: -1 where v < 0
    m, s = _as_t(multiplier, x), _as_t(shift, x)
    if single_rounding:
        total = 31 - s
        rnd = torch.bitwise_left_shift(torch.ones_like(total), total - 1)
        return torch.bitwise_right_shift(x * m + rnd, total)
    left, right = torch.clamp(s, min=0), torch.clamp(-s, min=0)
    shifted = x * torch.bitwise_left_shift(torch.ones_like(left), left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, m), right)


def srdhm16(a: Tensor, b: int) -> Tensor:
    """gemmlowp SaturatingRoundingDoublingHighMul for int16."""
    ab = a * b
    nudge = torch.where(ab >= 0, torch.full_like(ab, 1 << 14), torch.full_like(ab, 1 - (1 << 14)))
    out = torch.div(ab + nudge, 1 << 15, rounding_mode="trunc")
    if b == -32768:
        out = torch.where(a == -32768, torch.full_like(out, 32767), out)
    return out


def sdhm16(a: Tensor, b: Tensor) -> Tensor:
    """hard_swish.h SaturatingDoublingHighMul: like SRDHM but truncating toward zero."""
    out = torch.div(a * b, 1 << 15, rounding_mode="trunc")
    overflow = (a == -32768) & (b == -32768)
    return torch.where(overflow, torch.full_like(out, 32767), out)


def wrap16(x: Tensor) -> Tensor:
    """static_cast<int16_t>: keep the low 16 bits, signed."""
    return torch.bitwise_and(x + 32768, 0xFFFF) - 32768


def downscale_to_int16(m: int) -> int:
    """DownScaleInt32ToInt16Multiplier: round an int32 Q31 multiplier to Q15."""
    if m >= INT32_MAX - (1 << 15):
        return 32767
    return (m + (1 << 15)) >> 16


# requantization of accumulators -------------------------------------------------------------


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


def _table(m: int, sh: int, bias: Tensor, out_zp: int, lo: int, hi: int, acc_bound: int,
           single_rounding: bool) -> Callable[[Tensor], Tensor] | None:  # fmt: skip
    """The per-tensor requantization as a table over the accumulators, when it is exact and
    small; the table is cut where the integer function reaches each code (binary search)."""

    def f(a: np.ndarray) -> np.ndarray:
        return multiply_by_quantized_multiplier(a, m, sh, single_rounding) + out_zp

    domain = (1 << 31) >> max(sh, 0)
    codes = np.arange(lo + 1, hi + 1, dtype=np.int64)
    starts = _first_reaching(f, codes, -domain, domain - 1)  # where each code begins
    first, last = int(starts[0]), int(starts[-1])
    size = last - first + 2
    reach = acc_bound + int(bias.abs().max()) + size
    exact = first > -domain and bool((f(starts) >= codes).all())
    if not (exact and size <= 1 << 22 and reach < 1 << 31):
        return None
    base = first - 1
    counts = np.diff(np.concatenate([[base], starts, [last + 1]]))
    table = torch.from_numpy(np.repeat(np.arange(lo, hi + 1, dtype=np.int64), counts))
    offset = (bias - base).to(torch.int32).view(1, 1, 1, -1)

    def lookup(acc: Tensor) -> Tensor:
        return table[acc.to(torch.int32).add_(offset).clamp_(0, size - 1)]

    return lookup


def requantizer(mult: Tensor, shift: Tensor, bias: Tensor, out_zp: int, lo: int, hi: int,
                acc_bound: int, single_rounding: bool = False
                ) -> Callable[[Tensor], Tensor]:  # fmt: skip
    """Map NHWC accumulators (without bias) to clamped output codes.

    The map acc -> clamp(MultiplyByQuantizedMultiplier(acc + bias) + zp) is non-decreasing,
    so with one multiplier per tensor it is a table over the accumulator values between
    "always lo" and "always hi": one add, one clamp and one gather instead of a dozen int64
    passes; it returns what the arithmetic returns (the tests check both forms agree).
    """
    per_tensor = bool((mult == mult[0]).all() and (shift == shift[0]).all())
    if per_tensor:
        m, sh = int(mult[0]), int(shift[0])
        table = _table(m, sh, bias, out_zp, lo, hi, acc_bound, single_rounding)
        if table is not None:
            return table
        mult_b: Tensor | int = m
        shift_b: Tensor | int = sh
    else:
        mult_b, shift_b = mult.view(1, 1, 1, -1), shift.view(1, 1, 1, -1)
    bias_b = bias.view(1, 1, 1, -1)

    def literal(acc: Tensor) -> Tensor:
        y = multiply_by_quantized_multiplier(acc.to(torch.int64) + bias_b, mult_b, shift_b,
                                             single_rounding)  # fmt: skip
        return (y + out_zp).clamp(lo, hi)

    return literal
