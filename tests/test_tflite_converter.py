"""A .tflite written by TensorFlow's own converter (not an official release file) loads as float
weights and reproduces TF's interpreter: folded depthwise tensors named by ';'-joined op names,
and the squeeze-excite gate's `+3` folded into the excite conv's bias (fused RELU6, MUL 1/6).

The fixture comes from tools/fixtures/make_tflite_converter_fixture.py (V3-Small 0.35, 16
classes, 64x64, random weights at unit activation scale).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import mobilenetv3
from mobilenetv3.tflite.reader import TFLiteModel

FOLDER = Path(__file__).parent / "fixtures" / "tflite"
TFLITE = FOLDER / "v3_small_0.35_converter.tflite"
REFERENCE = FOLDER / "v3_small_0.35_converter.npz"
SEED, SIZE = 3564, 64  # the generator's input rule


def _logits(model: torch.nn.Module) -> np.ndarray:
    x = np.random.default_rng(SEED).uniform(-1.0, 1.0, (2, SIZE, SIZE, 3)).astype(np.float32)
    with torch.no_grad():
        return model(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()


def test_the_fixture_has_the_converter_forms():
    """Guard: the file really is in the converter's form the loader must handle."""
    tfl = TFLiteModel.from_file(TFLITE)
    depthwise = [op for op in tfl.operators if op.opcode == "DEPTHWISE_CONV_2D"]
    assert all(";" in tfl.tensors[op.inputs[1]].name for op in depthwise)
    excite = [op for op in tfl.operators if op.opcode == "CONV_2D"
              and "squeeze_excite/Conv_1/" in tfl.tensors[op.inputs[1]].name]  # fmt: skip
    assert excite and all(op.options["fused_activation_function"] == "RELU6" for op in excite)
    assert not any(op.opcode == "ADD" and "squeeze_excite" in tfl.tensors[op.outputs[0]].name
                   for op in tfl.operators)  # fmt: skip


def test_converter_tflite_matches_tf_interpreter():
    reference = np.load(REFERENCE)
    model = mobilenetv3.create_model(weights=TFLITE)
    assert model.variant.name == "v3_small_0.35"
    expected = reference["lite_logits"]
    assert expected.std() > 0.1, "the fixture's logits must be far from constant"
    scale = np.abs(expected).max()
    logits = _logits(model)
    np.testing.assert_allclose(logits, expected, atol=1e-4 * scale, rtol=0)
    np.testing.assert_allclose(logits, reference["graph_logits"], atol=1e-4 * scale, rtol=0)
