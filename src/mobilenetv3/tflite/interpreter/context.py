"""What an int8 kernel reads from the file while it builds its step: tensors, constants as
int64, scales and zero points, the fused activation's code range, and the build's rounding."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mobilenetv3.tflite.interpreter.fixedpoint import (
    activation_range,
    multiply_by_quantized_multiplier,
    qrange,
)
from mobilenetv3.tflite.model import Model, Operator, Tensor, TFLiteError

Values = dict[int, torch.Tensor]
Step = Callable[[Values], None]  # reads its inputs from the values, stores its output there


class Context:
    def __init__(self, model: Model, single_rounding: bool) -> None:
        self.model = model
        self.single_rounding = single_rounding
        self._constants: dict[int, torch.Tensor] = {}

    def info(self, idx: int) -> Tensor:
        return self.model.tensors[idx]

    def const(self, idx: int) -> torch.Tensor:
        """A constant tensor's codes as int64 (cached)."""
        if idx not in self._constants:
            data = self.model.constant(idx)
            if data is None:
                raise TFLiteError(f"tensor {self.info(idx).name!r} should be constant")
            self._constants[idx] = torch.from_numpy(data.astype(np.int64))
        return self._constants[idx]

    def raw(self, values: Values, idx: int) -> torch.Tensor:
        """A tensor's codes in whatever integer dtype they are held."""
        return values[idx] if idx in values else self.const(idx)

    def value(self, values: Values, idx: int) -> torch.Tensor:
        """A tensor's codes as int64 (activation or constant)."""
        return self.raw(values, idx).to(torch.int64)

    def qparams(self, idx: int) -> tuple[float, int]:
        q = self.info(idx).quantization
        if not q.is_quantized:
            raise TFLiteError(f"tensor {self.info(idx).name!r} is not quantized")
        return q.scale, q.zero_point

    def qrange(self, idx: int) -> tuple[int, int]:
        return qrange(self.info(idx).dtype)

    def out_range(self, op: Operator) -> tuple[int, int]:
        """The output codes `op` may produce: its dtype's range cut by its fused activation."""
        scale, zp = self.qparams(op.outputs[0])
        act = op.options.get("fused_activation_function", "NONE")
        return activation_range(act, scale, zp, *self.qrange(op.outputs[0]))

    def mbqm(self, x: torch.Tensor, m: torch.Tensor | int, s: torch.Tensor | int) -> torch.Tensor:
        return multiply_by_quantized_multiplier(x, m, s, self.single_rounding)
