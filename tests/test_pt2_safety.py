"""No code from data files: a crafted .pt2 never runs its pickle payload, and no unsafe
unpickling is reachable from user input anywhere in src/."""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from mobilenetv3.cli import main
from mobilenetv3.quantize.files import int8_model_info, read_metadata
from mobilenetv3.runtime import program_file
from mobilenetv3.runtime.program_file import ProgramFileError, load_program

PACKAGE = Path(program_file.__file__).parents[1]  # src/mobilenetv3


class Payload:
    """Unpickling this touches `marker`: stands in for any code an attacker would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def clean_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A program with a dynamic batch (so its JSON holds symbolic-shape expressions)."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    batch = {0: torch.export.Dim("batch", min=1, max=64)}
    program = torch.export.export(model, (torch.zeros(2, 3, 8, 8),), dynamic_shapes=(batch,))
    path = tmp_path_factory.mktemp("pt2") / "tiny.pt2"
    note = json.dumps({"variant": "tiny_int8", "num_classes": 4})
    torch.export.save(program, str(path), extra_files={"mobilenetv3": note})
    return path


def _pickled(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _rewrite(src: Path, dst: Path, change: dict[str, bytes | None]) -> Path:
    """A copy of the .pt2 `src` with members (names below the top folder) replaced, added or
    (None) removed; stored uncompressed as torch writes them."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as new:
        root = old.namelist()[0].split("/")[0]
        members = {n.split("/", 1)[1]: old.read(n) for n in old.namelist()}
        for name, data in (members | change).items():
            if data is not None:
                new.writestr(f"{root}/{name}", data)
    return dst


def _attacks(clean: Path, tmp: Path, marker: Path) -> dict[str, Path]:
    """One crafted file per way torch.export.load in torch 2.13 unpickles a member."""
    evil = _pickled((Payload(marker),))
    touch = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    with zipfile.ZipFile(clean) as z:
        name = next(n for n in z.namelist() if n.endswith("model_weights_config.json"))
        weights = json.loads(z.read(name))
        program = z.read(next(n for n in z.namelist() if n.endswith("models/model.json")))
    guarded = json.loads(program) | {"guards_code": [f"{touch} is None"]}
    symbol = re.search(rb'"expr_str": "(Symbol[^"]*)"', program).group(1)
    shaped = program.replace(symbol, f"{touch} or {symbol.decode()}".encode())
    first = next(iter(weights["config"].values()))
    first |= {"use_pickle": True}
    constants = {"config": {"c": {"path_name": "opaque_obj_0", "is_param": False,
                                  "use_pickle": True, "tensor_meta": None}}}  # fmt: skip
    return {
        "sample_inputs": _rewrite(clean, tmp / "a.pt2", {program_file.PT2_SAMPLE_INPUTS: evil}),
        "pickled_weight": _rewrite(clean, tmp / "b.pt2", {
            program_file.PT2_WEIGHTS: json.dumps(weights).encode(),
            f"data/weights/{first['path_name']}": evil}),
        "opaque_constant": _rewrite(clean, tmp / "c.pt2", {
            program_file.PT2_CONSTANTS: json.dumps(constants).encode(),
            "data/constants/opaque_obj_0": evil}),
        "legacy_weights": _rewrite(clean, tmp / "d.pt2", {"data/weights/model.pt": evil}),
        "guards_code": _rewrite(clean, tmp / "e.pt2", {
            "models/model.json": json.dumps(guarded).encode()}),
        "sympy_shape": _rewrite(clean, tmp / "f.pt2", {"models/model.json": shaped}),
    }  # fmt: skip


ATTACKS = ("sample_inputs", "pickled_weight", "opaque_constant", "legacy_weights",
           "guards_code", "sympy_shape")  # fmt: skip
# torch 2.13 runs these when it loads or calls the program unchecked
REAL_WITH_TORCH = ("sample_inputs", "guards_code", "sympy_shape")


@pytest.mark.parametrize("kind", REAL_WITH_TORCH)
def test_the_payload_is_real(clean_pt2: Path, tmp_path: Path, kind: str) -> None:
    """Without the checks, torch runs the payload (so the tests below would fail if
    load_program handed the file to torch unchecked)."""
    marker = tmp_path / "pwned"
    attack = _attacks(clean_pt2, tmp_path, marker)[kind]
    code = ("import sys, torch\ntry:\n    program = torch.export.load(sys.argv[1])\n"
            "    program.module()(torch.zeros(2, 3, 8, 8))\nexcept Exception: pass\n")  # fmt: skip
    subprocess.run([sys.executable, "-c", code, str(attack)], capture_output=True, timeout=300)
    assert marker.exists()


@pytest.mark.parametrize("kind", ATTACKS)
def test_crafted_pt2_never_runs_code(clean_pt2: Path, tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    attack = _attacks(clean_pt2, tmp_path, marker)[kind]
    for load in (load_program, read_metadata, int8_model_info):
        with pytest.raises(ProgramFileError, match=re.escape(str(attack))):
            load(attack)
    assert not marker.exists()


def test_crafted_pt2_through_the_cli(clean_pt2: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    marker = tmp_path / "pwned"
    attack = _attacks(clean_pt2, tmp_path, marker)["sample_inputs"]
    assert main(["evaluate", str(tmp_path), "--weights", str(attack)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mobilenetv3 evaluate: error:") and str(attack) in err
    assert "\n" not in err and not marker.exists()


def test_clean_pt2_still_loads(clean_pt2: Path) -> None:
    assert read_metadata(clean_pt2) == {"variant": "tiny_int8", "num_classes": 4}
    out = load_program(clean_pt2)(torch.ones(3, 3, 8, 8))
    assert out.shape == (3, 4, 6, 6)


@pytest.mark.parametrize("change", [
    {"models/model.json": b"{not json"},
    {program_file.PT2_SAMPLE_INPUTS: None},
    {"data/weights/weight_0": b"\x00" * 3},
    {program_file.PT2_WEIGHTS: b"[]"},
])  # fmt: skip
def test_damaged_pt2_is_one_clear_error(clean_pt2: Path, tmp_path: Path, change: dict) -> None:
    damaged = _rewrite(clean_pt2, tmp_path / "damaged.pt2", change)
    with pytest.raises(ProgramFileError, match=re.escape(str(damaged))):
        load_program(damaged)


def test_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "x.pt2").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(ProgramFileError, match="not a valid .pt2 archive"):
        load_program(tmp_path / "x.pt2")


# Places in src/ that may deserialize with pickle, each with why it is safe.
ALLOWED_UNPICKLING = {
    # torch.export.load only after read_program_archive refused every pickle-bearing member
    ("runtime/program_file.py", "torch.export.load"): 1,
    # re-reads the file export_pt2 has just written itself (a check of its own output)
    ("export/pt2.py", "torch.export.load"): 1,
}
UNPICKLING_CALLS = ("torch.load", "torch.export.load", "pickle.load", "pickle.loads",
                    "_pickle_load_obj", "marshal.load", "marshal.loads", "yaml.load",
                    "yaml.unsafe_load", "dill.load", "dill.loads")  # fmt: skip
UNPICKLING_MODULES = ("pickle", "dill", "cloudpickle", "jsonpickle", "marshal", "shelve")


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else "?"


def _unsafe_uses(source: str) -> list[str]:
    """The unpickling calls and imports in `source` (code only, not docstrings or comments);
    torch.load counts unless it says weights_only=True."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            found += [n for n in names if n.split(".")[0] in UNPICKLING_MODULES]
        if not isinstance(node, ast.Call):
            continue
        flags = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
        name = _dotted(node.func)
        if flags.get("weights_only") is False or flags.get("allow_pickle") is True:
            found.append(f"{name}(unsafe flag)")
        elif name.endswith(UNPICKLING_CALLS) and not (
            name == "torch.load" and flags.get("weights_only") is True
        ):
            found.append(name)
    return found


def test_no_unsafe_unpickling_in_src() -> None:
    """Every unpickling call in src/ is torch.load(weights_only=True) or in the allow-list."""
    found: dict[tuple[str, str], int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for use in _unsafe_uses(path.read_text()):
            key = (path.relative_to(PACKAGE).as_posix(), use)
            found[key] = found.get(key, 0) + 1
    assert found == ALLOWED_UNPICKLING


def test_the_scan_sees_unsafe_calls() -> None:
    source = ("import pickle\ntorch.load(f)\npickle.loads(b)\ntorch.load(f, weights_only=False)\n"
              "np.load(f, allow_pickle=True)\nyaml.load(s)\ntorch.export.load(p)\n"
              "torch.load(f, weights_only=True)\nyaml.safe_load(s)\n'torch.load(x)'\n")
    assert _unsafe_uses(source) == ["pickle", "torch.load", "pickle.loads",
                                    "torch.load(unsafe flag)", "np.load(unsafe flag)",
                                    "yaml.load", "torch.export.load"]  # fmt: skip
