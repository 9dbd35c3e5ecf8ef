"""int8 TFLite export without TensorFlow: the float graph of `export.tflite`, calibrated on real
photos in PyTorch, rewritten with the TFLite int8 quantization spec.

    images = quantize.load_batch(quantize.calibration_paths("photos/", 500, "odd"))
    export_tflite_int8(model, "small_int8.tflite", images)

Why a rewrite of the float graph rather than a second writer: the operators, names and
shapes stay those of the float export (one emitter per layer type), so the int8 file differs
only in its tensors' types and quantization, and in HARD_SWISH written as ADD -> MUL -> MUL
(XNNPACK has no int8 HARD_SWISH, see `_decompose_hard_swish`):

- weights int8, symmetric per output channel (zero point 0; quantized dimension 0 for
  CONV_2D, 3 for DEPTHWISE_CONV_2D); biases int32 with scale input_scale * weight_scale[c];
- weights that already lie on an 8-bit grid (dequantized from an 8-bit file) keep it: a
  channel whose codes fit in [-127, 127] on that grid gets the grid's step as its scale, so
  re-quantizing changes none of its values (`_grid_step`);
- activations int8, asymmetric per tensor, ranges from the float graph run in PyTorch on the
  calibration photos: every operator output observed (hard-swish outputs, the SE gate's ADD
  and MUL, residual adds, logits), per batch the `percentile` / 100 - `percentile` quantiles
  (min/max with `method="minmax"`), averaged over batches, widened to include 0; or, with
  `method="learned"`, the ranges the 8-bit .tflite the weights came from carries (the ranges
  quantization-aware training learned: `learned_ranges`), photos calibrating only what the
  file lacks;
- AVERAGE_POOL_2D and RESHAPE keep their input's scale and zero point, SOFTMAX outputs
  scale 1/256 zero point -128, the SE constants (3, 1/6) are int8 with their own scale;
- the boundary: float32 `input` -> QUANTIZE (scale 1/127, zero point 0: the model's [-1, 1]
  input on the grid of the official 8-bit files, whose uint8 input has zero point 128) and
  DEQUANTIZE -> float32 output under the slim name; with `float_io=False` the input and
  output are the int8 tensors themselves (input codes = round(127 * x), output real =
  scale * (q - zero_point) from the file).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobilenetv3.atomic import atomic_output
from mobilenetv3.export.check import ExportResult, max_abs_diff, reference_output
from mobilenetv3.export.tflite import build_graph
from mobilenetv3.tflite.interpreter.ops_float import run_float
from mobilenetv3.tflite.model import Model, Operator, Quantization, Tensor
from mobilenetv3.tflite.reader import TFLiteModel
from mobilenetv3.tflite.writer import serialize
from mobilenetv3.weights.archive import list_tar_members, read_tar_member

INPUT_SCALE = 1.0 / 127.0  # input codes round(127 * x): the official uint8 files' input scale
METHODS = {"percentile": 99.99, "minmax": 100.0}  # the percentile kept per batch
LEARNED = "learned"  # ranges read from the 8-bit file the weights came from
MAX_SAMPLES = 1 << 24  # kthvalue on at most this many values per tensor and batch
# Operator versions LiteRT's registry expects for int8 kernels (1: unchanged from float).
_VERSIONS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "ADD": 2, "MUL": 2, "AVERAGE_POOL_2D": 2,
             "SOFTMAX": 2, "QUANTIZE": 2, "DEQUANTIZE": 2}  # fmt: skip
Range = tuple[float, float]

__all__ = [
    "LEARNED",
    "METHODS",
    "calibrate",
    "calibrate_model",
    "default_method",
    "export_tflite_int8",
    "int8_tflite_bytes",
    "learned_ranges",
    "quantize_graph",
]


# -- calibration: the float graph run in PyTorch, observed op by op ----------------------------


def _batch_range(x: torch.Tensor, percentile: float) -> Range:
    """The (100 - p)th and pth percentiles of the values of `x` (min and max at p = 100)."""
    flat = x.detach().reshape(-1).float()
    if flat.numel() > MAX_SAMPLES:
        flat = flat[:: -(-flat.numel() // MAX_SAMPLES)]
    tail = int(flat.numel() * (100.0 - percentile) / 100.0)
    if tail == 0:
        lo, hi = torch.aminmax(flat)
        return float(lo), float(hi)
    hi = flat.topk(tail + 1).values[-1]  # the tails are short: topk beats a full selection
    lo = flat.topk(tail + 1, largest=False).values[-1]
    return float(lo), float(hi)


def calibrate(g: Model, images: np.ndarray, *, method: str = "percentile",
              batch_size: int = 16) -> dict[int, Range]:  # fmt: skip
    """Range of every operator output of `g` over `images` (NCHW float32, preprocessed):
    per-batch percentiles (or min/max) averaged over the batches, widened to include 0."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}: use {', '.join(METHODS)}")
    seen: dict[int, list[Range]] = {}

    def observe(index: int, value: torch.Tensor) -> None:
        seen.setdefault(index, []).append(_batch_range(value, METHODS[method]))

    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            run_float(g, torch.from_numpy(images[start : start + batch_size]), observe)
    means = {i: np.mean(np.asarray(r), axis=0) for i, r in seen.items()}
    return {i: (min(float(lo), 0.0), max(float(hi), 0.0)) for i, (lo, hi) in means.items()}


# -- the int8 rewrite -------------------------------------------------------------------------


def _asymmetric(lo: float, hi: float) -> Quantization:
    """int8 scale and zero point whose grid covers [lo, hi] (which contains 0)."""
    scale = max((hi - lo) / 255.0, 1e-8)
    return Quantization.per_tensor(scale, int(np.clip(round(-128 - lo / scale), -128, 127)))


def _grid_step(values: np.ndarray) -> float | None:
    """The step of the 8-bit grid through 0 that all `values` lie on, if they do: weights
    dequantized from an 8-bit file are step * (code - zero point)."""
    distinct = np.unique(values.astype(np.float64))
    if distinct.size < 2:
        return None
    codes = np.round(distinct / np.diff(distinct).min())
    if np.abs(codes).max() > 255:
        return None
    # least squares over every value: the float32 step the file stores, not a rounded difference
    step = float(np.float32((codes @ distinct) / (codes @ codes)))
    return step if np.abs(distinct / step - codes).max() < 1e-3 else None


def _symmetric(values: np.ndarray, axis: int | None) -> tuple[np.ndarray, Quantization]:
    """int8 codes in [-127, 127] with zero point 0, one scale per slice along `axis`; slices
    that fit on the values' own 8-bit grid (`_grid_step`) keep it exactly."""
    reduce = tuple(d for d in range(values.ndim) if d != axis)
    peak = np.abs(values).max(axis=reduce, keepdims=True) if values.ndim else np.abs(values)
    scale = np.where(peak > 0, peak / 127.0, 1.0)
    step = _grid_step(values) if axis is not None else None
    if step is not None:
        scale = np.where(np.round(peak / step) <= 127, step, scale)
    scale = scale.astype(np.float32)
    codes = np.clip(np.round(values / scale), -127, 127).astype(np.int8)
    return codes, Quantization(scale.reshape(-1), np.zeros(scale.size, np.int64), axis or 0)


def _set_codes(t: Tensor, codes: np.ndarray, quantization: Quantization) -> None:
    t.data, t.dtype, t.quantization = codes, codes.dtype, quantization


def _quantize_conv(g: Model, op: Operator) -> None:
    """Weights per output channel, bias int32 at input_scale * weight_scale[c]."""
    weights, bias = (g.tensors[i] for i in op.inputs[1:3])
    axis = 3 if op.opcode == "DEPTHWISE_CONV_2D" else 0
    _set_codes(weights, *_symmetric(weights.data, axis))
    bias_scale = g.tensors[op.inputs[0]].quantization.scales[0] * weights.quantization.scales
    codes = np.clip(np.round(bias.data / bias_scale), -(2**31), 2**31 - 1).astype(np.int32)
    _set_codes(bias, codes, Quantization(bias_scale.astype(np.float32),
                                         np.zeros(codes.size, np.int64)))  # fmt: skip


def _output_quantization(g: Model, op: Operator, ranges: dict[int, Range]) -> Quantization:
    if op.opcode in ("AVERAGE_POOL_2D", "RESHAPE"):  # the int8 kernels keep scale and zero point
        return g.tensors[op.inputs[0]].quantization
    if op.opcode == "SOFTMAX":
        return Quantization.per_tensor(1.0 / 256.0, -128)
    return _asymmetric(*ranges[op.outputs[0]])


def _quantize_op(g: Model, op: Operator, ranges: dict[int, Range]) -> None:
    if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        _quantize_conv(g, op)
    elif op.opcode in ("ADD", "MUL"):
        for t in (g.tensors[i] for i in op.inputs if g.tensors[i].data is not None):
            _set_codes(t, *_symmetric(t.data, None))
    out = g.tensors[op.outputs[0]]
    out.quantization, out.dtype = _output_quantization(g, op, ranges), np.dtype(np.int8)
    op.version = _VERSIONS.get(op.opcode, 1)


def _float_boundary(g: Model) -> None:
    """QUANTIZE after the float `input`, DEQUANTIZE to a float output under the slim name."""
    source, output = g.inputs[0], g.outputs[0]
    codes = g.add(Tensor("input_int8", g.shape(source), np.dtype(np.int8),
                         quantization=Quantization.per_tensor(INPUT_SCALE, 0)))  # fmt: skip
    for op in g.operators:
        op.inputs = tuple(codes if i == source else i for i in op.inputs)
    g.operators.insert(0, Operator("QUANTIZE", (source,), (codes,),
                                   version=_VERSIONS["QUANTIZE"]))  # fmt: skip
    logits = g.tensors[output]
    result = g.add_activation(logits.name, logits.shape)
    logits.name = f"{logits.name}_int8"
    g.operators.append(Operator("DEQUANTIZE", (output,), (result,),
                                version=_VERSIONS["DEQUANTIZE"]))  # fmt: skip
    g.outputs = [result]


def _decompose_hard_swish(g: Model, ranges: dict[int, Range]) -> dict[int, Range]:
    """Each HARD_SWISH as x * (relu6(x + 3) * 0.16667): ADD (fused RELU6) -> MUL -> MUL, the
    SE gate's ops. XNNPACK delegates HARD_SWISH in float only; an int8 one falls back to the
    builtin kernel and splits the delegated graph in two (Small 1.0 at 224: 4.0 ms -> 1.0 ms
    in LiteRT, 1 thread). The gate has the fixed ranges [0, 6] and [0, 1]; the output keeps
    the HARD_SWISH output's tensor (name, calibrated range). Returns `ranges` extended."""
    ranges, ops = dict(ranges), []
    for op in g.operators:
        if op.opcode != "HARD_SWISH":
            ops.append(op)
            continue
        x, out = op.inputs[0], op.outputs[0]
        scope, shape = g.tensors[out].name.rsplit("/", 1)[0], g.shape(x)
        three = g.add_constant(f"{scope}/add/y", np.array(3.0, np.float32))
        sixth = g.add_constant(f"{scope}/mul/y", np.array(0.16667, np.float32))
        relu6 = g.add_activation(f"{scope}/Relu6", shape)
        gate = g.add_activation(f"{scope}/mul", shape)
        ranges[relu6], ranges[gate] = (0.0, 6.0), (0.0, 1.0)
        ops += [Operator("ADD", (x, three), (relu6,), {"fused_activation_function": "RELU6"}),
                Operator("MUL", (relu6, sixth), (gate,), {"fused_activation_function": "NONE"}),
                Operator("MUL", (x, gate), (out,), {"fused_activation_function": "NONE"})]
    g.operators = ops
    return ranges


def quantize_graph(g: Model, ranges: dict[int, Range], float_io: bool = True) -> None:
    """Rewrite the float graph `g` in place as int8 (see the module docstring)."""
    ranges = _decompose_hard_swish(g, ranges)
    source = g.tensors[g.inputs[0]]
    source.quantization, source.dtype = Quantization.per_tensor(INPUT_SCALE, 0), np.dtype(np.int8)
    for op in g.operators:
        _quantize_op(g, op, ranges)
    if float_io:
        source.quantization, source.dtype = Quantization(), np.dtype(np.float32)
        _float_boundary(g)


def _learned_source(model: nn.Module) -> TFLiteModel | None:
    """The 8-bit .tflite (file, or member of a release .tgz) `model`'s weights were read from."""
    source = (getattr(model, "pretrained_info", None) or {}).get("source")
    path = Path(source) if source else None
    if path is None or not path.is_file():
        return None
    if path.suffix.lower() == ".tflite":
        tfl = TFLiteModel.from_file(path)
    elif tarfile.is_tarfile(path) and any(m.endswith(".tflite") for m in list_tar_members(path)):
        tfl = TFLiteModel.from_bytes(read_tar_member(path, ".tflite"), f"{path}:.tflite")
    else:
        return None
    quantized = any(t.quantization.is_quantized and t.dtype != np.float32 for t in tfl.tensors)
    return tfl if quantized else None


def learned_ranges(g: Model, source: TFLiteModel) -> dict[int, Range]:
    """The range of every operator output of `g` whose (slim) name has a per-tensor quantized
    activation in `source`: for weights trained with quantized activations, the ranges they
    were trained with."""
    found = {t.name: t for t in source.tensors if t.quantization.scales.size == 1}
    ranges = {}
    for op in g.operators:
        tensor = found.get(g.tensors[op.outputs[0]].name)
        if tensor is not None and np.issubdtype(tensor.dtype, np.integer):
            info, q = np.iinfo(tensor.dtype), tensor.quantization
            ranges[op.outputs[0]] = (q.scale * (info.min - q.zero_point),
                                     q.scale * (info.max - q.zero_point))  # fmt: skip
    return ranges


def default_method(model: nn.Module) -> str:
    """"learned" for weights read from an 8-bit .tflite, else "percentile"."""
    return LEARNED if _learned_source(model) is not None else "percentile"


def calibrate_model(model: nn.Module, images: np.ndarray, *, softmax: bool = False,
                    method: str = "percentile") -> dict[int, Range]:  # fmt: skip
    """`calibrate` on the float graph of `model` at the size of `images`; with "learned", the
    ranges of the 8-bit file the weights came from, min/max on `images` for the rest."""
    if method not in (*METHODS, LEARNED):
        raise ValueError(f"unknown calibration method {method!r}: use "
                         f"{', '.join((*METHODS, LEARNED))}")  # fmt: skip
    graph = build_graph(model.eval(), tuple(images.shape[-2:]), softmax)
    if method != LEARNED:
        return calibrate(graph, images, method=method)
    source = _learned_source(model)
    learned = learned_ranges(graph, source) if source is not None else {}
    if not learned:
        where = (getattr(model, "pretrained_info", None) or {}).get("source", "not a file")
        raise ValueError(f"method 'learned' reads activation ranges from the 8-bit .tflite the "
                         f"weights came from; these came from {where}, which has none for "
                         f"{model.variant.name}: use method 'percentile' or 'minmax'")  # fmt: skip
    return calibrate(graph, images, method="minmax") | learned


def int8_tflite_bytes(model: nn.Module, images: np.ndarray, *, softmax: bool = False,
                      float_io: bool = True, method: str | None = None,
                      dynamic_batch: bool = False,
                      ranges: dict[int, Range] | None = None) -> bytes:  # fmt: skip
    """The int8 .tflite of `model` calibrated on `images` (NCHW float32; their size is the
    file's input size) as bytes; `ranges` from `calibrate_model` skip the calibration;
    `method` None: `default_method(model)`."""
    size = tuple(images.shape[-2:])
    if ranges is None:
        method = method or default_method(model)
        ranges = calibrate_model(model, images, softmax=softmax, method=method)
    g = build_graph(model.eval(), size, softmax, dynamic_batch)
    quantize_graph(g, ranges, float_io)
    g.description = f"mobilenetv3 int8 export: {model.variant.name} at {size}"
    return serialize(g)


def export_tflite_int8(model: nn.Module, path: str | os.PathLike, images: np.ndarray, *,
                       softmax: bool = False, float_io: bool = True, method: str | None = None,
                       dynamic_batch: bool = False, check: bool = True,
                       ranges: dict[int, Range] | None = None) -> ExportResult:  # fmt: skip
    """Write the int8 .tflite atomically, then run it in LiteRT on a few calibration images
    against PyTorch (the max abs difference measures quantization error, not a bug bound)."""
    data = int8_tflite_bytes(model, images, softmax=softmax, float_io=float_io, method=method,
                             dynamic_batch=dynamic_batch, ranges=ranges)  # fmt: skip
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
        diff = _check(tmp, model, images[:4], softmax) if check else None
    return ExportResult(Path(path), "tflite-int8", diff)


def _check(path: Path, model: nn.Module, images: np.ndarray, softmax: bool) -> float:
    from mobilenetv3.runtime.engines import make_runner

    runner = make_runner("litert", path, threads=1)
    x = torch.from_numpy(images)
    return max_abs_diff(runner(images), reference_output(model, x, softmax))
