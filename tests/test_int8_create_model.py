"""`create_model(weights=x.tflite, int8=True)` and `load_int8(x.tflite)`: the integer path
through the public API, which accepts only what it honours."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mobilenetv3
from mobilenetv3.data.preprocess import load_image, preprocess_image

SMALL = "v3-small_224_1.0_uint8.tflite"


LOADERS = {"create_model": lambda path: mobilenetv3.create_model(weights=path, int8=True),
           "load_int8": mobilenetv3.load_int8}  # fmt: skip


@pytest.mark.parametrize("entry", LOADERS)
def test_int8_output_equals_litert_reference_kernels(shared, entry):
    interpreter = pytest.importorskip(
        "ai_edge_litert.interpreter", reason="ai-edge-litert is not installable here"
    )
    path = shared / "pretrained" / SMALL
    model = LOADERS[entry](path)
    x = preprocess_image(load_image(shared / "images" / "photos" / "chelsea.png"))[None]
    with torch.no_grad():
        ours = model(x).numpy()
    ref = interpreter.Interpreter(
        model_path=str(path), experimental_op_resolver_type=interpreter.OpResolverType.BUILTIN_REF
    )
    ref.allocate_tensors()
    inp, out = ref.get_input_details()[0], ref.get_output_details()[0]
    scale, zero_point = inp["quantization"]
    scaled = x.permute(0, 2, 3, 1).numpy() / scale
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)  # LiteRT: halves away from zero
    codes = np.clip(rounded + zero_point, 0, 255)
    ref.set_tensor(inp["index"], codes.astype(np.uint8))
    ref.invoke()
    out_scale, out_zero = out["quantization"]
    expected = (ref.get_tensor(out["index"]).astype(np.float32) - out_zero) * out_scale
    np.testing.assert_array_equal(ours, expected)
    assert int(ours.argmax()) in (282, 283, 286)  # tabby, tiger cat, Egyptian cat


def test_int8_needs_a_quantized_tflite(shared):
    with pytest.raises(ValueError, match="int8=True runs a quantized .tflite"):
        mobilenetv3.create_model(weights=shared / "reference" / "slim" / "v3_small_1.0", int8=True)


@pytest.mark.parametrize("option", [{"num_classes": 10}, {"features_only": True},
                                    {"endpoints": ["layer_3"]}, {"name": "v3_small_1.0"},
                                    {"depth_multiplier": 0.75}, {"dropout": 0.5}])  # fmt: skip
def test_int8_refuses_options_it_cannot_honour(shared, option):
    """The file's own graph has its own classes and layers: once silently ignored, now named."""
    with pytest.raises(ValueError, match=f"cannot take {next(iter(option))}"):
        mobilenetv3.create_model(weights=shared / "pretrained" / SMALL, int8=True, **option)


def test_load_int8_points_onnx_and_pt2_to_their_engine(tmp_path):
    for suffix in (".onnx", ".pt2"):
        with pytest.raises(ValueError, match="int8_runner"):
            mobilenetv3.load_int8(tmp_path / f"small_int8{suffix}")
