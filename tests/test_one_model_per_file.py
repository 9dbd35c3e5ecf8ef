"""One model per file: an 8-bit .tflite is an int8 model on every engine (its float weights only
when asked), and exported float .onnx/.tflite/.pt2 files evaluate in their engines. Truth: TF
Lite's own top-1 on the first 50 sample photos, with its reference and its XNNPACK kernels
(`tools/fixtures/make_litert_top1_fixture.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mobilenetv3
from mobilenetv3.cli import main
from mobilenetv3.core.model import MobileNet
from mobilenetv3.weights.errors import WeightsError

SMALL = "v3-small_224_1.0_uint8.tflite"
TRUTH = json.loads((Path(__file__).parent / "fixtures" / "tflite" /
                    "v3_small_uint8_litert_top1.json").read_text())  # fmt: skip


def _photos(shared: Path, folder: Path, count: int) -> Path:
    folder.mkdir()
    for path in sorted((shared / "images" / "imagenet-samples").iterdir())[:count]:
        (folder / path.name).symlink_to(path)
    return folder


@pytest.fixture(scope="module")
def photos(shared, tmp_path_factory) -> Path:
    return _photos(shared, tmp_path_factory.mktemp("one_model") / "data", len(TRUTH["photos"]))


def _evaluate(data: Path, weights: Path, out: Path, *extra: str) -> dict:
    assert main(["evaluate", str(data), "--weights", str(weights), "--workers", "1",
                 "--json", str(out), *extra]) == 0  # fmt: skip
    return json.loads(out.read_text())


def test_an_8bit_tflite_loads_only_as_what_it_is_asked_to_be(shared):
    path = shared / "pretrained" / SMALL
    with pytest.raises(WeightsError, match="int8=True.*dequantize=True"):
        mobilenetv3.create_model(weights=path)
    assert isinstance(mobilenetv3.create_model(weights=path, dequantize=True), MobileNet)
    assert not isinstance(mobilenetv3.create_model(weights=path, int8=True), MobileNet)
    with pytest.raises(ValueError, match="dequantize"):
        mobilenetv3.create_model(weights=path, int8=True, dequantize=True)


def test_torch_runs_the_int8_model_as_litert_reference_kernels_do(shared, photos, tmp_path):
    result = _evaluate(photos, shared / "pretrained" / SMALL, tmp_path / "t.json",
                       "--engine", "torch")  # fmt: skip
    assert (result["engine"], result["precision"]) == ("torch", "int8")
    assert result["weights"].endswith(SMALL)
    assert result["predictions"] == TRUTH["reference"]  # bit-exact kernels: every photo


def test_litert_runs_the_int8_model_too(shared, photos, tmp_path):
    pytest.importorskip("ai_edge_litert")
    result = _evaluate(photos, shared / "pretrained" / SMALL, tmp_path / "l.json",
                       "--engine", "litert")  # fmt: skip
    assert (result["engine"], result["precision"]) == ("litert", "int8")
    same = sum(a == b for a, b in zip(result["predictions"], TRUTH["xnnpack"], strict=True))
    # XNNPACK kernels; the runner rounds input halves to even, the fixture's codes away from 0
    assert same >= len(TRUTH["xnnpack"]) - 2
    spread = sum(a != b for a, b in zip(TRUTH["reference"], TRUTH["xnnpack"], strict=True))
    disagree = sum(a != b for a, b in zip(result["predictions"], TRUTH["reference"], strict=True))
    assert disagree <= spread + 2  # torch (= reference) vs LiteRT: within the kernel spread


def test_onnx_runtime_refuses_the_int8_model_in_one_line(shared, capsys):
    argv = ["predict", str(shared / "images" / "photos" / "chelsea.png"),
            "--weights", str(shared / "pretrained" / SMALL), "--engine", "onnxruntime"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "--engine litert or torch" in error and "--dequantize" in error


def test_dequantize_runs_the_float_model_and_says_so(shared, tmp_path):
    data = _photos(shared, tmp_path / "few", 4)
    result = _evaluate(data, shared / "pretrained" / SMALL, tmp_path / "f.json",
                       "--engine", "torch", "--dequantize")  # fmt: skip
    assert (result["engine"], result["precision"]) == ("torch", "float32")


@pytest.fixture(scope="module")
def exported(shared, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("exported")
    weights = str(shared / "pretrained" / SMALL)
    for fmt in ("onnx", "tflite", "pt2"):
        assert main(["export", "--weights", weights, "--dequantize", "--format", fmt,
                     "--output", str(folder / f"small.{fmt}")]) == 0  # fixed batch 1: the default
    return {fmt: folder / f"small.{fmt}" for fmt in ("onnx", "tflite", "pt2")}


@pytest.mark.parametrize(("fmt", "engine"), [("onnx", "onnxruntime"), ("onnx", "auto"),
                                             ("tflite", "litert"), ("pt2", "torch")])
def test_exported_float_files_evaluate_in_their_engine(fmt, engine, exported, shared, tmp_path):
    if engine == "litert":
        pytest.importorskip("ai_edge_litert")
    data = _photos(shared, tmp_path / "few", 8)
    torch_run = _evaluate(data, shared / "pretrained" / SMALL, tmp_path / "t.json",
                          "--engine", "torch", "--dequantize")  # fmt: skip
    result = _evaluate(data, exported[fmt], tmp_path / "r.json", "--engine", engine)
    assert result["engine"] == (engine if engine != "auto" else "onnxruntime")
    assert result["precision"] == "float32" and result["weights"].endswith(f"small.{fmt}")
    assert result["predictions"] == torch_run["predictions"]
