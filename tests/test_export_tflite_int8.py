"""int8 TFLite written without TensorFlow: follows the int8 spec, runs in LiteRT (XNNPACK and
BUILTIN_REF), keeps the float model's top-1 on held-out photos, and is bit-exact with our
int8 reference interpreter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mobilenetv3
from mobilenetv3.cli import main
from mobilenetv3.data.datasets import list_samples
from mobilenetv3.quantize import load_batch, split_samples, tflite_int8
from mobilenetv3.runtime.engines import make_runner
from mobilenetv3.tflite.interpreter import QuantizedTFLiteModule
from mobilenetv3.tflite.reader import TFLiteModel

SMALL = "v3-small_224_1.0_uint8.tflite"
NUM_CALIBRATION, NUM_EVAL, NUM_REFERENCE = 64, 200, 48
ALLOWED_OPS = {"QUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "HARD_SWISH", "ADD", "MUL",
               "AVERAGE_POOL_2D", "RESHAPE", "DEQUANTIZE"}  # fmt: skip


def _spread(samples: list, count: int) -> list:
    return [samples[i] for i in np.linspace(0, len(samples) - 1, count).round().astype(int)]


@pytest.fixture(scope="module")
def setup(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Small 1.0 (official weights), calibrated once on odd-label photos, written twice:
    float in/out (the default) and int8 in/out (for the reference interpreter)."""
    samples = list_samples(shared / "images" / "imagenet-samples")
    calibration = load_batch([p for p, _ in _spread(split_samples(samples, "odd"),
                                                    NUM_CALIBRATION)])  # fmt: skip
    held_out = _spread(split_samples(samples, "even"), NUM_EVAL)
    model = mobilenetv3.create_model(weights=shared / "pretrained" / SMALL, dequantize=True).eval()
    ranges = tflite_int8.calibrate_model(model, calibration)
    folder = tmp_path_factory.mktemp("int8")
    files = {}
    for float_io in (True, False):
        files[float_io] = folder / f"small_int8_{'float' if float_io else 'int8'}_io.tflite"
        tflite_int8.export_tflite_int8(model, files[float_io], calibration, float_io=float_io,
                                       dynamic_batch=True, ranges=ranges)  # fmt: skip
    images = load_batch([p for p, _ in held_out])
    labels = np.array([label for _, label in held_out])
    return {"model": model, "files": files, "images": images, "labels": labels,
            "ranges": ranges, "calibration": calibration}  # fmt: skip


def _quant(model: TFLiteModel, index: int) -> tuple[np.ndarray, np.ndarray, int]:
    q = model.tensors[index].quantization
    return q.scales, q.zero_points, q.quantized_dimension


def test_file_follows_the_int8_spec(setup: dict) -> None:
    tfl = TFLiteModel.from_file(setup["files"][True])
    assert {op.opcode for op in tfl.operators} <= ALLOWED_OPS
    first, last = tfl.operators[0], tfl.operators[-1]
    assert (first.opcode, last.opcode) == ("QUANTIZE", "DEQUANTIZE")
    assert tfl.tensors[tfl.inputs[0]].dtype == np.float32
    assert tfl.tensors[tfl.outputs[0]].name == "MobilenetV3/Logits/SpatialSqueeze"
    for op in tfl.operators[1:-1]:
        assert tfl.tensors[op.outputs[0]].dtype == np.int8
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w_scale, w_zp, axis = _quant(tfl, op.inputs[1])
            b_scale, _, _ = _quant(tfl, op.inputs[2])
            channels = tfl.tensors[op.outputs[0]].shape[-1]
            assert tfl.tensors[op.inputs[1]].dtype == np.int8
            assert tfl.tensors[op.inputs[2]].dtype == np.int32
            assert axis == (3 if op.opcode == "DEPTHWISE_CONV_2D" else 0)
            assert w_scale.size == channels and not w_zp.any()
            in_scale = _quant(tfl, op.inputs[0])[0][0]
            np.testing.assert_allclose(b_scale, np.float32(in_scale) * w_scale, rtol=1e-6)
        elif op.opcode in ("AVERAGE_POOL_2D", "RESHAPE"):
            for a, b in zip(_quant(tfl, op.inputs[0]), _quant(tfl, op.outputs[0]), strict=True):
                np.testing.assert_array_equal(a, b)


def _top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(-1) == labels).mean())


def test_litert_int8_keeps_float_top1(setup: dict) -> None:
    """Held-out (even-label) photos: XNNPACK int8 within 3 points of PyTorch float."""
    images, labels = setup["images"], setup["labels"]
    with torch.no_grad():
        float_top1 = _top1(setup["model"](torch.from_numpy(images)).numpy(), labels)
    int8_top1 = _top1(make_runner("litert", setup["files"][True], threads=1)(images), labels)
    assert float_top1 > 0.6
    assert int8_top1 >= float_top1 - 0.03, (int8_top1, float_top1)


def _builtin_ref(path: Path, codes: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path), num_threads=1,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_REF)  # fmt: skip
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, list(codes.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, codes)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_reference_interpreter_matches_builtin_ref(setup: dict) -> None:
    """The same int8 input codes through LiteRT's reference kernels and ours: equal codes."""
    path, labels = setup["files"][False], setup["labels"][:NUM_REFERENCE]
    reference = QuantizedTFLiteModule.from_file(path)
    codes = reference.quantize_input(torch.from_numpy(setup["images"][:NUM_REFERENCE]))
    ours = reference.run(codes)[reference.output_name].numpy()
    litert = _builtin_ref(path, codes.numpy())
    assert (ours == litert).mean() >= 0.999
    assert (ours.argmax(-1) == litert.argmax(-1)).mean() >= 0.995
    assert abs(_top1(ours, labels) - _top1(litert, labels)) <= 0.005


def test_failed_export_leaves_no_file(setup: dict, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    def broken_check(*_: object) -> float:
        raise RuntimeError("engine failed")

    monkeypatch.setattr(tflite_int8, "_check", broken_check)
    with pytest.raises(RuntimeError, match="engine failed"):
        tflite_int8.export_tflite_int8(setup["model"], tmp_path / "out.tflite",
                                       setup["calibration"], ranges=setup["ranges"])  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_quantize_command_writes_tflite(shared: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    """Weights from the official 8-bit file: its learned ranges by default, said so."""
    output = tmp_path / "small_int8.tflite"
    photos = shared / "images" / "imagenet-samples"
    assert main(["quantize", "--weights", str(shared / "pretrained" / SMALL), "--calibration",
                 str(photos), "--subset", "odd", "--num-images", "16", "--format", "tflite",
                 "--output", str(output)]) == 0  # fmt: skip
    assert "(learned activation ranges)" in capsys.readouterr().out
    tfl = TFLiteModel.from_file(output)
    assert tfl.operators[0].opcode == "QUANTIZE"
    assert list(tmp_path.iterdir()) == [output]
