"""Serialize a `tflite.model.Model` into .tflite bytes with `flatbuffers.Builder` and the
`tflite` package's generated builder functions (`tflite.ModelStart`,
`tflite.Conv2DOptionsAddStrideH`, ...): no TensorFlow.

The one writer of the project: the float exporter, the int8 exporter and the tests' synthetic
files all go through `serialize`. Buffer 0 is the empty sentinel (the schema's convention),
then one buffer per constant, aligned as the TF converter aligns them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flatbuffers
import numpy as np
import tflite

from mobilenetv3.tflite.model import (
    OPTIONS_TYPES,
    TENSOR_TYPES,
    Model,
    Operator,
    Quantization,
    Tensor,
    TFLiteError,
)

__all__ = ["serialize"]

ALIGNMENT = 16  # constant buffers aligned as the TF converter aligns them
_TYPE_CODES = {dtype: getattr(tflite.TensorType, name) for name, dtype in TENSOR_TYPES.items()}
_ENUM_OPTIONS = {"padding": tflite.Padding,
                 "fused_activation_function": tflite.ActivationFunctionType}


def _byte_vector(b: flatbuffers.Builder, raw: bytes) -> int:
    """A ubyte vector aligned to ALIGNMENT (CreateNumpyVector aligns only to 1)."""
    b.StartVector(1, len(raw), ALIGNMENT)
    b.head -= len(raw)
    b.Bytes[b.head : b.head + len(raw)] = raw
    return b.EndVector()


def _int_vector(b: flatbuffers.Builder, values: Any) -> int:
    return b.CreateNumpyVector(np.asarray(values, np.int32))


def _table_vector(b: flatbuffers.Builder, start: Callable, offsets: list[int]) -> int:
    start(b, len(offsets))
    for offset in reversed(offsets):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _options(b: flatbuffers.Builder, op: Operator) -> tuple[int, int] | None:
    """(BuiltinOptions type, table) of `op`'s options: vectors first, then the table."""
    if not op.options:
        return None
    name = OPTIONS_TYPES.get(op.opcode)
    if name is None:
        raise TFLiteError(f"{op.opcode}: no options table known for writing {op.options}")
    vectors = {k: _int_vector(b, v) for k, v in op.options.items() if isinstance(v, list)}
    getattr(tflite, f"{name}Start")(b)
    for key, value in op.options.items():
        if key in _ENUM_OPTIONS and isinstance(value, str):
            value = getattr(_ENUM_OPTIONS[key], value)
        getattr(tflite, f"{name}Add{_camel(key)}")(b, vectors.get(key, value))
    return getattr(tflite.BuiltinOptions, name), getattr(tflite, f"{name}End")(b)


def _quantization(b: flatbuffers.Builder, q: Quantization) -> int:
    scale = b.CreateNumpyVector(np.asarray(q.scales, np.float32).reshape(-1))
    zero_point = b.CreateNumpyVector(np.asarray(q.zero_points, np.int64).reshape(-1))
    tflite.QuantizationParametersStart(b)
    tflite.QuantizationParametersAddScale(b, scale)
    tflite.QuantizationParametersAddZeroPoint(b, zero_point)
    tflite.QuantizationParametersAddQuantizedDimension(b, q.quantized_dimension)
    return tflite.QuantizationParametersEnd(b)


def _tensor(b: flatbuffers.Builder, t: Tensor, buffer: int) -> int:
    name = b.CreateString(t.name)
    shape = _int_vector(b, t.shape)
    signature = _int_vector(b, t.shape_signature) if t.shape_signature else None
    quant = _quantization(b, t.quantization) if t.quantization.is_quantized else None
    tflite.TensorStart(b)
    tflite.TensorAddName(b, name)
    tflite.TensorAddShape(b, shape)
    if signature is not None:
        tflite.TensorAddShapeSignature(b, signature)
    if quant is not None:
        tflite.TensorAddQuantization(b, quant)
    tflite.TensorAddType(b, _TYPE_CODES[np.dtype(t.dtype)])
    tflite.TensorAddBuffer(b, buffer)
    return tflite.TensorEnd(b)


def _operator(b: flatbuffers.Builder, op: Operator, opcode_index: int) -> int:
    inputs, outputs = _int_vector(b, op.inputs), _int_vector(b, op.outputs)
    options = _options(b, op)
    custom = None if op.custom_options is None else b.CreateByteVector(op.custom_options)
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, opcode_index)
    tflite.OperatorAddInputs(b, inputs)
    tflite.OperatorAddOutputs(b, outputs)
    if options is not None:
        tflite.OperatorAddBuiltinOptionsType(b, options[0])
        tflite.OperatorAddBuiltinOptions(b, options[1])
    if custom is not None:
        tflite.OperatorAddCustomOptions(b, custom)
        tflite.OperatorAddCustomOptionsFormat(b, tflite.CustomOptionsFormat.FLEXBUFFERS)
    return tflite.OperatorEnd(b)


def _opcode(b: flatbuffers.Builder, name: str, version: int, custom: str | None) -> int:
    code = getattr(tflite.BuiltinOperator, name)
    custom_code = b.CreateString(custom) if custom is not None else None
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))  # schema: 127 = see builtin_code
    tflite.OperatorCodeAddBuiltinCode(b, code)
    tflite.OperatorCodeAddVersion(b, version)
    if custom_code is not None:
        tflite.OperatorCodeAddCustomCode(b, custom_code)
    return tflite.OperatorCodeEnd(b)


def _buffer(b: flatbuffers.Builder, t: Tensor | None) -> int:
    """The buffer of a constant (little endian), or the empty one."""
    if t is not None and t.data.dtype != t.dtype:
        raise TFLiteError(f"tensor {t.name!r} is {t.dtype} but holds {t.data.dtype} data")
    raw = None if t is None else t.data.astype(t.data.dtype.newbyteorder("<")).tobytes()
    vector = None if raw is None else _byte_vector(b, raw)
    tflite.BufferStart(b)
    if vector is not None:
        tflite.BufferAddData(b, vector)
    return tflite.BufferEnd(b)


def _subgraph(b: flatbuffers.Builder, model: Model, tensors: list[int], codes: list) -> int:
    operators = [_operator(b, op, codes.index((op.opcode, op.version, op.custom_code)))
                 for op in model.operators]  # fmt: skip
    vectors = (
        _table_vector(b, tflite.SubGraphStartTensorsVector, tensors),
        _int_vector(b, model.inputs),
        _int_vector(b, model.outputs),
        _table_vector(b, tflite.SubGraphStartOperatorsVector, operators),
        b.CreateString("main"),
    )
    tflite.SubGraphStart(b)
    for add, vector in zip((tflite.SubGraphAddTensors, tflite.SubGraphAddInputs,
                            tflite.SubGraphAddOutputs, tflite.SubGraphAddOperators,
                            tflite.SubGraphAddName), vectors, strict=True):  # fmt: skip
        add(b, vector)
    return tflite.SubGraphEnd(b)


def serialize(model: Model) -> bytes:
    """The .tflite bytes of `model`: buffer 0 empty (the convention), one per constant."""
    size = sum(t.data.nbytes for t in model.tensors if t.data is not None)
    b = flatbuffers.Builder(size + (1 << 20))
    buffers, tensors = [_buffer(b, None)], []
    for t in model.tensors:
        if t.data is not None:
            buffers.append(_buffer(b, t))
        tensors.append(_tensor(b, t, len(buffers) - 1 if t.data is not None else 0))
    codes = list(dict.fromkeys((op.opcode, op.version, op.custom_code) for op in model.operators))
    subgraph = _subgraph(b, model, tensors, codes)
    opcodes = [_opcode(b, *code) for code in codes]
    text = b.CreateString(model.description)
    vectors = {
        "OperatorCodes": _table_vector(b, tflite.ModelStartOperatorCodesVector, opcodes),
        "Subgraphs": _table_vector(b, tflite.ModelStartSubgraphsVector, [subgraph]),
        "Buffers": _table_vector(b, tflite.ModelStartBuffersVector, buffers),
    }
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, model.version)
    tflite.ModelAddDescription(b, text)
    for key, vector in vectors.items():
        getattr(tflite, f"ModelAdd{key}")(b, vector)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())
