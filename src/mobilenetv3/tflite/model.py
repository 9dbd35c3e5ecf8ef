"""The one data model of a .tflite file: what the reader returns, the exporters build and the
writer serializes.

A `Model` holds subgraph 0 (the only one MobileNet files have). Buffers are not a separate
list here: a constant's data lives on its tensor (`Tensor.data`), so an exporter can rewrite a
weight in place (the int8 rewrite does); the writer lays out one buffer per constant.
Operator options are a dict keyed by the schema's field names in snake_case
(`stride_h`, `fused_activation_function`), enum values by name ("SAME", "RELU6").
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from flatbuffers import flexbuffers

from mobilenetv3.errors import WeightsError

__all__ = ["OPTIONS_TYPES", "POSTPROCESS", "TENSOR_TYPES", "DetectionPostProcess", "Model",
           "Operator", "Quantization", "Tensor", "TFLiteError"]  # fmt: skip

#: Schema TensorType name -> numpy dtype.
TENSOR_TYPES: dict[str, np.dtype] = {
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
}

#: Builtin operator -> the BuiltinOptions table its options are written in.
OPTIONS_TYPES = {
    "ADD": "AddOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "CONCATENATION": "ConcatenationOptions",
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "MEAN": "ReducerOptions",
    "MUL": "MulOptions",
    "RESHAPE": "ReshapeOptions",
    "RESIZE_BILINEAR": "ResizeBilinearOptions",
    "SOFTMAX": "SoftmaxOptions",
    "SQUEEZE": "SqueezeOptions",
}


#: The custom operator of SSD detection files (TF Object Detection's exporter; LiteRT ships it).
POSTPROCESS = "TFLite_Detection_PostProcess"
MAX_CUSTOM_OPTIONS = 1 << 16  # the post-process options are about 400 bytes


class TFLiteError(WeightsError):
    """A file that is not a readable TFLite model, or one this project cannot use: the message
    names the file and the part of it (tensor, operator, buffer) that is wrong."""


@dataclass(frozen=True)
class DetectionPostProcess:
    """The options of `TFLite_Detection_PostProcess` (its FlexBuffer map): NMS and box coder."""

    max_detections: int
    max_classes_per_detection: int
    detections_per_class: int
    use_regular_nms: bool
    nms_score_threshold: float
    nms_iou_threshold: float
    num_classes: int
    y_scale: float
    x_scale: float
    h_scale: float
    w_scale: float

    @classmethod
    def from_flexbuffer(cls, data: bytes, where: str) -> DetectionPostProcess:
        """Decode the map key by key (never the whole blob: a hostile one could nest deeply),
        each value checked for its kind and range; a TFLiteError naming `where` otherwise."""
        try:
            if not 3 <= len(data) <= MAX_CUSTOM_OPTIONS:
                raise _BadOptions(f"are {len(data)} bytes")
            root = flexbuffers.GetRoot(data)
            if not root.IsMap:
                raise _BadOptions("are not a FlexBuffer map")
            entries = root.AsMap
            keys = set(entries.Keys.Value)
            options = cls(**{f.name: _option(entries, keys, f.name, f.type) for f in fields(cls)})
        except Exception as exc:  # struct.error, IndexError...: the reads trust every offset
            problem = str(exc) if isinstance(exc, _BadOptions) else (
                f"cannot be decoded (an offset points outside them; {type(exc).__name__})")
            raise TFLiteError(f"{where}: the {POSTPROCESS} options {problem}; the file is "
                              "truncated or damaged: export it again") from exc  # fmt: skip
        options.check(where)
        return options

    def check(self, where: str) -> None:
        counts = (self.max_detections, self.max_classes_per_detection,
                  self.detections_per_class, self.num_classes)  # fmt: skip
        scales = (self.y_scale, self.x_scale, self.h_scale, self.w_scale)
        if not all(0 < c <= 1 << 16 for c in counts) or not all(0 < s < 1e6 for s in scales) \
                or not 0.0 <= self.nms_iou_threshold <= 1.0 \
                or not -1e6 < self.nms_score_threshold < 1e6:  # fmt: skip
            raise TFLiteError(f"{where}: {POSTPROCESS} options out of range ({self}); the file "
                              "is damaged")  # fmt: skip


class _BadOptions(ValueError):
    """What is wrong with a post-process options map (worded to follow "the options")."""


def _option(entries: Any, keys: set, key: str, kind: str) -> Any:
    """One value of the options map, of the kind its field declares."""
    if key not in keys:
        raise _BadOptions(f"lack {key!r}")
    ref = entries[key]
    if kind == "bool" and (ref.IsBool or ref.IsInt):
        return bool(ref.AsInt if ref.IsInt else ref.AsBool)
    if kind == "int" and ref.IsInt:
        return int(ref.AsInt)
    if kind == "float" and ref.IsNumeric:
        return float(ref.AsFloat if ref.IsFloat else ref.AsInt)
    raise _BadOptions(f"hold {key!r} as {ref._type.name} where {kind} is expected")


@dataclass
class Quantization:
    """Affine quantization of one tensor: real = (q - zero_point) * scale.

    `scales`/`zero_points` have one entry (per tensor), one per slice along
    `quantized_dimension` (per channel), or none (not quantized).
    """

    scales: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    zero_points: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    quantized_dimension: int = 0

    @classmethod
    def per_tensor(cls, scale: float, zero_point: int) -> Quantization:
        return cls(np.array([scale], np.float32), np.array([zero_point], np.int64))

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


@dataclass
class Tensor:
    """One tensor: its name is the TF op that produced it (slim scope path); `data` makes it a
    constant; `shape_signature` marks resizable dimensions (-1)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    data: np.ndarray | None = None
    quantization: Quantization = field(default_factory=Quantization)
    shape_signature: tuple[int, ...] | None = None
    index: int = -1  # its position in `Model.tensors`, set by the model


@dataclass
class Operator:
    """One operator: builtin name ("CONV_2D"), tensor indices (-1 = optional input absent)."""

    opcode: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    version: int = 1  # the kernel version LiteRT's registry is asked for
    custom_code: str | None = None  # a CUSTOM op's name, e.g. "TFLite_Detection_PostProcess"
    custom_options: bytes | None = None  # a CUSTOM op's options, a FlexBuffer map


@dataclass
class Model:
    """Subgraph 0 of a .tflite file (tensors, operators, inputs, outputs) and the file's
    description; also the builder the exporters append tensors and operators to."""

    tensors: list[Tensor] = field(default_factory=list)
    operators: list[Operator] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    description: str = ""
    version: int = 3
    source: str = "<memory>"

    def __post_init__(self) -> None:
        for i, t in enumerate(self.tensors):
            t.index = i

    # building ------------------------------------------------------------------------------

    def add(self, tensor: Tensor) -> int:
        tensor.index = len(self.tensors)
        self.tensors.append(tensor)
        return tensor.index

    def add_constant(self, name: str, array: np.ndarray) -> int:
        data = np.ascontiguousarray(array)
        return self.add(Tensor(name, data.shape, data.dtype, data))

    def add_activation(self, name: str, shape: tuple[int, ...], dtype: type = np.float32) -> int:
        return self.add(Tensor(name, tuple(shape), np.dtype(dtype)))

    def shape(self, tensor: int) -> tuple[int, ...]:
        return self.tensors[tensor].shape

    def op(self, opcode: str, inputs: list[int], name: str, shape: tuple[int, ...],
           **options: Any) -> int:  # fmt: skip
        """Append an operator producing one new float activation; return that tensor."""
        out = self.add_activation(name, shape)
        self.operators.append(Operator(opcode, tuple(inputs), (out,), options))
        return out

    # access --------------------------------------------------------------------------------

    @property
    def by_name(self) -> dict[str, Tensor]:
        return {t.name: t for t in self.tensors}

    def tensor(self, key: int | str) -> Tensor:
        """A tensor by index or by name (KeyError naming close matches if absent)."""
        if isinstance(key, int | np.integer):
            return self.tensors[int(key)]
        by_name = self.by_name
        if key not in by_name:
            near = [n for n in by_name if key.split("/")[-1] in n][:5]
            raise KeyError(f"no tensor {key!r} in {self.source}; similar: {near}")
        return by_name[key]

    def constant(self, key: int | str) -> np.ndarray | None:
        """The stored data of a constant tensor (a copy), None for activations."""
        data = self.tensor(key).data
        return None if data is None else data.copy()

    def dequantized(self, key: int | str) -> np.ndarray:
        """A constant as float32: (q - zero_point) * scale, per tensor or per channel."""
        info = self.tensor(key)
        if info.data is None:
            raise TFLiteError(f"{self.source}: tensor {info.index} {info.name!r} is an activation, "
                              "it has no stored data")  # fmt: skip
        q = info.quantization
        if info.dtype.kind == "f" and not q.is_quantized:
            return info.data.astype(np.float32)
        if not q.is_quantized:
            raise TFLiteError(f"{self.source}: tensor {info.index} {info.name!r} ({info.dtype}) "
                              "has no quantization")  # fmt: skip
        scales, zps = q.scales.astype(np.float32), q.zero_points.astype(np.int64)
        if scales.size > 1:  # per channel: broadcast along quantized_dimension
            shape = [1] * info.data.ndim
            shape[q.quantized_dimension] = scales.size
            scales, zps = scales.reshape(shape), zps.reshape(shape)
        centred = (info.data.astype(np.int64) - zps).astype(np.float32)
        return (centred * scales).astype(np.float32)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.source!r}, {len(self.tensors)} tensors, "
                f"{len(self.operators)} operators)")  # fmt: skip
