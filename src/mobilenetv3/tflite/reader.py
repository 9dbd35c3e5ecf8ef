"""Read .tflite files (official MobileNet releases, float or uint8) without TensorFlow.

The FlatBuffer is walked with the schema-generated classes of the `tflite` package into the
data model of `tflite.model`; every tensor, operator and buffer is decoded eagerly in
`TFLiteModel.from_bytes`, so a truncated or foreign file fails there, with a `TFLiteError`
that says what is wrong, instead of later inside an interpreter.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import tflite

from mobilenetv3.tflite.model import (
    TENSOR_TYPES,
    Model,
    Operator,
    Quantization,
    Tensor,
    TFLiteError,
)

__all__ = ["KNOWN_OPS", "MOBILENET_SCOPES", "TFLiteError", "TFLiteModel", "check_mobilenet"]

FILE_IDENTIFIER = b"TFL3"
MOBILENET_SCOPES = ("MobilenetV3/", "MobilenetV2/", "MobilenetEdgeTPU/")

#: Builtin operators the reader (and the int8 reference path) knows how to describe.
KNOWN_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE",
    "FULLY_CONNECTED", "HARD_SWISH", "LOGISTIC", "MAX_POOL_2D", "MEAN", "MUL", "PAD", "QUANTIZE",
    "RELU", "RELU6", "RESHAPE", "SOFTMAX", "SQUEEZE",
})  # fmt: skip


def _enum_names(enum_cls: type) -> dict[int, str]:
    """Value -> name of a generated FlatBuffers enum class."""
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


_OPCODE_NAMES = _enum_names(tflite.BuiltinOperator)
_OPTIONS_NAMES = _enum_names(tflite.BuiltinOptions)
_ACTIVATION_NAMES = _enum_names(tflite.ActivationFunctionType)
_PADDING_NAMES = _enum_names(tflite.Padding)
_TYPE_NAMES = _enum_names(tflite.TensorType)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


_SKIP_ACCESSORS = {"Init", "GetRootAs"}


def _decode_options(op: Any, opcode: str) -> dict[str, Any]:
    """Builtin options as a plain dict with snake_case keys (`StrideW` -> `stride_w`).

    Enum fields become names ("SAME", "RELU6"); vectors become lists.
    """
    kind = op.BuiltinOptionsType()
    if kind == 0 or op.BuiltinOptions() is None:
        return {}
    cls_name = _OPTIONS_NAMES.get(kind)
    cls = getattr(tflite, cls_name, None) if cls_name else None
    if cls is None:
        raise TFLiteError(f"{opcode}: builtin options type {kind} unknown to the tflite package")
    table = op.BuiltinOptions()
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    out: dict[str, Any] = {}
    for attr in dir(cls):
        if not attr[:1].isupper() or attr in _SKIP_ACCESSORS or attr.startswith("GetRootAs"):
            continue
        if attr.endswith(("BufferHasIdentifier", "AsNumpy", "Length", "IsNone")):
            continue
        method = getattr(obj, attr)
        params = [p for p in inspect.signature(method).parameters if p != "self"]
        if params:  # vector accessor: read it whole through <Name>AsNumpy
            as_numpy = getattr(obj, attr + "AsNumpy", None)
            if as_numpy is None:
                continue
            value = as_numpy()
            out[_snake(attr)] = [] if isinstance(value, int) else value.tolist()
            continue
        value = method()
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        out[_snake(attr)] = value
    if "padding" in out:
        out["padding"] = _PADDING_NAMES.get(out["padding"], out["padding"])
    if "fused_activation_function" in out:
        act = out["fused_activation_function"]
        out["fused_activation_function"] = _ACTIVATION_NAMES.get(act, act)
    return out


def _quantization(tensor: Any) -> Quantization:
    q = tensor.Quantization()
    if q is None or q.ScaleLength() == 0:
        return Quantization()
    scales = np.asarray(q.ScaleAsNumpy(), dtype=np.float32).copy()
    zps = (
        np.asarray(q.ZeroPointAsNumpy(), dtype=np.int64).copy()
        if q.ZeroPointLength()
        else np.zeros(scales.shape, np.int64)
    )
    return Quantization(scales, zps, int(q.QuantizedDimension()))


def _buffers(model: Any, buf: bytes, source: str) -> list[bytes]:
    buffers: list[bytes] = []
    for i in range(model.BuffersLength()):
        b = model.Buffers(i)
        offset, size = int(b.Offset()), int(b.Size())
        if offset > 1:  # large-model layout: data after the FlatBuffer
            if offset + size > len(buf):
                raise TFLiteError(f"{source}: truncated (buffer {i} ends past the file)")
            buffers.append(buf[offset : offset + size])
        else:
            buffers.append(b.DataAsNumpy().tobytes() if b.DataLength() else b"")
    return buffers


def _tensor(t: Any, i: int, buffers: list[bytes], source: str) -> Tensor:
    """Tensor `i` with its constant data decoded (a checked size, a copy the model owns)."""
    type_name = _TYPE_NAMES.get(t.Type(), str(t.Type()))
    if type_name not in TENSOR_TYPES:
        raise TFLiteError(f"{source}: tensor {i} has unsupported type {type_name}")
    name = (t.Name() or b"").decode("utf-8", "replace")
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    signature = None
    if t.ShapeSignatureLength():
        signature = tuple(int(d) for d in t.ShapeSignatureAsNumpy())
    dtype, buffer = TENSOR_TYPES[type_name], int(t.Buffer())
    if buffer >= len(buffers):
        raise TFLiteError(f"{source}: tensor {name!r} names missing buffer {buffer}")
    raw, data = buffers[buffer], None
    if raw:
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if len(raw) != expected:
            raise TFLiteError(f"{source}: tensor {name!r} {shape} {dtype} needs {expected} "
                              f"bytes, its buffer holds {len(raw)}")  # fmt: skip
        data = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    return Tensor(name, shape, dtype, data, _quantization(t), signature, i)


def _opcodes(model: Any) -> list[tuple[str, int, str | None]]:
    """(builtin name, version, custom code) of every operator code."""
    opcodes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        # Schema rule: the real code is the larger of the int32 and the deprecated byte field.
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        custom = oc.CustomCode()
        custom = custom.decode("utf-8", "replace") if custom is not None else None
        opcodes.append((_OPCODE_NAMES.get(code, f"BUILTIN_{code}"), int(oc.Version()), custom))
    return opcodes


def _operator(op: Any, i: int, opcodes: list, tensors: list[Tensor], source: str) -> Operator:
    idx = int(op.OpcodeIndex())
    if idx >= len(opcodes):
        raise TFLiteError(f"{source}: operator {i} uses missing opcode index {idx}")
    name, version, custom = opcodes[idx]
    ins = tuple(int(x) for x in op.InputsAsNumpy()) if op.InputsLength() else ()
    outs = tuple(int(x) for x in op.OutputsAsNumpy()) if op.OutputsLength() else ()
    if name not in KNOWN_OPS:
        shown = f"CUSTOM({custom})" if name == "CUSTOM" else name
        first = tensors[outs[0]].name if outs and 0 <= outs[0] < len(tensors) else "?"
        known = ", ".join(sorted(KNOWN_OPS))
        raise TFLiteError(f"{source}: operator {i} is {shown} (producing {first!r}), which this "
                          f"reader does not know; known: {known}")  # fmt: skip
    for t in (*ins, *outs):
        if t >= len(tensors):
            raise TFLiteError(f"{source}: operator {i} ({name}) names missing tensor {t}")
    return Operator(name, ins, outs, _decode_options(op, name), version, custom)


def _parse(buf: bytes, source: str) -> TFLiteModel:
    model = tflite.Model.GetRootAs(buf, 0)
    if model.SubgraphsLength() < 1:
        raise TFLiteError(f"{source}: the model has no subgraph")
    graph = model.Subgraphs(0)
    buffers = _buffers(model, buf, source)
    tensors = [_tensor(graph.Tensors(i), i, buffers, source) for i in range(graph.TensorsLength())]
    opcodes = _opcodes(model)
    operators = [_operator(graph.Operators(i), i, opcodes, tensors, source)
                 for i in range(graph.OperatorsLength())]  # fmt: skip
    return TFLiteModel(
        tensors=tensors,
        operators=operators,
        inputs=[int(x) for x in graph.InputsAsNumpy()] if graph.InputsLength() else [],
        outputs=[int(x) for x in graph.OutputsAsNumpy()] if graph.OutputsLength() else [],
        description=(model.Description() or b"").decode("utf-8", "replace"),
        version=int(model.Version()),
        source=source,
    )


class TFLiteModel(Model):
    """The data model of a file read from disk or bytes."""

    @classmethod
    def from_file(cls, path: str | Path) -> TFLiteModel:
        path = Path(path)
        return cls.from_bytes(path.read_bytes(), source=str(path))

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, source: str = "<bytes>"
    ) -> TFLiteModel:
        buf = bytes(data)
        if len(buf) < 8:
            raise TFLiteError(f"{source}: {len(buf)} bytes, too short to be a TFLite FlatBuffer")
        if not flatbuffers.util.BufferHasIdentifier(buf, 0, FILE_IDENTIFIER):
            found = buf[4:8]
            raise TFLiteError(
                f"{source}: not a TFLite FlatBuffer (file identifier {found!r}, expected "
                f"{FILE_IDENTIFIER!r})"
            )
        root = int.from_bytes(buf[:4], "little")
        if root + 4 > len(buf):
            raise TFLiteError(f"{source}: truncated ({len(buf)} bytes, root table at {root})")
        try:
            return _parse(buf, source)
        except TFLiteError:
            raise
        except Exception as exc:  # flatbuffers raises struct/Index/ValueError on bad offsets
            raise TFLiteError(
                f"{source}: truncated or corrupt TFLite file ({len(buf)} bytes): "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def check_mobilenet(model: Model) -> str:
    """The MobileNet scope of the file ("MobilenetV3"...), or a TFLiteError naming what it is.

    Lets a user who hands in a tflite of another network read which network they gave.
    """
    for scope in MOBILENET_SCOPES:
        if any(t.name.startswith(scope) for t in model.tensors):
            return scope.rstrip("/")
    scopes: list[str] = []
    for t in model.tensors:
        top = t.name.split("/")[0]
        if top and top not in scopes:
            scopes.append(top)
    first = [t.name for t in model.tensors[:3]]
    raise TFLiteError(
        f"{model.source} is not a MobileNet tflite of this project (no tensor under "
        f"{', '.join(MOBILENET_SCOPES)}): top-level scopes {scopes[:6]}, first tensors {first}"
    )
