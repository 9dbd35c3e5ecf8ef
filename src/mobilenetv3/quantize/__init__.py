"""int8 post-training quantization (ONNX Runtime, PyTorch FX -> torch.export) and running the files.

    from mobilenetv3.quantize import quantize_folder, int8_runner
    quantize_folder("v3-small.tflite", "photos/", "small_int8.onnx", "onnx", num_images=500)
    runner = int8_runner("small_int8.onnx", threads=2)      # engines.Runner: NCHW -> logits

Formats: `onnx` (QDQ: int8 per-channel weights, uint8 per-tensor activations, ONNX Runtime
static quantization on our export, rewritten so ORT runs int8 kernels: `ort_graph`), `pt2`
(torch.export Q/DQ program from FX graph mode quantization with the x86 qconfig; see
`ptq_torch` for why not PT2E here), `tflite` (int8 per-channel weights, int8 activations,
float input/output through QUANTIZE/DEQUANTIZE, written without TensorFlow:
`export.tflite_int8`; runs in LiteRT; weights read from an official 8-bit .tflite keep its
learned activation ranges and weight codes by default), `pte` (ExecuTorch, PT2E with the
XNNPACK quantizer, lowered to XNNPACK int8 kernels: `ptq_pte`; extra `[executorch]`). The
official uint8 .tflite files run
as they are (`int8_runner(path)` / LiteRT).
Calibration photos are preprocessed exactly as for evaluation; keep them disjoint from the
photos the int8 model is then evaluated on (`calibration.split_samples`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from mobilenetv3.core import layers
from mobilenetv3.quantize.calibration import (
    MIN_IMAGES,
    CalibrationError,
    calibration_paths,
    load_batch,
    split_samples,
)
from mobilenetv3.quantize.files import (
    Int8FileError,
    Int8Model,
    int8_forward,
    int8_model_info,
    int8_runner,
    is_quantized_file,
    runs_only_in_engine,
)

FORMATS = ("onnx", "pt2", "tflite", "pte")
# activation calibration each format offers; the first is its default (tflite: see
# `default_method`)
METHODS = {"onnx": ("percentile", "entropy", "minmax"), "pt2": ("percentile",),
           "tflite": ("percentile", "minmax", "learned"), "pte": ("histogram",)}  # fmt: skip

__all__ = [
    "FORMATS",
    "METHODS",
    "MIN_IMAGES",
    "CalibrationError",
    "Int8FileError",
    "Int8Model",
    "UnquantizableModelError",
    "check_quantizable",
    "default_method",
    "calibration_paths",
    "int8_forward",
    "int8_runner",
    "is_quantized_file",
    "load_batch",
    "int8_model_info",
    "quantize_model",
    "quantize_folder",
    "runs_only_in_engine",
    "split_samples",
]


class UnquantizableModelError(ValueError):
    """A model with layers the int8 formats cannot fold or map: names them."""


# Leaf layers every int8 format folds or maps (BatchNorm only inside a ConvBNAct, where it
# folds into the conv; activations only those with an int8 form in all three formats).
_LEAVES = (nn.Conv2d, nn.BatchNorm2d, nn.Identity, nn.ReLU, nn.ReLU6, nn.Dropout, nn.Linear,
           nn.Sequential, layers.HardSwish, layers.SlimHardSigmoid, layers.ReduceTo1x1)  # fmt: skip


def check_quantizable(model: nn.Module) -> None:
    """Raise `UnquantizableModelError` naming every layer that would stay unfused (a BatchNorm
    outside a conv block) or has no int8 mapping (e.g. a GELU swapped in)."""
    bad = []
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            path = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.BatchNorm2d) and not isinstance(module, layers.ConvBNAct):
                bad.append(f"{path} (BatchNorm2d after a {type(module).__name__}: no conv to "
                           "fold it into)")  # fmt: skip
            elif not list(child.children()) and not isinstance(child, _LEAVES):
                bad.append(f"{path} ({type(child).__name__}: no int8 mapping)")
    if bad:
        raise UnquantizableModelError(
            f"cannot quantize {getattr(model.variant, 'name', 'this model')}: "
            f"{'; '.join(bad)}. The int8 formats take conv + BatchNorm + ReLU/ReLU6/hard-swish "
            "blocks, squeeze-excite, pooling and the classifier: restore those layers, or "
            "export the float model instead")


def default_method(model: nn.Module, fmt: str) -> str:
    """Percentile, except "learned" for int8 TFLite of weights read from an 8-bit .tflite."""
    if fmt == "tflite":
        from mobilenetv3.quantize.tflite_int8 import default_method as tflite_default

        return tflite_default(model)
    return METHODS[fmt][0]


def quantize_model(model: nn.Module, images: np.ndarray, output: str | os.PathLike, fmt: str,
                   *, method: str | None = None, **options: Any) -> Path:  # fmt: skip
    """Quantize a float `model` with calibration `images` (NCHW float32, preprocessed) into
    `output` as `fmt`, activation ranges by `method` (None: `default_method`); `options` go
    to the format's quantizer (e.g. `percentile=`)."""
    if fmt not in FORMATS:
        raise ValueError(f"int8 format {fmt!r} is not supported: use one of {', '.join(FORMATS)}")
    method = method or default_method(model, fmt)
    if method not in METHODS[fmt]:
        raise ValueError(f"--format {fmt} calibrates activations by {' or '.join(METHODS[fmt])}, "
                         f"not {method!r}")  # fmt: skip
    check_quantizable(model)
    if len(images) < MIN_IMAGES:
        raise CalibrationError(f"{len(images)} calibration images; give at least {MIN_IMAGES}")
    size = tuple(images.shape[-2:])
    if fmt == "onnx":
        from mobilenetv3.quantize.ptq_onnx import quantize_onnx

        return quantize_onnx(model, output, images, image_size=size, method=method, **options)
    if fmt == "tflite":
        from mobilenetv3.quantize.tflite_int8 import export_tflite_int8

        return export_tflite_int8(model, output, images, method=method, **options).path
    if fmt == "pte":
        from mobilenetv3.quantize.ptq_pte import quantize_pte

        return quantize_pte(model, output, images, **options)
    from mobilenetv3.quantize.ptq_torch import quantize_pt2

    return quantize_pt2(model, output, images, **options)


def quantize_folder(weights: Any, calibration: str | os.PathLike, output: str | os.PathLike,
                    fmt: str, *, num_images: int | None = 500, subset: str = "all",
                    max_pixels: int | None = None, **options: Any) -> Path:  # fmt: skip
    """`mobilenetv3 quantize`: float weights (any file `create_model` reads, or a model) and a
    folder of calibration photos -> an int8 file."""
    from mobilenetv3.factory import create_model
    from mobilenetv3.runtime.evaluate import model_preprocess

    # an 8-bit .tflite's weights are float weights here (dequantized), its ranges the QAT's
    model = weights if isinstance(weights, nn.Module) else create_model(weights=weights,
                                                                        dequantize=True)
    paths = calibration_paths(calibration, num_images, subset)
    images = load_batch(paths, model_preprocess(model), progress=True, max_pixels=max_pixels)
    return quantize_model(model.eval(), images, output, fmt, **options)
