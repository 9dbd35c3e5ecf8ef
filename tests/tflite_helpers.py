"""What the TFLite tests share: small files written through the project's one writer, and
lookups only tests need."""

from __future__ import annotations

import numpy as np

from mobilenetv3.tflite.model import Model, Operator, Quantization, Tensor
from mobilenetv3.tflite.writer import serialize


def tflite_bytes(tensors: list[Tensor], operators: list[Operator], inputs: list[int],
                 outputs: list[int]) -> bytes:  # fmt: skip
    """A single-subgraph .tflite: tests need float files, foreign networks and unknown
    operators, which no shared file provides."""
    return serialize(Model(tensors, operators, inputs, outputs, "mobilenetv3 synthetic"))


def quantized(scale: float, zero_point: int) -> dict[str, Quantization]:
    """Tensor keyword arguments for per-tensor quantization."""
    return {"quantization": Quantization.per_tensor(scale, zero_point)}


def tensor(name: str, shape: tuple[int, ...], dtype: type, data: np.ndarray | None = None,
           **kwargs: Quantization) -> Tensor:  # fmt: skip
    return Tensor(name, shape, np.dtype(dtype), data, **kwargs)


def operator_of(model: Model, key: int | str) -> Operator | None:
    """The operator producing a tensor (None for graph inputs and constants)."""
    index = model.tensor(key).index
    return next((op for op in model.operators if index in op.outputs), None)
