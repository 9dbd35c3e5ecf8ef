"""Float TFLite written without TensorFlow: LiteRT runs it like PyTorch, our reader (and
`create_model(weights=...)`) reads back the same weights, names follow slim's scopes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from export_helpers import VARIANTS, export_every_variant, export_size
from tflite_helpers import operator_of

import mobilenetv3
from mobilenetv3.core.layers import ConvBNAct
from mobilenetv3.export import example_input, export_tflite, fold_batch_norm, randomize
from mobilenetv3.export import tflite as tflite_export
from mobilenetv3.runtime.engines import make_runner
from mobilenetv3.tflite.reader import TFLiteModel

ALLOWED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "HARD_SWISH", "ADD", "MUL", "AVERAGE_POOL_2D",
               "RESHAPE", "SOFTMAX"}  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return export_every_variant(tmp_path_factory.mktemp("tflite"), ".tflite", export_tflite)


@pytest.mark.parametrize("name", VARIANTS)
def test_litert_matches_pytorch(exported: dict, name: str) -> None:
    model, path, result = exported[name]
    assert result.max_abs_diff <= 1e-4
    x = example_input(export_size(name), 2, seed=5)
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(expected).max() > 1.0
    assert np.abs(make_runner("litert", path, threads=1)(x.numpy()) - expected).max() <= 1e-4


@pytest.mark.parametrize("name", VARIANTS)
def test_reader_reads_back_folded_weights(exported: dict, name: str) -> None:
    model, path, _ = exported[name]
    tfl = TFLiteModel.from_file(path)
    assert {op.opcode for op in tfl.operators} <= ALLOWED_OPS
    assert tfl.tensors[tfl.inputs[0]].shape == (1, *export_size(name), 3)
    scope = model.variant.spec.scope
    assert tfl.tensors[tfl.outputs[0]].name == f"{scope}/Logits/SpatialSqueeze"
    for layer in (m for m in model.modules() if isinstance(m, ConvBNAct)):
        weight, bias = fold_batch_norm(layer)
        depthwise = layer.conv.groups > 1
        name_w = "depthwise_weights" if depthwise else "weights"
        stored = tfl.tensor(f"{layer.conv.slim_scope}/{name_w}")
        layout = (1, 2, 3, 0) if depthwise else (0, 2, 3, 1)
        np.testing.assert_array_equal(tfl.dequantized(stored.index), weight.transpose(layout))
        op = next(o for o in tfl.operators if o.inputs[1:2] == (stored.index,))
        np.testing.assert_array_equal(tfl.dequantized(op.inputs[2]), bias)


def test_official_names_and_reload(exported: dict) -> None:
    """Names as in the official files; `create_model(weights=our.tflite)` reproduces logits."""
    model, path, _ = exported["v3_small_1.0"]
    tfl = TFLiteModel.from_file(path)
    for name in ("MobilenetV3/expanded_conv_3/expand/weights",
                 "MobilenetV3/expanded_conv_3/expand/Conv2D_Fold_bias",
                 "MobilenetV3/expanded_conv_3/depthwise/depthwise_Fold_bias",
                 "MobilenetV3/expanded_conv_3/squeeze_excite/Conv_1/Conv2D_bias",
                 "MobilenetV3/expanded_conv_3/squeeze_excite/Conv_1/Relu6",
                 "MobilenetV3/Conv_2/hard_swish/mul_1",
                 "MobilenetV3/Logits/Conv2d_1c_1x1/weights"):  # fmt: skip
        tfl.tensor(name)
    gate = operator_of(tfl, "MobilenetV3/expanded_conv_3/squeeze_excite/Conv_1/Relu6")
    assert gate.opcode == "ADD" and gate.options["fused_activation_function"] == "RELU6"
    reloaded = mobilenetv3.create_model(weights=path)
    x = example_input((224, 224), 1, seed=3)
    with torch.no_grad():
        np.testing.assert_allclose(reloaded(x).numpy(), model(x).numpy(), atol=1e-4)


def test_softmax_odd_size_and_resizable_batch(tmp_path: Path) -> None:
    model = randomize(mobilenetv3.create_model("v3_large_minimalistic_1.0"))
    result = export_tflite(model, tmp_path / "m.tflite", image_size=(97, 131), softmax=True)
    assert result.max_abs_diff <= 1e-5
    tfl = TFLiteModel.from_file(tmp_path / "m.tflite")
    assert tfl.tensors[tfl.outputs[0]].name == "MobilenetV3/Predictions/Softmax"
    runner = make_runner("litert", tmp_path / "m.tflite", threads=1)
    assert runner.output == "probabilities"
    probs = runner(example_input((97, 131), 3).numpy())
    assert probs.shape == (3, 1001)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_failed_export_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check fails after the bytes were written: neither file nor temp file remains."""

    def broken_check(*args: object, **kwargs: object) -> float:
        raise RuntimeError("interpreter crashed")

    monkeypatch.setattr(tflite_export, "check_tflite", broken_check)
    with pytest.raises(RuntimeError, match="crashed"):
        export_tflite(mobilenetv3.create_model("v3_small_0.75"), tmp_path / "m.tflite",
                      image_size=(64, 64))  # fmt: skip
    assert list(tmp_path.iterdir()) == []
