"""Reading a torch.export `.pt2` program without running code from it.

`torch.export.load` unpickles some archive members (it retries `torch.load` with
`weights_only=False` when the safe load fails) and evaluates strings of `models/model.json` as
Python (symbolic shapes through `sympy.sympify`, `guards_code` compiled into the module). A
.pt2 a user passes is data, so it is checked member by member first, and torch then loads the
checked bytes.
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
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

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



class ProgramFileError(ValueError):
    """A .pt2 that is damaged, or that torch could only load by unpickling (running code)."""



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
