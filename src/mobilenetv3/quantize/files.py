"""Recognising and running int8 files (.onnx QDQ, .pt2 PT2E, .tflite int8/uint8).

An int8 file is not a set of float weights: `create_model` refuses .onnx / .pt2 files, and
`evaluate --weights <int8 file>` comes here instead. Every file this package writes carries a
small JSON note (variant, classes, preprocessing, calibration) so evaluation can label and
preprocess without the float weights; `Int8Model` is that note in the shape `evaluate` reads.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from mobilenetv3.runtime.engines import LiteRTRunner, OnnxRuntimeRunner, Runner

METADATA_KEY = "mobilenetv3"  # ONNX metadata_props key; pt2 extra file name
ENGINE_OF = {".onnx": ("onnxruntime",), ".pt2": ("torch", "torch_compile"), ".tflite": ("litert",)}
MAX_PT2_BYTES = 2 << 30
PT2_WEIGHTS = "data/weights/model_weights_config.json"
PT2_CONSTANTS = "data/constants/model_constants_config.json"
PT2_SAMPLE_INPUTS = "data/sample_inputs/model.pt"
PT2_REQUIRED = ("archive_format", "archive_version", "models/model.json", PT2_WEIGHTS,
                PT2_CONSTANTS, PT2_SAMPLE_INPUTS)  # fmt: skip
# Every member torch.export.save writes for one program without pickled objects; anything
# else (legacy *.pt state, custom/opaque objects, AOTI, more programs) is refused.
_PT2_MEMBER = re.compile(r"archive_format|archive_version|byteorder|\.data/version"
                         r"|\.data/serialization_id|models/model\.json|data/sample_inputs/model\.pt"
                         r"|data/weights/model_weights_config\.json|data/weights/weight_\d+"
                         r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+"
                         r"|extra/[\w.-]+")  # fmt: skip


class Int8FileError(ValueError):
    """An int8 file used where it cannot be: says which engine runs it."""


class ProgramFileError(ValueError):
    """A .pt2 that is damaged, or that torch could only load by unpickling (running code)."""


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


def is_quantized_file(path: str | os.PathLike) -> bool:
    """True for an 8-bit .onnx (Q/DQ or QLinear nodes), .tflite (8-bit tensors) or .pt2."""
    path = Path(path)
    check = {".onnx": _onnx_quantized, ".tflite": _tflite_quantized, ".pt2": _pt2_quantized}
    suffix = path.suffix.lower()
    return suffix in check and path.is_file() and check[suffix](path)


def runs_only_in_engine(path: str | os.PathLike) -> bool:
    """An int8 .onnx / .pt2: no float weights to read, so `evaluate` runs the file itself.
    (An 8-bit .tflite still loads as float weights, dequantized; LiteRT runs it as is.)"""
    return Path(path).suffix.lower() in (".onnx", ".pt2") and is_quantized_file(path)


def _refuse(path: Path, problem: str) -> ProgramFileError:
    return ProgramFileError(f"{path}: {problem}; this package loads only plain torch.export "
                            "programs (tensors and JSON, nothing unpickled)")  # fmt: skip


def _check_payload_config(path: Path, name: str, text: bytes, entry_name: re.Pattern) -> None:
    """Every weight/constant must be raw tensor bytes: `use_pickle` entries are unpickled by
    torch with weights_only=False, custom/opaque objects with plain pickle."""
    try:
        entries = json.loads(text)["config"]
        unsafe = [k for k, v in entries.items()
                  if v["use_pickle"] is not False or not entry_name.fullmatch(v["path_name"])]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise _refuse(path, f"{name} is not a valid payload list ({type(e).__name__})") from e
    if unsafe:
        raise _refuse(path, f"{name} stores {unsafe[0]!r} as a pickled object")


def _check_sample_inputs(path: Path, data: bytes) -> None:
    """torch unpickles the sample inputs with weights_only=False when the safe load fails; the
    same safe load here fails first, so that fallback is never reached."""
    try:
        torch.load(io.BytesIO(data), weights_only=True)  # safe: restricted unpickler
    except Exception as e:  # any failure of the safe load is what would trigger the fallback
        raise _refuse(path, f"{PT2_SAMPLE_INPUTS} needs more than tensors to load") from e


# torch evaluates two kinds of strings from models/model.json as Python: symbolic shapes
# (`sympy.sympify`, i.e. eval) and `guards_code` (compiled into the module's guard function).
# Both must be plain arithmetic/comparisons over these names, nothing else.
_SYMPY_CALLS = frozenset({"Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max",
                          "Min", "Abs", "floor", "ceiling", "FloorDiv", "ModularIndexing",
                          "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt",
                          "IntTrueDiv", "FloatTrueDiv", "TruncToInt", "ToFloat"})  # fmt: skip
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim"})
_SYMBOL = re.compile(r"[a-z]{1,3}\d{1,9}")
_ARITHMETIC = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.operator,
               ast.unaryop, ast.boolop, ast.cmpop, ast.Load, ast.keyword)  # fmt: skip


def _safe_expression(text: object, guard: bool) -> bool:
    """`text` parses as arithmetic over symbols, sympy constructors (shapes) or tensor-size
    lookups `L['x'].size()[0]` (guards), with constant arguments: nothing that can run code."""
    try:
        tree = ast.parse(str(text), mode="eval")
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, _ARITHMETIC):
            continue
        if isinstance(node, ast.Constant):
            ok = isinstance(node.value, int | float | str | bool) or node.value is None
        elif isinstance(node, ast.Name):
            ok = _SYMBOL.fullmatch(node.id) is not None or node.id in _SYMPY_CALLS | {"L"}
        elif isinstance(node, ast.Call):
            func = node.func
            ok = (isinstance(func, ast.Name) and func.id in _SYMPY_CALLS and not guard) or (
                guard and isinstance(func, ast.Attribute) and func.attr in _GUARD_METHODS)
        elif isinstance(node, ast.Attribute):
            ok = guard and node.attr in _GUARD_METHODS
        elif isinstance(node, ast.Subscript):
            ok = guard
        else:
            ok = False
        if not ok:
            return False
    return True


def _expressions(doc: Any) -> Iterator[str]:
    """Every symbolic-shape string (`expr_str`) anywhere in a serialized program."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "expr_str":
                yield value
            else:
                yield from _expressions(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _expressions(value)


def _check_program_code(path: Path, text: bytes) -> None:
    try:
        program = json.loads(text)
        guards = list(program.get("guards_code") or [])
    except (ValueError, TypeError, AttributeError) as e:
        raise _refuse(path, f"models/model.json is not a program ({type(e).__name__})") from e
    unsafe = [g for g in guards if not isinstance(g, str) or not _safe_expression(g, guard=True)]
    unsafe += [e for e in _expressions(program) if not _safe_expression(e, guard=False)]
    if unsafe:
        raise _refuse(path, f"models/model.json holds code, not a shape or guard: "
                            f"{str(unsafe[0])[:80]!r}")  # fmt: skip


class Pt2Archive(NamedTuple):
    data: bytes  # the file's bytes, as checked
    members: dict[str, bytes]  # by name inside the archive's top folder


def read_program_archive(path: str | os.PathLike) -> Pt2Archive:
    """A .pt2 checked so that `torch.export.load` runs no code from it: only the members a
    program needs, stored uncompressed (sizes bounded by the file), weights as raw tensors,
    sample inputs loadable with torch's safe `weights_only` loader, shapes and guards that
    are expressions only."""
    path = Path(path)
    if path.stat().st_size > MAX_PT2_BYTES:
        raise _refuse(path, f"larger than {MAX_PT2_BYTES >> 30} GiB")
    data = path.read_bytes()
    members: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            root = infos[0].filename.split("/", 1)[0] if infos else ""
            for info in infos:
                top, _, name = info.filename.partition("/")
                if top != root or not _PT2_MEMBER.fullmatch(name) or name in members:
                    raise _refuse(path, f"unexpected member {info.filename!r}")
                if info.compress_type != zipfile.ZIP_STORED or info.file_size > len(data):
                    raise _refuse(path, f"member {info.filename!r} is compressed or oversized")
                members[name] = archive.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError,
            NotImplementedError, RuntimeError, struct.error) as e:  # zipfile's, on bad headers
        if isinstance(e, ProgramFileError):
            raise
        hint = "re-export it with `mobilenetv3 quantize` or torch.export.save"
        raise ProgramFileError(f"{path}: not a valid .pt2 archive ({e}); {hint}") from e
    missing = [n for n in PT2_REQUIRED if n not in members]
    if missing:
        raise _refuse(path, f"missing member {missing[0]!r}")
    _check_payload_config(path, PT2_WEIGHTS, members[PT2_WEIGHTS], re.compile(r"weight_\d+"))
    _check_payload_config(path, PT2_CONSTANTS, members[PT2_CONSTANTS], re.compile(r"tensor_\d+"))
    _check_sample_inputs(path, members[PT2_SAMPLE_INPUTS])
    _check_program_code(path, members["models/model.json"])
    return Pt2Archive(data, members)


def load_program(path: str | os.PathLike) -> nn.Module:
    """The runnable module of a .pt2 checked by `read_program_archive` (`torch.export.load` of
    the checked bytes, so the file cannot change in between; `.module()` inside the same
    error mapping, as a damaged graph may only fail there). An int8 graph calls
    `quantized_decomposed` ops, which exist only once their defining module is imported."""
    import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers the Q/DQ ops)

    path = Path(path)
    data = read_program_archive(path).data
    try:
        return torch.export.load(io.BytesIO(data)).module()
    except Exception as e:  # torch's deserializer raises anything on a damaged graph
        first = (str(e).strip().splitlines() or [""])[0]
        raise ProgramFileError(f"{path}: cannot load the torch.export program "
                               f"({type(e).__name__}: {first[:200]})") from e  # fmt: skip


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
    return {}


def load_int8(path: str | os.PathLike) -> Int8Model:
    """The `Int8Model` for an int8 file (variant and preprocessing from its note)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"int8 file not found: {path}")
    note = read_metadata(path)
    info = {k: note[k] for k in ("preprocess", "labels") if k in note}
    info |= {"source": str(path), "format": f"int8 {path.suffix.lstrip('.')}"}
    return Int8Model(path, int(note.get("num_classes", 1001)), note.get("variant", path.stem), info)


class ExportedProgramRunner(Runner):
    """A .pt2 program (PT2E int8 or float) run eagerly, or through inductor with `compile`:
    inductor fuses the quantize/dequantize pairs into int8 kernels; eager runs them as is."""

    kind = "torch"

    def __init__(self, program_or_path: Any, threads: int, compile: bool = False,
                 example: np.ndarray | None = None) -> None:  # fmt: skip
        super().__init__(threads)
        if isinstance(program_or_path, str | os.PathLike):
            self.module = load_program(program_or_path)
        else:  # an ExportedProgram or its module
            program = program_or_path
            self.module = program.module() if hasattr(program, "module") else program
        if compile:
            self.kind = "torch_compile"
            self.module = torch.compile(self.module, dynamic=False)
            if example is not None:
                self(example)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.no_grad():
            return self.module(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()


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
        raise Int8FileError(f"{path}: not an int8 file (.onnx, .pt2 or .tflite)")
    engine = engine or engines[0]
    if engine not in engines:
        raise Int8FileError(f"{path.name} runs in {' or '.join(engines)}, not {engine}: "
                            f"use --engine {engines[0]}")  # fmt: skip
    if engine == "onnxruntime":
        return OnnxRuntimeRunner(path, threads)
    if engine == "litert":
        return LiteRTRunner(path, threads)
    example = np.zeros((batch_size, 3, *image_size), np.float32)
    return ExportedProgramRunner(path, threads, engine == "torch_compile", example)


def int8_forward(engine: str, path: str | os.PathLike, threads: int | None, batch: int,
                 image_size: tuple[int, int] = (224, 224)):  # -> evaluate.Forward
    """A forward function over torch batches for `evaluate` (see `commands/evaluate.py`)."""
    runner = int8_runner(path, engine, threads=threads or 2, batch_size=batch,
                         image_size=image_size)  # fmt: skip
    return lambda images: runner(images.numpy())
