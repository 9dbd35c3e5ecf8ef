"""The int8/uint8 reference path: run a quantized .tflite in PyTorch, bit-exact with LiteRT.

`QuantizedTFLiteModule` executes the file's operator list in order with the integer arithmetic
of LiteRT's *reference* kernels (`OpResolverType.BUILTIN_REF`): asymmetric uint8 (or int8)
activations, exact 32-bit accumulation with input/filter offsets, int32 bias, and output
requantization through `QuantizeMultiplier` + `MultiplyByQuantizedMultiplier`. The kernels
are in `ops_int8` (one builder per operator), the arithmetic in `fixedpoint`.

Why: it lets a user inspect each quantized activation of the official 8-bit releases
(`forward_all`) and check a LiteRT deployment against an independent implementation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mobilenetv3.tflite.interpreter.checks import check_model, operator_errors
from mobilenetv3.tflite.interpreter.context import Context, Step
from mobilenetv3.tflite.interpreter.fixedpoint import quantize
from mobilenetv3.tflite.interpreter.ops_int8 import KERNELS
from mobilenetv3.tflite.model import Model, Operator, TFLiteError
from mobilenetv3.tflite.reader import TFLiteModel

_TORCH_TYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.int8): torch.int8,
                np.dtype(np.int16): torch.int16, np.dtype(np.int32): torch.int32,
                np.dtype(np.int64): torch.int64, np.dtype(np.float32): torch.float32}  # fmt: skip


class QuantizedTFLiteModule(torch.nn.Module):
    """A quantized .tflite run operator by operator with LiteRT's reference integer kernels.

    `forward(x)` takes float NCHW in [-1, 1] and returns the file's output dequantized
    (softmax probabilities [N, 1001] for the MobileNet releases); `forward_all(x)` returns the
    integer codes of every tensor by name; `run(codes)` does the same from input codes (NHWC,
    the file's dtype), which is how a comparison feeds both engines the same bytes.
    """

    def __init__(self, model: Model, *, single_rounding: bool = False) -> None:
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
        check_model(model)  # a malformed graph ends here, never inside a kernel
        context = Context(model, single_rounding)
        self._steps: list[tuple[Operator, Step]] = []
        for i, op in enumerate(model.operators):
            with operator_errors(model, i, op):
                self._steps.append((op, KERNELS[op.opcode](context, op)))

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: bool) -> QuantizedTFLiteModule:
        return cls(TFLiteModel.from_file(path), **kwargs)

    @property
    def input_name(self) -> str:
        return self.input_info.name

    @property
    def output_name(self) -> str:
        return self.output_info.name

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Float NCHW -> input codes NHWC with the file's input scale and zero point."""
        q = self.input_info.quantization
        nhwc = x.detach().permute(0, 2, 3, 1).to(torch.float32).numpy()
        codes = quantize(nhwc, q.scale, q.zero_point, self.input_info.dtype)
        return torch.from_numpy(np.ascontiguousarray(codes))

    def run(self, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every activation (file dtype, NHWC, batch first) from input codes, by tensor name."""
        expected = self.input_info.shape[1:]
        if tuple(codes.shape[1:]) != expected:
            raise TFLiteError(f"{self.model.source}: input codes {tuple(codes.shape)}, the file "
                              f"wants [N, *{expected}]")  # fmt: skip
        values = {self.input_info.index: codes.to(_TORCH_TYPES[self.input_info.dtype])}
        for op, step in self._steps:
            step(values)
            out = op.outputs[0]
            values[out] = values[out].to(_TORCH_TYPES[self.model.tensors[out].dtype])
        return {self.model.tensors[idx].name: v for idx, v in values.items()}

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Integer codes of every tensor for float NCHW input in [-1, 1]."""
        return self.run(self.quantize_input(x))

    def dequantize_output(self, codes: torch.Tensor) -> torch.Tensor:
        q = self.output_info.quantization
        scale = torch.tensor(q.scale, dtype=torch.float32)
        return (codes.to(torch.int64) - q.zero_point).to(torch.float32) * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequantize_output(self.forward_all(x)[self.output_name])
