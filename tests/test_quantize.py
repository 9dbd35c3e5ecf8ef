"""int8 post-training quantization: accuracy against float and the official uint8 file on
photos disjoint from the calibration ones, bad input, the torch .pt2 path, evaluate on int8."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mobilenetv3
from mobilenetv3.cli import main
from mobilenetv3.data.datasets import list_samples
from mobilenetv3.export import export_runner
from mobilenetv3.quantize import (
    MIN_IMAGES,
    CalibrationError,
    Int8FileError,
    calibration_paths,
    int8_model_info,
    int8_runner,
    is_quantized_file,
    load_batch,
    quantize_model,
    split_samples,
)
from mobilenetv3.runtime.engines import LiteRTRunner, make_runner
from mobilenetv3.weights.loading import WeightsError

SMALL = "v3-small_224_1.0_uint8.tflite"
CALIBRATION = 96  # odd-label photos; every even-label photo (500) evaluates
# This process's share of the cores (conftest: one per xdist worker). A runner given more sets
# torch's count for the rest of the worker and spins against the other worker: the pt2 test
# took 224 s with 2 threads and 67 s with 1 on 2 loaded cores.
THREADS = torch.get_num_threads()


@pytest.fixture(scope="module")
def small(shared):
    return mobilenetv3.create_model(weights=shared / "pretrained" / SMALL, dequantize=True)


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


def _predict(runner, images: np.ndarray) -> np.ndarray:
    return np.concatenate([runner(images[i : i + 50]).argmax(1) for i in range(0, len(images), 50)])


def top1(runner, images: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float((_predict(runner, images) == labels).mean())


def test_onnx_int8_keeps_float_accuracy(shared, small, split, int8_onnx):
    _, images, labels = split
    float_acc = top1(export_runner("onnxruntime", small, threads=THREADS), images, labels)
    int8_acc = top1(int8_runner(int8_onnx, threads=THREADS), images, labels)
    official_file = make_runner("litert", shared / "pretrained" / SMALL, threads=THREADS)
    official = top1(official_file, images, labels)
    print(f"float {float_acc:.1f}  int8 {int8_acc:.1f}  official uint8 {official:.1f}")
    assert is_quantized_file(int8_onnx)
    assert int8_acc >= float_acc - 1.0
    # The official file's weights were trained with quantized activations, so it beats both
    # float and post-training int8 from its own weights (500 even photos: official 77.8, int8
    # 76.4, float 73.0); "int8 >= official" does not hold, so the gap is bounded instead.
    assert int8_acc >= official - 3.0


def test_onnx_int8_runs_as_int8_kernels(small, int8_onnx, tmp_path):
    """After ONNX Runtime's own graph optimization, every conv but the 3-channel input conv
    is a QLinearConv and only the input and output boundaries keep Q/DQ nodes (plain
    quantize_static left 43 Q/DQ pairs around float hard-swish, gate, pool and pad ops)."""
    import collections

    import onnx
    import onnxruntime as ort
    import torch

    convs = [m for m in small.modules() if isinstance(m, torch.nn.Conv2d)]
    image_convs = sum(m.in_channels == 3 for m in convs)
    assert image_convs == 1  # slim's stem; every other conv reads an int8 feature map

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(int8_onnx), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(options.optimized_model_filepath).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    assert ops["QLinearConv"] == len(convs) - image_convs and ops["Conv"] == image_convs, ops
    assert ops["QuantizeLinear"] + ops["DequantizeLinear"] <= 4, ops
    assert not {"HardSwish", "Pad"} & set(ops), ops


def test_evaluate_command_runs_int8_onnx(shared, int8_onnx, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path, _ in list_samples(shared / "images" / "imagenet-samples")[:20:2]:
        (photos / path.name).symlink_to(path)
    assert main(["evaluate", str(photos), "--weights", str(int8_onnx),
                 "--engine", "onnxruntime", "--workers", "1"]) == 0  # fmt: skip
    assert "v3_small_1.0_int8" in capsys.readouterr().out
    assert int8_model_info(int8_onnx).num_classes == 1001


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


@pytest.fixture(scope="module")
def int8_pt2(small, split, tmp_path_factory):
    path = tmp_path_factory.mktemp("pt2") / "small.pt2"
    return quantize_model(small, split[0], path, "pt2")


def test_torch_pt2_int8_keeps_float_accuracy(small, split, int8_pt2):
    """The torch .pt2 (FX Q/DQ program, eager): top-1 on the held-out photos at least the
    float model's less 1 point (the SE gate as hardsigmoid with fixed qparams and full-range
    activations; x86's defaults lost 14 points here)."""
    _, images, labels = split
    assert is_quantized_file(int8_pt2) and int8_model_info(int8_pt2).name == "v3_small_1.0_int8"
    float_acc = top1(make_runner("torch", small, threads=THREADS), images, labels)
    int8_acc = top1(int8_runner(int8_pt2, "torch", threads=THREADS), images, labels)
    print(f"float {float_acc:.1f}  torch int8 {int8_acc:.1f}")
    assert int8_acc >= float_acc - 1.0


def test_pt2_runs_in_a_fresh_process(int8_pt2, shared, tmp_path):
    """`evaluate` on a .pt2 in a new interpreter (its Q/DQ ops must be registered on load)."""
    import subprocess
    import sys

    photos = tmp_path / "photos"
    photos.mkdir()
    for path, _ in list_samples(shared / "images" / "imagenet-samples")[:8]:
        (photos / path.name).symlink_to(path)
    done = subprocess.run([sys.executable, "-m", "mobilenetv3", "evaluate", str(photos),
                           "--weights", str(int8_pt2), "--engine", "torch", "--workers", "1"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "v3_small_1.0_int8" in done.stdout


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


OFFICIAL = [SMALL, "v3-large-minimalistic_224_1.0_uint8.tflite"]


@pytest.fixture(scope="module", params=OFFICIAL)
def learned(request, shared, split, tmp_path_factory):
    """(official file, its float weights, our int8 TFLite of them with the official file's
    learned ranges: the default for weights read from an 8-bit file)."""
    official = shared / "pretrained" / request.param
    model = mobilenetv3.create_model(weights=official, dequantize=True)
    path = tmp_path_factory.mktemp("learned") / request.param.replace("uint8", "int8")
    return official, model, quantize_model(model, split[0][:MIN_IMAGES], path, "tflite")


def _by_name(model) -> dict:
    return {t.name: t for t in model.tensors}


def test_learned_ranges_and_weight_grid_are_the_official_files(learned):
    """Every activation named as one of the official file's has its range (int8 zero point =
    uint8 zero point - 128, same scale); every weight channel whose official codes fit in
    [-127, 127] keeps them exactly, bias codes included."""
    from mobilenetv3.tflite.reader import TFLiteModel

    ours = TFLiteModel.from_file(learned[2])
    official = TFLiteModel.from_file(learned[0])
    theirs, matched = _by_name(official), 0
    for op in ours.operators[1:-1]:
        out = ours.tensors[op.outputs[0]]
        if out.name in theirs and op.opcode not in ("AVERAGE_POOL_2D", "RESHAPE"):
            q, ref = out.quantization, theirs[out.name].quantization
            np.testing.assert_allclose(q.scale, ref.scale, rtol=1e-6)
            assert q.zero_point == ref.zero_point - 128, out.name
            matched += 1
    assert matched >= 50
    fitting = exact = 0
    consumers = {op.inputs[2]: op for op in official.operators if len(op.inputs) > 2}
    for op in (o for o in ours.operators if o.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D")):
        bias = ours.tensors[op.inputs[2]]
        ref_op = consumers[theirs[bias.name].index]  # the official op with the same bias
        ref_w = official.tensors[ref_op.inputs[1]]
        axis = 3 if op.opcode == "DEPTHWISE_CONV_2D" else 0
        codes = official.constant(ref_w.index).astype(int) - ref_w.quantization.zero_point
        codes = np.moveaxis(codes, axis, 0)
        mine = np.moveaxis(ours.constant(op.inputs[1]).astype(int), axis, 0)
        scales = ours.tensors[op.inputs[1]].quantization.scales
        fits = np.abs(codes).reshape(len(codes), -1).max(1) <= 127
        assert ((scales == np.float32(ref_w.quantization.scale)) == fits).all(), bias.name
        np.testing.assert_array_equal(mine[fits], codes[fits])
        ref_bias = official.constant(ref_op.inputs[2])
        np.testing.assert_array_equal(ours.constant(op.inputs[2])[fits], ref_bias[fits])
        fitting, exact = fitting + fits.size, exact + fits.sum()
    assert exact / fitting > 0.99


def test_learned_int8_tflite_matches_the_official_file(split, learned):
    """Held-out photos: our int8 re-quantization of the official weights (LiteRT, XNNPACK)
    predicts like the official file (LiteRT, XNNPACK) as closely as that file does when run by
    LiteRT's builtin kernels instead, whose rounding differs: the official file's own top-1
    moves by up to 2 points between the two (Small 77.8 / 76.0 on these 500 photos)."""
    official_path, model, path = learned
    _, images, labels = split
    runs = {"int8": make_runner("litert", path, threads=THREADS),
            "official": make_runner("litert", official_path, threads=THREADS),
            "official builtin": LiteRTRunner(official_path, threads=THREADS, xnnpack=False),
            "float": export_runner("onnxruntime", model, threads=THREADS)}  # fmt: skip
    preds = {k: _predict(r, images) for k, r in runs.items()}
    acc = {k: 100.0 * float((p == labels).mean()) for k, p in preds.items()}
    agree = {k: 100.0 * float((p == preds["official"]).mean()) for k, p in preds.items()}
    print(f"top-1 {acc}  agreement with the official file {agree}")
    assert acc["int8"] >= acc["float"] - 1.0
    assert acc["int8"] >= min(acc["official"], acc["official builtin"]) - 1.0
    assert agree["int8"] >= agree["official builtin"] - 1.5
    assert agree["int8"] >= agree["float"] + 2.0


def test_learned_ranges_need_an_8bit_source(split, tmp_path):
    untrained = mobilenetv3.create_model("v3_small_0.35")
    with pytest.raises(ValueError, match="has none for v3_small_0.35"):
        quantize_model(untrained, split[0][:MIN_IMAGES], tmp_path / "q.tflite", "tflite",
                       method="learned")  # fmt: skip
    with pytest.raises(ValueError, match="--format onnx calibrates .* not 'learned'"):
        quantize_model(untrained, split[0][:MIN_IMAGES], tmp_path / "q.onnx", "onnx",
                       method="learned")  # fmt: skip
    with pytest.raises(ValueError, match="--format pt2 calibrates activations by percentile"):
        quantize_model(untrained, split[0][:MIN_IMAGES], tmp_path / "q.pt2", "pt2",
                       method="minmax")  # fmt: skip
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", ["onnx", "tflite", "pt2"])
def test_unfused_or_unmappable_layers_are_named(fmt, split, tmp_path):
    from torch import nn

    from mobilenetv3.quantize import UnquantizableModelError

    model = mobilenetv3.create_model("v3_small_0.35")
    stem = model.features[0]
    stem.act = nn.Sequential(nn.BatchNorm2d(stem.conv.out_channels), nn.ReLU())
    model.head[1].act = nn.GELU()
    with pytest.raises(UnquantizableModelError, match=r"features\.0\.act\.0 \(BatchNorm2d") as err:
        quantize_model(model, split[0][:MIN_IMAGES], tmp_path / f"q.{fmt}", fmt)
    assert "GELU: no int8 mapping" in str(err.value)
    assert not list(tmp_path.iterdir())
