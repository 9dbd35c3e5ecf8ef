"""int8 post-training quantization: accuracy against float and the official uint8 file on
photos disjoint from the calibration ones, bad input, the torch .pt2 path, evaluate on int8."""

from __future__ import annotations

import numpy as np
import pytest

import mobilenetv3
from mobilenetv3.cli import main
from mobilenetv3.datasets import list_samples
from mobilenetv3.engines import make_runner
from mobilenetv3.loading import WeightsError
from mobilenetv3.quantize import (
    MIN_IMAGES,
    CalibrationError,
    Int8FileError,
    calibration_paths,
    int8_runner,
    is_quantized_file,
    load_batch,
    load_int8,
    quantize_model,
    split_samples,
)

SMALL = "v3-small_224_1.0_uint8.tflite"
CALIBRATION = 96  # odd-label photos; every even-label photo (500) evaluates


@pytest.fixture(scope="module")
def small(shared):
    return mobilenetv3.create_model(weights=shared / "pretrained" / SMALL)


@pytest.fixture(scope="module")
def split(shared):
    """96 odd-label photos to calibrate, the 500 even-label photos to evaluate: disjoint (200
    photos gave figures a few points apart from the 500's: too noisy for a 1-point bound)."""
    samples = list_samples(shared / "images" / "imagenet-samples")
    calibrate, evaluate = split_samples(samples, "odd"), split_samples(samples, "even")
    calibrate = calibrate[:: len(calibrate) // CALIBRATION][:CALIBRATION]
    assert not {p for p, _ in calibrate} & {p for p, _ in evaluate}
    images = load_batch([p for p, _ in evaluate])
    return load_batch([p for p, _ in calibrate]), images, np.array([y for _, y in evaluate])


@pytest.fixture(scope="module")
def int8_onnx(small, split, tmp_path_factory):
    path = tmp_path_factory.mktemp("int8") / "small_int8.onnx"
    return quantize_model(small, split[0], path, "onnx")


def top1(runner, images: np.ndarray, labels: np.ndarray) -> float:
    predictions = np.concatenate([runner(images[i : i + 50]).argmax(1)
                                  for i in range(0, len(images), 50)])  # fmt: skip
    return 100.0 * float((predictions == labels).mean())


def test_onnx_int8_keeps_float_accuracy(shared, small, split, int8_onnx):
    _, images, labels = split
    float_acc = top1(make_runner("onnxruntime", small, threads=2), images, labels)
    int8_acc = top1(int8_runner(int8_onnx, threads=2), images, labels)
    official = top1(make_runner("litert", shared / "pretrained" / SMALL, threads=2), images, labels)
    print(f"float {float_acc:.1f}  int8 {int8_acc:.1f}  official uint8 {official:.1f}")
    assert is_quantized_file(int8_onnx)
    assert int8_acc >= float_acc - 1.0
    # The official file's weights were trained with quantized activations, so it beats both
    # float and post-training int8 from its own weights (500 even photos: official 77.8, int8
    # 76.4, float 73.0); "int8 >= official" does not hold, so the gap is bounded instead.
    assert int8_acc >= official - 3.0


def test_evaluate_command_runs_int8_onnx(shared, int8_onnx, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path, _ in list_samples(shared / "images" / "imagenet-samples")[:20:2]:
        (photos / path.name).symlink_to(path)
    assert main(["evaluate", str(photos), "--weights", str(int8_onnx),
                 "--engine", "onnxruntime", "--workers", "1"]) == 0  # fmt: skip
    assert "v3_small_1.0_int8" in capsys.readouterr().out
    assert load_int8(int8_onnx).num_classes == 1001


def test_int8_file_where_float_is_expected_is_a_clear_error(int8_onnx):
    with pytest.raises(WeightsError, match="not float weights"):
        mobilenetv3.create_model(weights=int8_onnx)
    with pytest.raises(Int8FileError, match="--engine onnxruntime"):
        int8_runner(int8_onnx, "litert")


def test_empty_and_too_small_calibration_folders(tmp_path, shared):
    with pytest.raises(CalibrationError, match="no images"):
        calibration_paths(tmp_path)
    with pytest.raises(CalibrationError, match="does not exist"):
        calibration_paths(tmp_path / "missing")
    few = list_samples(shared / "images" / "imagenet-samples")[: MIN_IMAGES - 1]
    for path, _ in few:
        (tmp_path / path.name).symlink_to(path)
    with pytest.raises(CalibrationError, match=f"at least {MIN_IMAGES}"):
        calibration_paths(tmp_path)
    assert main(["quantize", "--weights", str(shared / "pretrained" / SMALL), "--calibration",
                 str(tmp_path), "--format", "onnx", "--output", str(tmp_path / "q.onnx")]) == 2
    assert not (tmp_path / "q.onnx").exists()


def test_torch_pt2_int8_runs_and_agrees(small, split, tmp_path):
    """The .pt2 path on few images (it is the slow one): loads, runs eagerly, and its
    predictions mostly agree with the float model's."""
    calibration, images, _ = split
    path = quantize_model(small, calibration[:MIN_IMAGES], tmp_path / "small.pt2", "pt2")
    assert is_quantized_file(path) and load_int8(path).name == "v3_small_1.0_int8"
    runner = int8_runner(path, "torch", threads=2)
    reference = make_runner("torch", small, threads=2)
    x = images[:8]
    agree = (runner(x).argmax(1) == reference(x).argmax(1)).mean()
    assert agree >= 0.75


def test_qat_trains_a_few_steps_and_converts(tmp_path):
    import torch

    from mobilenetv3.quantize.qat import prepare_qat, save_qat

    model = mobilenetv3.create_model("v3_small_0.35", num_classes=10)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 3, 64, 64)).astype(np.float32)
    prepared = prepare_qat(model, x[:2])
    optimizer = torch.optim.SGD(prepared.parameters(), lr=0.01)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(prepared(torch.from_numpy(x)),
                                                 torch.tensor([0, 1, 2, 3]))  # fmt: skip
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)
    path = save_qat(prepared, tmp_path / "qat.pt2", x[:2], model)
    assert is_quantized_file(path)
    assert int8_runner(path, "torch", threads=1)(x).shape == (4, 10)
