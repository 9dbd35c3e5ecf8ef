"""Deployment formats: ONNX, float TFLite (written without TensorFlow) and torch.export (.pt2).

Every `export_*` writes atomically (a temp file beside the target, renamed when complete) and
then runs the file in its own engine against PyTorch, returning an `ExportResult` with the
max abs difference of the outputs. The shared pieces live here: BatchNorm folding, the
per-layer input sizes of a model at a fixed image size, and the atomic write.

`export_onnx`, `export_tflite` and `export_pt2` are imported lazily so that importing this
package does not pull in onnx or the FlatBuffer schema.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenetv3.atomic import atomic_output
from mobilenetv3.core.init import randomize
from mobilenetv3.core.layers import ConvBNAct

FORMATS = ("onnx", "tflite", "pt2")
SUFFIXES = {"onnx": ".onnx", "tflite": ".tflite", "pt2": ".pt2"}

__all__ = [
    "FORMATS",
    "ExportResult",
    "atomic_output",
    "example_input",
    "export",
    "export_onnx",
    "export_pt2",
    "export_tflite",
    "fold_batch_norm",
    "input_sizes",
    "max_abs_diff",
    "randomize",
]


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how far its engine's outputs are from PyTorch's."""

    path: Path
    format: str
    max_abs_diff: float | None  # None when the check was skipped

    def __str__(self) -> str:
        diff = "unchecked" if self.max_abs_diff is None else f"max abs diff {self.max_abs_diff:.3g}"
        return f"{self.format} -> {self.path} ({diff} vs PyTorch)"


def fold_batch_norm(layer: ConvBNAct) -> tuple[np.ndarray, np.ndarray]:
    """Conv weights (OIHW) and bias with the eval-mode BatchNorm folded in, as TFLite stores
    them; computed in float64 so folding adds no rounding of its own."""

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float64)

    weight = arr(layer.conv.weight)
    bias = arr(layer.conv.bias) if layer.conv.bias is not None else np.zeros(weight.shape[0])
    bn = layer.bn
    if isinstance(bn, nn.BatchNorm2d):
        scale = arr(bn.weight) / np.sqrt(arr(bn.running_var) + bn.eps)
        weight = weight * scale[:, None, None, None]
        bias = (bias - arr(bn.running_mean)) * scale + arr(bn.bias)
    return weight.astype(np.float32), bias.astype(np.float32)


def input_sizes(model: nn.Module, image_size: tuple[int, int]) -> dict[nn.Module, tuple]:
    """The NCHW input shape every submodule sees at `image_size`: static padding and pooling
    windows for the exported graphs are fixed from it."""
    shapes: dict[nn.Module, tuple] = {}

    def hook(module: nn.Module, args: tuple, _: Any) -> None:
        shapes.setdefault(module, tuple(args[0].shape))

    hooks = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *image_size))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def example_input(image_size: tuple[int, int], batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A reproducible NCHW batch in [-1, 1], the model's input range."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, *image_size, generator=generator) * 2 - 1


def max_abs_diff(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"output shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b)))


def reference_output(model: nn.Module, x: torch.Tensor, softmax: bool) -> np.ndarray:
    """PyTorch's answer for the check after an export."""
    with torch.inference_mode():
        out = model.eval()(x)
    return (out.softmax(-1) if softmax else out).numpy()


def export(model: nn.Module, path: str | os.PathLike, format: str, **options: Any) -> ExportResult:
    """Dispatch to `export_<format>`."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}: expected one of {', '.join(FORMATS)}")
    exporter: Callable[..., ExportResult] = __getattr__(f"export_{format}")
    return exporter(model, path, **options)


def __getattr__(name: str) -> Any:
    if name in ("export_onnx", "export_tflite", "export_pt2"):
        module = {"export_onnx": "mobilenetv3.export.onnx",
                  "export_tflite": "mobilenetv3.tflite.writer",
                  "export_pt2": "mobilenetv3.export.pt2"}
        from importlib import import_module

        return getattr(import_module(module[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
