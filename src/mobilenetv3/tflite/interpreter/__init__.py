"""Interpreters of the TFLite data model in PyTorch: `QuantizedTFLiteModule` (int8/uint8,
bit-exact with LiteRT's reference kernels, `ops_int8`) and `run_float` (the float graph an
exporter builds, for calibration, `ops_float`); both place their windows with `geometry`."""

from mobilenetv3.tflite.interpreter.fixedpoint import (
    multiply_by_quantized_multiplier,
    quantize,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from mobilenetv3.tflite.interpreter.module import QuantizedTFLiteModule
from mobilenetv3.tflite.interpreter.ops_float import run_float

__all__ = [
    "QuantizedTFLiteModule",
    "multiply_by_quantized_multiplier",
    "quantize",
    "quantize_multiplier",
    "rounding_divide_by_pot",
    "run_float",
    "saturating_rounding_doubling_high_mul",
]
