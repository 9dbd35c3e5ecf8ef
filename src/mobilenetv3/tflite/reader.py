"""Read .tflite files (official MobileNet releases, float or uint8) without TensorFlow.

The FlatBuffer is walked with the schema-generated classes of the `tflite` package; every
tensor, operator and buffer is decoded eagerly in `TFLiteModel.from_bytes`, so a truncated or
foreign file fails there, with a `TFLiteError` that says what is wrong, instead of later inside
an interpreter.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import tflite

__all__ = [
    "KNOWN_OPS",
    "MOBILENET_SCOPES",
    "OperatorInfo",
    "QuantizationInfo",
    "TFLiteError",
    "OperatorSpec",
    "TFLiteModel",
    "TensorSpec",
    "build_tflite",
    "TensorInfo",
    "check_mobilenet",
]

FILE_IDENTIFIER = b"TFL3"
MOBILENET_SCOPES = ("MobilenetV3/", "MobilenetV2/", "MobilenetEdgeTPU/")

#: Builtin operators the reader (and the int8 reference path) knows how to describe.
KNOWN_OPS = frozenset(
    {
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "DEQUANTIZE",
        "FULLY_CONNECTED",
        "HARD_SWISH",
        "LOGISTIC",
        "MAX_POOL_2D",
        "MEAN",
        "MUL",
        "PAD",
        "QUANTIZE",
        "RELU",
        "RELU6",
        "RESHAPE",
        "SOFTMAX",
        "SQUEEZE",
    }
)


def _enum_names(enum_cls: type) -> dict[int, str]:
    """Value -> name of a generated FlatBuffers enum class."""
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


_OPCODE_NAMES = _enum_names(tflite.BuiltinOperator)
_OPTIONS_NAMES = _enum_names(tflite.BuiltinOptions)
_ACTIVATION_NAMES = _enum_names(tflite.ActivationFunctionType)
_PADDING_NAMES = _enum_names(tflite.Padding)
_TYPE_NAMES = _enum_names(tflite.TensorType)
_NUMPY_TYPES: dict[str, np.dtype] = {
    "FLOAT32": np.dtype(np.float32),
    "FLOAT16": np.dtype(np.float16),
    "FLOAT64": np.dtype(np.float64),
    "INT8": np.dtype(np.int8),
    "UINT8": np.dtype(np.uint8),
    "INT16": np.dtype(np.int16),
    "UINT16": np.dtype(np.uint16),
    "INT32": np.dtype(np.int32),
    "UINT32": np.dtype(np.uint32),
    "INT64": np.dtype(np.int64),
    "UINT64": np.dtype(np.uint64),
    "BOOL": np.dtype(np.bool_),
    "COMPLEX64": np.dtype(np.complex64),
    "COMPLEX128": np.dtype(np.complex128),
    "STRING": np.dtype(np.object_),
}


class TFLiteError(ValueError):
    """A file that is not a readable TFLite model, or one this project cannot use."""


@dataclass(frozen=True)
class QuantizationInfo:
    """Affine quantization of one tensor: real = (q - zero_point) * scale.

    `scales`/`zero_points` have one entry (per tensor), one per slice along
    `quantized_dimension` (per channel), or none (not quantized).
    """

    scales: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    zero_points: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    quantized_dimension: int = 0

    @property
    def is_quantized(self) -> bool:
        return self.scales.size > 0

    @property
    def scale(self) -> float:
        """The per-tensor scale (as the float32 the file stores, widened)."""
        if self.scales.size != 1:
            raise TFLiteError(f"expected one scale, the tensor has {self.scales.size}")
        return float(self.scales[0])

    @property
    def zero_point(self) -> int:
        """The per-tensor zero point (0 where the file stores none)."""
        return int(self.zero_points[0]) if self.zero_points.size else 0


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of subgraph 0: its name is the TF op that produced it (slim scope path)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    buffer: int
    quantization: QuantizationInfo


@dataclass(frozen=True)
class OperatorInfo:
    """One operator: opcode name ("CONV_2D"), tensor indices (-1 = optional input absent)."""

    index: int
    opcode: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any]
    version: int = 1


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


_SKIP_ACCESSORS = {"Init", "GetRootAs"}


def _decode_options(op: Any, opcode: str) -> dict[str, Any]:
    """Builtin options as a plain dict with snake_case keys (`StrideW` -> `stride_w`).

    Enum fields become names ("SAME", "RELU6"); vectors become lists; convolutions and pools
    also get `dilation` = (h, w) and pools `filter` = (h, w) for convenience.
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
    if "dilation_h_factor" in out:
        out["dilation"] = (out["dilation_h_factor"], out["dilation_w_factor"])
    if "filter_height" in out:
        out["filter"] = (out["filter_height"], out["filter_width"])
    return out


def _quantization(tensor: Any) -> QuantizationInfo:
    q = tensor.Quantization()
    if q is None or q.ScaleLength() == 0:
        return QuantizationInfo()
    scales = np.asarray(q.ScaleAsNumpy(), dtype=np.float32).copy()
    zps = (
        np.asarray(q.ZeroPointAsNumpy(), dtype=np.int64).copy()
        if q.ZeroPointLength()
        else np.zeros(scales.shape, np.int64)
    )
    return QuantizationInfo(scales, zps, int(q.QuantizedDimension()))


class TFLiteModel:
    """Subgraph 0 of a .tflite file: tensors, operators, constants (read-only view)."""

    def __init__(
        self,
        *,
        source: str,
        version: int,
        description: str,
        tensors: list[TensorInfo],
        operators: list[OperatorInfo],
        inputs: list[int],
        outputs: list[int],
        buffers: list[bytes],
    ) -> None:
        self.source = source
        self.version = version
        self.description = description
        self.tensors = tensors
        self.operators = operators
        self.inputs = inputs
        self.outputs = outputs
        self._buffers = buffers
        self.by_name: dict[str, TensorInfo] = {t.name: t for t in tensors}

    # construction -----------------------------------------------------------------------

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
            return cls._parse(buf, source)
        except TFLiteError:
            raise
        except Exception as exc:  # flatbuffers raises struct/Index/ValueError on bad offsets
            raise TFLiteError(
                f"{source}: truncated or corrupt TFLite file ({len(buf)} bytes): "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    @classmethod
    def _parse(cls, buf: bytes, source: str) -> TFLiteModel:
        model = tflite.Model.GetRootAs(buf, 0)
        if model.SubgraphsLength() < 1:
            raise TFLiteError(f"{source}: the model has no subgraph")
        graph = model.Subgraphs(0)

        buffers: list[bytes] = []
        for i in range(model.BuffersLength()):
            b = model.Buffers(i)
            offset, size = int(b.Offset()), int(b.Size())
            if offset > 1:  # large-model layout: data after the FlatBuffer
                if offset + size > len(buf):
                    raise TFLiteError(f"{source}: truncated (buffer {i} ends past the file)")
                buffers.append(buf[offset : offset + size])
            elif b.DataLength():
                arr = b.DataAsNumpy()
                buffers.append(arr.tobytes())
            else:
                buffers.append(b"")

        tensors: list[TensorInfo] = []
        for i in range(graph.TensorsLength()):
            t = graph.Tensors(i)
            type_name = _TYPE_NAMES.get(t.Type(), str(t.Type()))
            if type_name not in _NUMPY_TYPES:
                raise TFLiteError(f"{source}: tensor {i} has unsupported type {type_name}")
            shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
            info = TensorInfo(
                index=i,
                name=(t.Name() or b"").decode("utf-8", "replace"),
                shape=shape,
                dtype=_NUMPY_TYPES[type_name],
                buffer=int(t.Buffer()),
                quantization=_quantization(t),
            )
            if info.buffer >= len(buffers):
                raise TFLiteError(
                    f"{source}: tensor {info.name!r} names missing buffer {info.buffer}"
                )
            raw = buffers[info.buffer]
            if raw and type_name != "STRING":
                expected = int(np.prod(shape, dtype=np.int64)) * info.dtype.itemsize
                if len(raw) != expected:
                    raise TFLiteError(
                        f"{source}: tensor {info.name!r} {shape} {info.dtype} needs {expected} "
                        f"bytes, its buffer holds {len(raw)}"
                    )
            tensors.append(info)

        opcodes: list[tuple[str, int]] = []
        for i in range(model.OperatorCodesLength()):
            oc = model.OperatorCodes(i)
            # Schema rule: the real code is the larger of the int32 and the deprecated byte field.
            code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
            name = _OPCODE_NAMES.get(code, f"BUILTIN_{code}")
            if name == "CUSTOM":
                custom = (oc.CustomCode() or b"").decode("utf-8", "replace")
                name = f"CUSTOM({custom})"
            opcodes.append((name, int(oc.Version())))

        operators: list[OperatorInfo] = []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            idx = int(op.OpcodeIndex())
            if idx >= len(opcodes):
                raise TFLiteError(f"{source}: operator {i} uses missing opcode index {idx}")
            name, version = opcodes[idx]
            ins = tuple(int(x) for x in op.InputsAsNumpy()) if op.InputsLength() else ()
            outs = tuple(int(x) for x in op.OutputsAsNumpy()) if op.OutputsLength() else ()
            if name not in KNOWN_OPS:
                first = tensors[outs[0]].name if outs and 0 <= outs[0] < len(tensors) else "?"
                raise TFLiteError(
                    f"{source}: operator {i} is {name} (producing {first!r}), which this reader "
                    f"does not know; known: {', '.join(sorted(KNOWN_OPS))}"
                )
            for t in (*ins, *outs):
                if t >= len(tensors):
                    raise TFLiteError(f"{source}: operator {i} ({name}) names missing tensor {t}")
            operators.append(OperatorInfo(i, name, ins, outs, _decode_options(op, name), version))

        ins = [int(x) for x in graph.InputsAsNumpy()] if graph.InputsLength() else []
        outs = [int(x) for x in graph.OutputsAsNumpy()] if graph.OutputsLength() else []
        return cls(
            source=source,
            version=int(model.Version()),
            description=(model.Description() or b"").decode("utf-8", "replace"),
            tensors=tensors,
            operators=operators,
            inputs=ins,
            outputs=outs,
            buffers=buffers,
        )

    # access ------------------------------------------------------------------------------

    def tensor(self, key: int | str) -> TensorInfo:
        """A tensor by index or by name (KeyError naming close matches if absent)."""
        if isinstance(key, int | np.integer):
            return self.tensors[int(key)]
        try:
            return self.by_name[key]
        except KeyError:
            near = [n for n in self.by_name if key.split("/")[-1] in n][:5]
            raise KeyError(f"no tensor {key!r} in {self.source}; similar: {near}") from None

    def constant(self, key: int | str) -> np.ndarray | None:
        """The stored data of a constant tensor (its own dtype, shaped), None for activations."""
        info = self.tensor(key)
        raw = self._buffers[info.buffer] if info.buffer < len(self._buffers) else b""
        if not raw:
            return None
        return np.frombuffer(raw, dtype=info.dtype).reshape(info.shape).copy()

    def dequantized(self, key: int | str) -> np.ndarray:
        """A constant as float32: (q - zero_point) * scale, per tensor or per channel."""
        info = self.tensor(key)
        data = self.constant(info.index)
        if data is None:
            raise TFLiteError(f"tensor {info.name!r} is an activation, it has no stored data")
        q = info.quantization
        if info.dtype.kind == "f" and not q.is_quantized:
            return data.astype(np.float32)
        if not q.is_quantized:
            raise TFLiteError(f"tensor {info.name!r} ({info.dtype}) has no quantization")
        scales = q.scales.astype(np.float32)
        zps = q.zero_points.astype(np.int64)
        if scales.size > 1:  # per channel: broadcast along quantized_dimension
            shape = [1] * data.ndim
            shape[q.quantized_dimension] = scales.size
            scales = scales.reshape(shape)
            zps = zps.reshape(shape)
        centred = (data.astype(np.int64) - zps).astype(np.float32)
        return (centred * scales).astype(np.float32)

    def operator_of(self, key: int | str) -> OperatorInfo | None:
        """The operator producing a tensor (None for graph inputs and constants)."""
        index = self.tensor(key).index
        return next((op for op in self.operators if index in op.outputs), None)

    def __repr__(self) -> str:
        return (
            f"TFLiteModel({self.source!r}, {len(self.tensors)} tensors, "
            f"{len(self.operators)} operators)"
        )


def check_mobilenet(model: TFLiteModel) -> str:
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


# writing (small synthetic files for tests and fixtures) ----------------------------------------


@dataclass
class TensorSpec:
    """A tensor to write: `data` makes it a constant; scales/zero_points quantize it."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype | type
    data: np.ndarray | None = None
    scales: list[float] | None = None
    zero_points: list[int] | None = None
    quantized_dimension: int = 0


@dataclass
class OperatorSpec:
    """An operator to write: builtin name ("CONV_2D"), tensor indices, options by field name."""

    opcode: str
    inputs: list[int]
    outputs: list[int]
    options_type: str | None = None  # e.g. "Conv2DOptions"
    options: dict[str, Any] = field(default_factory=dict)
    custom_code: str | None = None


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def build_tflite(
    tensors: list[TensorSpec],
    operators: list[OperatorSpec],
    inputs: list[int],
    outputs: list[int],
    description: str = "mobilenetv3 synthetic",
) -> bytes:
    """A minimal single-subgraph .tflite FlatBuffer built with the `tflite` builder functions.

    Why: tests need float files, foreign networks and unknown operators, which no shared file
    provides; writing them here keeps those tests independent of TensorFlow.
    """
    b = flatbuffers.Builder(1024)
    type_codes = {v: k for k, v in _TYPE_NAMES.items()}
    numpy_to_type = {dt: type_codes[name] for name, dt in _NUMPY_TYPES.items()}
    opcode_values = {v: k for k, v in _OPCODE_NAMES.items()}

    def int_vector(start: Callable[[Any, int], None], values: list[int]) -> int:
        start(b, len(values))
        for v in reversed(values):
            b.PrependInt32(int(v))
        return b.EndVector()

    def offset_vector(start: Callable[[Any, int], None], offsets: list[int]) -> int:
        start(b, len(offsets))
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    # buffers: 0 is the empty sentinel, then one per constant
    buffer_offsets: list[int] = []
    tflite.BufferStart(b)
    buffer_offsets.append(tflite.BufferEnd(b))
    tensor_buffer: list[int] = []
    for spec in tensors:
        if spec.data is None:
            tensor_buffer.append(0)
            continue
        raw = np.ascontiguousarray(spec.data, dtype=np.dtype(spec.dtype)).tobytes()
        b.StartVector(1, len(raw), 16)
        b.head = b.head - len(raw)
        b.Bytes[b.head : b.head + len(raw)] = raw
        vec = b.EndVector()
        tflite.BufferStart(b)
        tflite.BufferAddData(b, vec)
        tensor_buffer.append(len(buffer_offsets))
        buffer_offsets.append(tflite.BufferEnd(b))

    tensor_offsets: list[int] = []
    for spec, buf_index in zip(tensors, tensor_buffer, strict=True):
        name = b.CreateString(spec.name)
        shape = int_vector(tflite.TensorStartShapeVector, list(spec.shape))
        quant = None
        if spec.scales is not None:
            scales = b.CreateNumpyVector(np.asarray(spec.scales, dtype=np.float32))
            zps = b.CreateNumpyVector(
                np.asarray(spec.zero_points or [0] * len(spec.scales), dtype=np.int64)
            )
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, scales)
            tflite.QuantizationParametersAddZeroPoint(b, zps)
            tflite.QuantizationParametersAddQuantizedDimension(b, spec.quantized_dimension)
            quant = tflite.QuantizationParametersEnd(b)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, numpy_to_type[np.dtype(spec.dtype)])
        tflite.TensorAddBuffer(b, buf_index)
        tflite.TensorAddName(b, name)
        if quant is not None:
            tflite.TensorAddQuantization(b, quant)
        tensor_offsets.append(tflite.TensorEnd(b))

    codes: list[tuple[str, str | None]] = []
    op_offsets: list[int] = []
    for spec in operators:
        key = (spec.opcode, spec.custom_code)
        if key not in codes:
            codes.append(key)
        ins = int_vector(tflite.OperatorStartInputsVector, spec.inputs)
        outs = int_vector(tflite.OperatorStartOutputsVector, spec.outputs)
        options = None
        if spec.options_type:
            getattr(tflite, f"{spec.options_type}Start")(b)
            for key_name, value in spec.options.items():
                if key_name == "padding" and isinstance(value, str):
                    value = getattr(tflite.Padding, value)
                if key_name == "fused_activation_function" and isinstance(value, str):
                    value = getattr(tflite.ActivationFunctionType, value)
                getattr(tflite, f"{spec.options_type}Add{_camel(key_name)}")(b, value)
            options = getattr(tflite, f"{spec.options_type}End")(b)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, codes.index(key))
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        if options is not None:
            tflite.OperatorAddBuiltinOptionsType(
                b, getattr(tflite.BuiltinOptions, spec.options_type)
            )
            tflite.OperatorAddBuiltinOptions(b, options)
        op_offsets.append(tflite.OperatorEnd(b))

    code_offsets: list[int] = []
    for opcode, custom in codes:
        value = opcode_values[opcode]
        custom_off = b.CreateString(custom) if custom is not None else None
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(value, 127))
        tflite.OperatorCodeAddBuiltinCode(b, value)
        tflite.OperatorCodeAddVersion(b, 1)
        if custom_off is not None:
            tflite.OperatorCodeAddCustomCode(b, custom_off)
        code_offsets.append(tflite.OperatorCodeEnd(b))

    t_vec = offset_vector(tflite.SubGraphStartTensorsVector, tensor_offsets)
    o_vec = offset_vector(tflite.SubGraphStartOperatorsVector, op_offsets)
    in_vec = int_vector(tflite.SubGraphStartInputsVector, inputs)
    out_vec = int_vector(tflite.SubGraphStartOutputsVector, outputs)
    sg_name = b.CreateString("main")
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, t_vec)
    tflite.SubGraphAddOperators(b, o_vec)
    tflite.SubGraphAddInputs(b, in_vec)
    tflite.SubGraphAddOutputs(b, out_vec)
    tflite.SubGraphAddName(b, sg_name)
    subgraph = tflite.SubGraphEnd(b)

    sg_vec = offset_vector(tflite.ModelStartSubgraphsVector, [subgraph])
    codes_vec = offset_vector(tflite.ModelStartOperatorCodesVector, code_offsets)
    buf_vec = offset_vector(tflite.ModelStartBuffersVector, buffer_offsets)
    desc = b.CreateString(description)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, codes_vec)
    tflite.ModelAddSubgraphs(b, sg_vec)
    tflite.ModelAddDescription(b, desc)
    tflite.ModelAddBuffers(b, buf_vec)
    model = tflite.ModelEnd(b)
    b.Finish(model, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())
