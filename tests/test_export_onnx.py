"""ONNX export: every named variant runs in ONNX Runtime like PyTorch, with native ops only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from export_helpers import VARIANTS, export_every_variant, export_size

import mobilenetv3
from mobilenetv3.export import example_input, export_onnx, randomize
from mobilenetv3.runtime.engines import make_runner


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("onnx")
    return export_every_variant(folder, ".onnx", export_onnx, dynamic_batch=True)


@pytest.mark.parametrize("name", VARIANTS)
def test_matches_pytorch_batch_1_and_8(exported: dict, name: str) -> None:
    model, path, result = exported[name]
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    runner = make_runner("onnxruntime", path, threads=1)
    for batch in (1, 8):
        x = example_input(export_size(name), batch, seed=batch)
        with torch.no_grad():
            expected = model(x).numpy()
        assert np.abs(expected).max() > 1.0  # a meaningful check: logits far from 0
        assert np.abs(runner(x.numpy()) - expected).max() <= 1e-4


@pytest.mark.parametrize("name", ["v3_large_1.0", "v3_small_minimalistic_1.0", "v2_1.0"])
def test_graph_uses_native_ops_only(exported: dict, name: str) -> None:
    graph = onnx.load(exported[name][1])
    onnx.checker.check_model(graph)
    ops = Counter(node.op_type for node in graph.graph.node)
    assert all(node.domain in ("", "ai.onnx") for node in graph.graph.node)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 14
    assert ops["BatchNormalization"] == 0 and ops["Shape"] == 0 and ops["Pad"] == 5
    if name == "v3_large_1.0":
        assert ops["HardSwish"] > 0 and ops["HardSigmoid"] == 8
        gate = next(n for n in graph.graph.node if n.op_type == "HardSigmoid")
        attrs = {a.name: a.f for a in gate.attribute}
        assert attrs == pytest.approx({"alpha": 1 / 6, "beta": 0.5})
        scale = next(n for n in graph.graph.node if gate.output[0] in n.input)
        assert scale.op_type == "Mul"  # by 1.00002, slim's ceiling of the gate
    if name == "v2_1.0":
        assert ops["HardSwish"] == ops["HardSigmoid"] == 0


def test_official_weights_on_a_photo(shared: Path, tmp_path: Path) -> None:
    """Real weights saturate SE gates (where slim's gate is 1.00002, not 1): still <= 1e-4."""
    from mobilenetv3.data.preprocess import load_image, preprocess_image

    weights = shared / "pretrained" / "v3-small_224_1.0_uint8.tflite"
    model = mobilenetv3.create_model(weights=weights, dequantize=True)
    export_onnx(model, tmp_path / "m.onnx")
    photo = sorted((shared / "images" / "imagenet-samples").iterdir())[0]
    x = preprocess_image(load_image(photo))[None]
    with torch.no_grad():
        expected = model(x).numpy()
    assert expected.std() > 1.0  # real logits: a zero or constant output cannot pass
    out = make_runner("onnxruntime", tmp_path / "m.onnx", threads=1)(x.numpy())
    assert np.abs(out - expected).max() <= 1e-4


def test_static_batch_and_softmax(tmp_path: Path) -> None:
    model = randomize(mobilenetv3.create_model("v3_small_1.0"))
    result = export_onnx(model, tmp_path / "m.onnx", image_size=(64, 80), softmax=True)
    assert result.max_abs_diff <= 1e-6
    graph = onnx.load(tmp_path / "m.onnx").graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 3, 64, 80]
    assert graph.output[0].name == "probabilities"


def test_failed_export_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash mid-write (after the exporter created the temp file) leaves nothing behind."""

    def half_write(model: object, args: object, f: str, **kwargs: object) -> None:
        Path(f).write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch.onnx, "export", half_write)
    target = tmp_path / "m.onnx"
    with pytest.raises(RuntimeError, match="disk full"):
        export_onnx(mobilenetv3.create_model("v3_small_0.75"), target, image_size=(64, 64))
    assert list(tmp_path.iterdir()) == []


def test_rejects_old_opset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="opset"):
        export_onnx(mobilenetv3.create_model("v3_small_1.0"), tmp_path / "m.onnx", opset=13)
