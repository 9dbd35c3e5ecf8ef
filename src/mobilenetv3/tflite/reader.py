"""Read .tflite files (official MobileNet releases, float or uint8) without TensorFlow.

The FlatBuffer is walked with the schema-generated classes of the `tflite` package into the
data model of `tflite.model`; every tensor, operator and buffer is decoded eagerly in
`TFLiteModel.from_bytes`, so a truncated or foreign file fails there, with a `TFLiteError`
that says what is wrong, instead of later inside an interpreter. Of the CUSTOM operators it
knows SSD's `TFLite_Detection_PostProcess`, whose options are decoded (and so checked) here too.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import tflite

from mobilenetv3.tflite.model import (
    MAX_CUSTOM_OPTIONS,
    OPTIONS_TYPES,
    POSTPROCESS,
    TENSOR_TYPES,
    DetectionPostProcess,
    Model,
    Operator,
    Quantization,
    Tensor,
    TFLiteError,
)

__all__ = ["KNOWN_OPS", "MOBILENET_SCOPES", "TFLiteError", "TFLiteModel", "check_mobilenet"]

FILE_IDENTIFIER = b"TFL3"
MAX_TENSOR_BYTES = 1 << 31  # LiteRT's own bound: a tensor's byte size is an int32
DAMAGED = "the file is truncated or damaged: download or export it again"
MOBILENET_SCOPES = ("MobilenetV3/", "MobilenetV2/", "MobilenetEdgeTPU/")

#: Builtin operators the reader (and the int8 reference path) knows how to describe.
KNOWN_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE",
    "FULLY_CONNECTED", "HARD_SWISH", "LOGISTIC", "MAX_POOL_2D", "MEAN", "MUL", "PAD", "QUANTIZE",
    "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "SOFTMAX", "SQUEEZE",
})  # fmt: skip
#: CUSTOM operators the reader knows, by custom code: their options decoder.
KNOWN_CUSTOM_OPS = {POSTPROCESS: DetectionPostProcess.from_flexbuffer}


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


def _decode_options(op: Any, where: str) -> dict[str, Any]:
    """Builtin options as a plain dict with snake_case keys (`StrideW` -> `stride_w`).

    Enum fields become names ("SAME", "RELU6"); vectors become lists.
    """
    kind = op.BuiltinOptionsType()
    if kind == 0 or op.BuiltinOptions() is None:
        return {}
    cls_name = _OPTIONS_NAMES.get(kind)
    cls = getattr(tflite, cls_name, None) if cls_name else None
    if cls is None:
        raise TFLiteError(f"{where} has builtin options type {kind}, unknown to the tflite "
                          f"package; {DAMAGED}")  # fmt: skip
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


@contextmanager
def _part(source: str, what: str) -> Iterator[None]:
    """Turn what the flatbuffers accessors raise on a bad offset or length (struct.error,
    IndexError, numpy's ValueError, ...) while reading `what` into one TFLiteError naming it."""
    try:
        yield
    except TFLiteError:
        raise
    except Exception as exc:  # any of them: the accessors trust every offset they read
        raise TFLiteError(
            f"{source}: {what} cannot be decoded (an offset or length in it points outside the "
            f"file or at data of another kind; {type(exc).__name__}); {DAMAGED}"
        ) from exc


def _check_count(count: int, what: str, buf: bytes, source: str) -> int:
    """A vector length the file can hold (4 bytes or more per entry), before it is walked."""
    if count * 4 > len(buf):
        raise TFLiteError(f"{source}: the file declares {count} {what}, more than its "
                          f"{len(buf)} bytes can hold; {DAMAGED}")  # fmt: skip
    return count


def _quantization(tensor: Any, shape: tuple[int, ...], where: str) -> Quantization:
    q = tensor.Quantization()
    if q is None or q.ScaleLength() == 0:
        return Quantization()
    scales = np.asarray(q.ScaleAsNumpy(), dtype=np.float32).copy()
    zps = (
        np.asarray(q.ZeroPointAsNumpy(), dtype=np.int64).copy()
        if q.ZeroPointLength()
        else np.zeros(scales.shape, np.int64)
    )
    axis = int(q.QuantizedDimension())
    if zps.size != scales.size:
        raise TFLiteError(f"{where} has {scales.size} quantization scale(s) but {zps.size} zero "
                          f"point(s); {DAMAGED}")  # fmt: skip
    if scales.size > 1 and not (0 <= axis < len(shape) and shape[axis] == scales.size):
        raise TFLiteError(f"{where} {shape} has {scales.size} per-channel scales along "
                          f"dimension {axis}, which does not match its shape")  # fmt: skip
    return Quantization(scales, zps, axis)


def _buffer(model: Any, i: int, buf: bytes, source: str) -> bytes:
    """Buffer `i`'s bytes, its declared extent checked against the file first."""
    b = model.Buffers(i)
    offset, size = int(b.Offset()), int(b.Size())
    if offset <= 1:  # the data is a vector inside the FlatBuffer
        offset, size = 0, int(b.DataLength())
    if offset + size > len(buf):
        raise TFLiteError(f"{source}: buffer {i} declares {size} bytes (at offset {offset}), "
                          f"past the end of the {len(buf)}-byte file; {DAMAGED}")  # fmt: skip
    if offset:  # large-model layout: data after the FlatBuffer
        return buf[offset : offset + size]
    return b.DataAsNumpy().tobytes() if size else b""


def _tensor(t: Any, i: int, buffers: list[bytes], source: str) -> Tensor:
    """Tensor `i` with its constant data decoded (sizes checked before anything is allocated,
    a copy the model owns)."""
    name = (t.Name() or b"").decode("utf-8", "replace")
    where = f"{source}: tensor {i} {name[:200]!r}"
    type_name = _TYPE_NAMES.get(t.Type(), str(t.Type()))
    if type_name not in TENSOR_TYPES:
        raise TFLiteError(f"{where} has unsupported type {type_name}")
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    signature = None
    if t.ShapeSignatureLength():
        signature = tuple(int(d) for d in t.ShapeSignatureAsNumpy())
    dtype, buffer = TENSOR_TYPES[type_name], int(t.Buffer())
    nbytes = math.prod(shape) * dtype.itemsize
    if any(d < 0 for d in shape) or nbytes > MAX_TENSOR_BYTES:
        shown = str(shape) if len(shape) <= 8 else f"{str(shape[:8])[:-1]}, ... {len(shape)} dims)"
        raise TFLiteError(f"{where} has shape {shown} ({type_name}): a dimension is negative "
                          f"or it would exceed {MAX_TENSOR_BYTES} bytes; {DAMAGED}")  # fmt: skip
    if buffer >= len(buffers):
        raise TFLiteError(f"{where} names buffer {buffer}, the file has {len(buffers)}")
    raw, data = buffers[buffer], None
    if raw:
        if len(raw) != nbytes:
            raise TFLiteError(f"{where} {shape} {type_name} needs {nbytes} bytes, its buffer "
                              f"{buffer} holds {len(raw)}; {DAMAGED}")  # fmt: skip
        data = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    return Tensor(name, shape, dtype, data, _quantization(t, shape, where), signature, i)


def _opcodes(model: Any, count: int) -> list[tuple[str, int, str | None]]:
    """(builtin name, version, custom code) of every operator code."""
    opcodes = []
    for i in range(count):
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
        raise TFLiteError(f"{source}: operator {i} uses opcode index {idx}, the file has "
                          f"{len(opcodes)}; {DAMAGED}")  # fmt: skip
    name, version, custom = opcodes[idx]
    ins = tuple(int(x) for x in op.InputsAsNumpy()) if op.InputsLength() else ()
    outs = tuple(int(x) for x in op.OutputsAsNumpy()) if op.OutputsLength() else ()
    if name not in KNOWN_OPS and not (name == "CUSTOM" and custom in KNOWN_CUSTOM_OPS):
        shown = f"CUSTOM({custom})" if name == "CUSTOM" else name
        first = tensors[outs[0]].name if outs and 0 <= outs[0] < len(tensors) else "?"
        known = ", ".join([*sorted(KNOWN_OPS), *(f"CUSTOM({c})" for c in KNOWN_CUSTOM_OPS)])
        raise TFLiteError(f"{source}: operator {i} is {shown} (producing {first!r}), which this "
                          f"reader does not know; known: {known}")  # fmt: skip
    bad = [t for t in ins if not -1 <= t < len(tensors)] + [t for t in outs
                                                            if not 0 <= t < len(tensors)]
    if bad or not outs:
        what = f"tensor {bad[0]}" if bad else "no output tensor"
        raise TFLiteError(f"{source}: operator {i} ({name}) names {what}, the file has "
                          f"{len(tensors)} tensors; {DAMAGED}")  # fmt: skip
    kind, expected = _OPTIONS_NAMES.get(op.BuiltinOptionsType()), OPTIONS_TYPES.get(name)
    if expected is not None and op.BuiltinOptionsType() and kind != expected:
        raise TFLiteError(f"{source}: operator {i} ({name}, producing "
                          f"{tensors[outs[0]].name!r}) carries {kind} options, expected "
                          f"{expected or 'none'}; {DAMAGED}")  # fmt: skip
    where = f"{source}: operator {i} ({custom or name})"
    options = _decode_options(op, where)
    blob = _custom_options(op, custom, where) if name == "CUSTOM" else None
    return Operator(name, ins, outs, options, version, custom, blob)


def _custom_options(op: Any, custom: str, where: str) -> bytes:
    """A known custom operator's options blob, checked by decoding it (`KNOWN_CUSTOM_OPS`)."""
    length = int(op.CustomOptionsLength())
    if length > MAX_CUSTOM_OPTIONS:
        raise TFLiteError(f"{where} declares {length} bytes of custom options, more than "
                          f"{MAX_CUSTOM_OPTIONS}; {DAMAGED}")  # fmt: skip
    data = op.CustomOptionsAsNumpy().tobytes() if length else b""
    KNOWN_CUSTOM_OPS[custom](data, where)
    return data


def _graph_ends(graph: Any, tensors: list[Tensor], source: str) -> tuple[list[int], list[int]]:
    """The subgraph's input and output tensor indices, each in range."""
    inputs = [int(x) for x in graph.InputsAsNumpy()] if graph.InputsLength() else []
    outputs = [int(x) for x in graph.OutputsAsNumpy()] if graph.OutputsLength() else []
    for role, indices in (("input", inputs), ("output", outputs)):
        bad = [t for t in indices if not 0 <= t < len(tensors)]
        if bad:
            raise TFLiteError(f"{source}: graph {role} tensor {bad[0]} does not exist, the file "
                              f"has {len(tensors)} tensors; {DAMAGED}")  # fmt: skip
    return inputs, outputs


def _parse(buf: bytes, source: str) -> TFLiteModel:
    """Every part decoded in turn, each under its own name for the error a bad one raises."""
    with _part(source, "the model header"):
        model = tflite.Model.GetRootAs(buf, 0)
        if model.SubgraphsLength() < 1:
            raise TFLiteError(f"{source}: the model has no subgraph")
        graph = model.Subgraphs(0)
        n_buffers = _check_count(model.BuffersLength(), "buffers", buf, source)
        n_tensors = _check_count(graph.TensorsLength(), "tensors", buf, source)
        n_codes = _check_count(model.OperatorCodesLength(), "operator codes", buf, source)
        n_ops = _check_count(graph.OperatorsLength(), "operators", buf, source)
        description = (model.Description() or b"").decode("utf-8", "replace")
        version = int(model.Version())
    buffers = []
    for i in range(n_buffers):
        with _part(source, f"buffer {i}"):
            buffers.append(_buffer(model, i, buf, source))
    tensors = []
    for i in range(n_tensors):
        with _part(source, f"tensor {i}"):
            tensors.append(_tensor(graph.Tensors(i), i, buffers, source))
    with _part(source, "the operator codes"):
        opcodes = _opcodes(model, n_codes)
    operators = []
    for i in range(n_ops):
        with _part(source, f"operator {i}"):
            operators.append(_operator(graph.Operators(i), i, opcodes, tensors, source))
    with _part(source, "the graph's inputs and outputs"):
        inputs, outputs = _graph_ends(graph, tensors, source)
    return TFLiteModel(tensors=tensors, operators=operators, inputs=inputs, outputs=outputs,
                       description=description, version=version, source=source)  # fmt: skip


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
        return _parse(buf, source)


def check_mobilenet(model: Model) -> str:
    """The MobileNet scope of the file ("MobilenetV3"...), or a TFLiteError naming what it is.

    Lets a user who hands in a tflite of another network read which network they gave.
    """
    for scope in MOBILENET_SCOPES:  # SSD files nest the backbone in FeatureExtractor/
        if any(t.name.startswith((scope, f"FeatureExtractor/{scope}")) for t in model.tensors):
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
