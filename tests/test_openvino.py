"""OpenVINO (float, CPU): every variant within 1e-4 of torch through our ONNX export, any batch,
`--engine openvino` in evaluate, and `auto` considering it (extra `[openvino]`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openvino", reason="needs the [openvino] extra: pip install .[openvino]")

from export_helpers import VARIANTS, export_every_variant, export_size  # noqa: E402

from mobilenetv3.cli import main  # noqa: E402
from mobilenetv3.commands.convert import run_convert  # noqa: E402
from mobilenetv3.export import example_input, export_onnx  # noqa: E402
from mobilenetv3.runtime import auto  # noqa: E402
from mobilenetv3.runtime.engines import make_runner  # noqa: E402

pytestmark = pytest.mark.openvino


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("openvino")
    return export_every_variant(folder, ".onnx", export_onnx, dynamic_batch=True, check=False)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_matches_torch(name: str, exported: dict) -> None:
    model, path, _ = exported[name]
    x = example_input(export_size(name), 3, seed=5)
    with torch.no_grad():
        expected = model(x).numpy()
    assert expected.std() > 0.1  # random non-trivial weights: a zero output cannot pass
    runner = make_runner("openvino", path, threads=1)
    assert runner.kind == "openvino" and runner.output == "logits"
    np.testing.assert_allclose(runner(x.numpy()), expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(runner(x[:1].numpy()), expected[:1], atol=1e-4, rtol=0)


def test_auto_considers_openvino() -> None:
    assert "openvino" in auto.float_candidates(torch.device("cpu"))


def test_evaluate_engine_openvino_predicts_as_torch(shared: Path, tmp_path: Path) -> None:
    weights = run_convert(shared / "pretrained" / "v3-small_224_1.0_uint8.tflite",
                          tmp_path / "small.safetensors", dequantize=True)  # fmt: skip
    data = tmp_path / "data"
    data.mkdir()
    for photo in sorted((shared / "images" / "imagenet-samples").iterdir())[:8]:
        (data / photo.name).symlink_to(photo)
    results = {}
    for engine in ("openvino", "torch"):
        out = tmp_path / f"{engine}.json"
        assert main(["evaluate", str(data), "--weights", str(weights), "--batch-size", "4",
                     "--workers", "1", "--engine", engine, "--device", "cpu",
                     "--json", str(out)]) == 0  # fmt: skip
        results[engine] = json.loads(out.read_text())
    assert results["openvino"]["engine"] == "openvino"
    assert results["openvino"]["top1"] == results["torch"]["top1"] > 0
