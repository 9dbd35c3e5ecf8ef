"""Deployment formats: ONNX, float TFLite (written without TensorFlow), torch.export (.pt2) and
ExecuTorch (.pte, XNNPACK-delegated; extra `[executorch]`).

Every `export_*` writes atomically (a temp file beside the target, renamed when complete) and
then runs the file in its own engine against PyTorch, returning an `ExportResult` with the
max abs difference of the outputs (`export.check`). The exporters check their files through
the engines (`runtime.engines`), which never import an exporter; `export_runner` and
`engine_sources` give an engine that runs files a module by exporting it first. BatchNorm
folding and the per-layer input sizes come from the deployment graph (`core.deploy`).

`export()` sends a detection or segmentation model (SSDLite, LR-ASPP) to `export_head`
(`export.heads`: ONNX or TFLite at a fixed size, every output checked).

`export_onnx`, `export_tflite`, `export_pt2`, `export_pte` and `export_head` are imported
lazily so that importing this package does not pull in onnx, ExecuTorch or the FlatBuffer
schema.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from torch import nn

from mobilenetv3.atomic import atomic_output
from mobilenetv3.core.deploy import fold_batch_norm, input_sizes
from mobilenetv3.core.init import randomize
from mobilenetv3.export.check import (
    ExportResult,
    example_input,
    max_abs_diff,
    reference_output,
)
from mobilenetv3.heads import LRASPP, SSDLite
from mobilenetv3.runtime.engines import FILE_FORMAT, ModelOrPath, Runner, make_runner

FORMATS = ("onnx", "tflite", "pt2", "pte")

__all__ = [
    "FORMATS",
    "ExportResult",
    "atomic_output",
    "engine_sources",
    "example_input",
    "export",
    "export_head",
    "export_onnx",
    "export_pt2",
    "export_pte",
    "export_runner",
    "export_tflite",
    "fold_batch_norm",
    "input_sizes",
    "max_abs_diff",
    "randomize",
    "reference_output",
]


def export(model: nn.Module, path: str | os.PathLike, format: str, **options: Any) -> ExportResult:
    """Dispatch to `export_<format>`; a detection or segmentation model to `export_head`."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}: expected one of {', '.join(FORMATS)}")
    if isinstance(model, SSDLite | LRASPP):
        return __getattr__("export_head")(model, path, format, **options)
    exporter: Callable[..., ExportResult] = __getattr__(f"export_{format}")
    return exporter(model, path, **options)


def engine_sources(model_or_path: ModelOrPath, engines: Iterable[str], folder: Path,
                   image_size: tuple[int, int]) -> dict[str, ModelOrPath]:  # fmt: skip
    """What each engine runs: a path as given; a module as is for the torch engines, exported
    (unchecked, free batch) into `folder` once per file format for the others."""
    sources: dict[str, ModelOrPath] = {}
    for engine in engines:
        fmt = FILE_FORMAT.get(engine)
        if fmt is None or not isinstance(model_or_path, nn.Module):
            sources[engine] = model_or_path
            continue
        path = folder / f"model.{fmt}"
        if not path.exists():
            export(model_or_path, path, fmt, image_size=image_size, dynamic_batch=True,
                   check=False)  # fmt: skip
        sources[engine] = path
    return sources


def export_runner(kind: str, model_or_path: ModelOrPath, *,
                  image_size: tuple[int, int] = (224, 224), **options: Any) -> Runner:  # fmt: skip
    """`make_runner` that also takes a module for an engine running files: the module is
    exported to a temp folder kept for the runner's life (the process)."""
    folder = Path(tempfile.mkdtemp(prefix="mobilenetv3-runner-"))
    source = engine_sources(model_or_path, [kind], folder, tuple(image_size))[kind]
    return make_runner(kind, source, image_size=image_size, **options)


def __getattr__(name: str) -> Any:
    if name in ("export_onnx", "export_tflite", "export_pt2", "export_pte", "export_head"):
        module = {"export_onnx": "mobilenetv3.export.onnx",
                  "export_tflite": "mobilenetv3.export.tflite",
                  "export_pt2": "mobilenetv3.export.pt2",
                  "export_pte": "mobilenetv3.export.pte",
                  "export_head": "mobilenetv3.export.heads"}
        from importlib import import_module

        return getattr(import_module(module[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
