"""Recognising and running int8 files (.onnx QDQ, .pt2 PT2E, .tflite int8/uint8, .pte XNNPACK).

An int8 file is not a set of float weights: `create_model` refuses .onnx / .pt2 files, and
`evaluate --weights <int8 file>` comes here instead. Every file this package writes carries a
small JSON note (variant, classes, preprocessing, calibration) so evaluation can label and
preprocess without the float weights; `Int8Model` is that note in the shape `evaluate` reads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from torch import nn

from mobilenetv3.runtime.engines import Runner, make_runner, read_pte_note
from mobilenetv3.runtime.program_file import ProgramFileError, load_program, read_program_archive

METADATA_KEY = "mobilenetv3"  # ONNX metadata_props key; pt2 extra file name
ENGINE_OF = {".onnx": ("onnxruntime", "openvino"), ".pt2": ("torch", "torch_compile"),
             ".tflite": ("litert",), ".pte": ("executorch",)}  # fmt: skip


class Int8FileError(ValueError):
    """An int8 file used where it cannot be: says which engine runs it."""


@dataclass
class Int8Model:
    """What `evaluate` needs of a model (name, classes, preprocessing) for an int8 file."""

    path: Path
    num_classes: int = 1001
    name: str = "int8"
    pretrained_info: dict[str, Any] = field(default_factory=dict)

    @property
    def variant(self) -> SimpleNamespace:
        return SimpleNamespace(name=self.name)


def metadata(model: nn.Module, **extra: Any) -> dict[str, Any]:
    """The note stored in a quantized file."""
    info = getattr(model, "pretrained_info", {}) or {}
    note = {"variant": f"{model.variant.name}_int8", "num_classes": model.num_classes}
    if info.get("preprocess"):
        note["preprocess"] = info["preprocess"]
    if info.get("labels"):
        note["labels"] = list(info["labels"])
    return note | extra


def _onnx_quantized(path: Path) -> bool:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(n.op_type in ("QuantizeLinear", "QLinearConv", "ConvInteger") for n in graph.node)


def _tflite_quantized(path: Path) -> bool:
    from mobilenetv3.tflite.reader import TFLiteModel

    model = TFLiteModel.from_bytes(path.read_bytes(), source=str(path))
    return any(t.dtype in (np.int8, np.uint8) for t in model.tensors)


def _pt2_quantized(path: Path) -> bool:
    return any("quantize" in str(node.target) for node in load_program(path).graph.nodes)


def _pte_quantized(path: Path) -> bool:
    return read_metadata(path).get("precision") == "int8"  # XNNPACK's int8 is opaque bytes


def is_quantized_file(path: str | os.PathLike) -> bool:
    """True for an 8-bit .onnx (Q/DQ or QLinear nodes), .tflite (8-bit tensors) or .pt2, or a
    .pte whose note says int8."""
    path = Path(path)
    check = {".onnx": _onnx_quantized, ".tflite": _tflite_quantized, ".pt2": _pt2_quantized,
             ".pte": _pte_quantized}  # fmt: skip
    suffix = path.suffix.lower()
    return suffix in check and path.is_file() and check[suffix](path)


def runs_only_in_engine(path: str | os.PathLike) -> bool:
    """An int8 .onnx / .pt2 / .pte: no float weights to read, so `evaluate` runs the file itself.
    (An 8-bit .tflite runs as int8 too, in LiteRT or `load_int8`: `runtime.auto`.)"""
    return Path(path).suffix.lower() in (".onnx", ".pt2", ".pte") and is_quantized_file(path)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON note of a file this package wrote ({} for other files)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        import onnx

        props = onnx.load(str(path), load_external_data=False).metadata_props
        return next((json.loads(p.value) for p in props if p.key == METADATA_KEY), {})
    if path.suffix.lower() == ".pt2":
        note = read_program_archive(path).members.get(f"extra/{METADATA_KEY}", b"{}")
        try:
            return dict(json.loads(note))
        except (ValueError, TypeError) as e:
            raise ProgramFileError(f"{path}: its {METADATA_KEY} note is not a JSON object") from e
    if path.suffix.lower() == ".pte":
        return read_pte_note(path)
    return {}


def int8_model_info(path: str | os.PathLike) -> Int8Model:
    """The `Int8Model` for an int8 file (variant and preprocessing from its note)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"int8 file not found: {path}")
    note = read_metadata(path)
    info = {k: note[k] for k in ("preprocess", "labels") if k in note}
    info |= {"source": str(path), "format": f"int8 {path.suffix.lstrip('.')}"}
    return Int8Model(path, int(note.get("num_classes", 1001)), note.get("variant", path.stem), info)


def int8_runner(
    path: str | os.PathLike,
    engine: str | None = None,
    *,
    threads: int = 2,
    batch_size: int = 1,
    image_size: tuple[int, int] = (224, 224),
) -> Runner:
    """A runner for an int8 file in its engine (default: the first that runs its format)."""
    path = Path(path)
    engines = ENGINE_OF.get(path.suffix.lower())
    if engines is None:
        raise Int8FileError(f"{path}: not an int8 file (.onnx, .pt2, .tflite or .pte)")
    engine = engine or engines[0]
    if engine not in engines:
        raise Int8FileError(f"{path.name} runs in {' or '.join(engines)}, not {engine}: "
                            f"use --engine {engines[0]}")  # fmt: skip
    return make_runner(engine, path, threads=threads, batch_size=batch_size, image_size=image_size)


def int8_forward(engine: str, path: str | os.PathLike, threads: int | None, batch: int,
                 image_size: tuple[int, int] = (224, 224)):  # -> evaluate.Forward
    """A forward function over torch batches for `evaluate` (see `commands/evaluate.py`)."""
    runner = int8_runner(path, engine, threads=threads or 2, batch_size=batch,
                         image_size=image_size)  # fmt: skip
    return lambda images: runner(images.numpy())
