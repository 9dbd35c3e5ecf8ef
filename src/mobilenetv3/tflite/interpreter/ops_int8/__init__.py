"""The int8 kernels, one small builder per operator, in an explicit registry.

A builder reads the operator's tensors and options once (multipliers, tables, code ranges)
and returns the step that runs it; each follows LiteRT's reference kernel of that name.
"""

from __future__ import annotations

from collections.abc import Callable

from mobilenetv3.tflite.interpreter.context import Context, Step
from mobilenetv3.tflite.interpreter.ops_int8 import (
    activation,
    conv,
    data,
    elementwise,
    pool,
    softmax,
)
from mobilenetv3.tflite.model import Operator

Kernel = Callable[[Context, Operator], Step]

KERNELS: dict[str, Kernel] = {
    "ADD": elementwise.add,
    "AVERAGE_POOL_2D": pool.average_pool_2d,
    "CONCATENATION": data.concatenation,
    "CONV_2D": conv.conv_2d,
    "DEPTHWISE_CONV_2D": conv.depthwise_conv_2d,
    "DEQUANTIZE": data.dequantize,
    "FULLY_CONNECTED": conv.fully_connected,
    "HARD_SWISH": activation.hard_swish,
    "LOGISTIC": activation.logistic,
    "MAX_POOL_2D": pool.max_pool_2d,
    "MEAN": pool.mean,
    "MUL": elementwise.mul,
    "PAD": data.pad,
    "QUANTIZE": data.quantize,
    "RELU": activation.relu,
    "RELU6": activation.relu6,
    "RESHAPE": data.reshape,
    "SOFTMAX": softmax.softmax,
    "SQUEEZE": data.reshape,
}
