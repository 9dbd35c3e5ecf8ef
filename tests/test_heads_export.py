"""SSDLite and LR-ASPP exported through `export()`, each file run in its engine against
PyTorch on randomized weights: ONNX Runtime, and LiteRT with TF's `TFLite_Detection_PostProcess`
custom op (LiteRT's own kernel parses our FlexBuffer options and runs the NMS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ai_edge_litert.interpreter import Interpreter

import mobilenetv3
from mobilenetv3.cli import main
from mobilenetv3.export import example_input, export, export_onnx, randomize
from mobilenetv3.heads import LRASPP, SSDLite, build
from mobilenetv3.runtime.engines import make_runner

FIXTURES = Path(__file__).parent / "fixtures"  # TF's outputs (tools/fixtures/detection_*.py)

SIZE = (128, 128)  # SSDLite: 330 anchors at multiplier 0.35
SEGMENTATION_SIZE = (256, 320)  # non-square; with a 65-pixel pooling crop the gate is 2 x 2
RAW_TOLERANCE, BOX_TOLERANCE = 1e-4, 1e-3
FORMAT_ENGINE = {"onnx": "onnxruntime", "tflite": "litert"}


def _randomized(name: str, num_classes: int | None = None) -> SSDLite | LRASPP:
    # 8 calibration images: on the heads' 1x1 maps, 2 leave BatchNorm a variance of ~0
    model = build(name, depth_multiplier=0.35, num_classes=num_classes)
    return randomize(model, seed=0, batch=8)


@pytest.fixture(scope="module")
def ssdlite() -> SSDLite:
    return _randomized("ssdlite_v3_small", num_classes=20)  # NMS time grows with the classes


@pytest.fixture(scope="module")
def ssdlite_tflite(ssdlite: SSDLite, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    path = tmp_path_factory.mktemp("heads") / "ssdlite.tflite"
    return path, export(ssdlite, path, "tflite", image_size=SIZE)


def test_randomized_heads_give_unit_scale_outputs(ssdlite: SSDLite) -> None:
    with torch.no_grad():
        raw = ssdlite.forward_raw(example_input(SIZE, seed=1))
    for key in ("box_encodings", "class_logits"):
        assert 0.3 < float(raw[key].std()) < 3.0, key


def test_ssdlite_tflite_raw_outputs_and_detections_equal_torch(ssdlite_tflite) -> None:  # noqa: ANN001
    _, result = ssdlite_tflite
    diff = result.differences
    assert diff["raw_outputs/box_encodings"] < RAW_TOLERANCE
    assert diff["raw_outputs/class_predictions"] < RAW_TOLERANCE  # LOGISTIC of the logits
    assert diff["detection_boxes"] < BOX_TOLERANCE  # LiteRT's decoding of our anchors
    assert diff["detection_scores"] < RAW_TOLERANCE
    assert diff["unmatched_detections"] == 0  # every detection has its class's box in LiteRT
    assert diff["num_detections"] == 0


def test_the_compared_detections_are_non_trivial(ssdlite: SSDLite) -> None:
    with torch.no_grad():
        found = ssdlite(example_input(SIZE, seed=1))  # the check's input
    assert int(found["num_detections"][0]) == ssdlite.spec.nms.max_total
    assert len(set(found["detection_classes"][0].tolist())) > 10
    scores = found["detection_scores"][0]
    assert float(scores[0] - scores[-1]) > 0.05


def test_ssdlite_tflite_outputs_are_laid_out_as_tf_exports_them(ssdlite_tflite) -> None:  # noqa: ANN001
    path, _ = ssdlite_tflite
    interpreter = Interpreter(model_path=str(path))
    outputs = [(d["name"], tuple(d["shape"])) for d in interpreter.get_output_details()]
    assert outputs == [
        ("TFLite_Detection_PostProcess", (1, 100, 4)),
        ("TFLite_Detection_PostProcess:1", (1, 100)),
        ("TFLite_Detection_PostProcess:2", (1, 100)),
        ("TFLite_Detection_PostProcess:3", (1,)),
        ("raw_outputs/box_encodings", (1, 330, 4)),
        ("raw_outputs/class_predictions", (1, 330, 21)),
    ]
    inputs = interpreter.get_input_details()
    assert [(d["name"], tuple(d["shape"])) for d in inputs] == [
        ("normalized_input_image_tensor", (1, *SIZE, 3))
    ]


def test_ssdlite_onnx_raw_outputs_equal_torch(ssdlite: SSDLite, tmp_path: Path) -> None:
    result = export(ssdlite, tmp_path / "ssdlite.onnx", "onnx", image_size=SIZE,
                    dynamic_batch=True)  # fmt: skip
    assert set(result.differences) == {"box_encodings", "class_logits", "anchors"}
    assert result.differences["anchors"] == 0
    assert result.max_abs_diff < RAW_TOLERANCE


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_lraspp_logits_equal_torch(fmt: str, tmp_path: Path) -> None:
    model = _randomized("lraspp_v3_small")
    model.pooling_crop = (65, 65)  # a 2 x 2 image-pooling gate: its resize is not a broadcast
    with torch.no_grad():
        logits = model(example_input(SEGMENTATION_SIZE, seed=1))
    assert logits.shape == (1, 19, *SEGMENTATION_SIZE)
    assert 0.3 < float(logits.std()) < 3.0
    result = export(model, tmp_path / f"lraspp.{fmt}", fmt, image_size=SEGMENTATION_SIZE)
    assert result.differences["logits"] < RAW_TOLERANCE


def test_head_exports_refuse_what_their_files_cannot_be(ssdlite: SSDLite, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exports to onnx or tflite, not pte"):
        export(ssdlite, tmp_path / "x.pte", "pte")
    with pytest.raises(ValueError, match="without --softmax"):
        export(ssdlite, tmp_path / "x.onnx", "onnx", softmax=True)
    with pytest.raises(ValueError, match="runs one image"):
        export(ssdlite, tmp_path / "x.tflite", "tflite", dynamic_batch=True)
    with pytest.raises(ValueError, match="through mobilenetv3.export.export"):
        export_onnx(ssdlite, tmp_path / "x.onnx")
    assert not list(tmp_path.iterdir())


def test_export_command_writes_a_head(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "lraspp.tflite"
    assert main(["export", "--model", "lraspp_v3_small_0.35", "--image-size", "128",
                 "--format", "tflite", "--output", str(out)]) == 0  # fmt: skip
    line = capsys.readouterr().out
    assert f"tflite -> {out}" in line
    diff = float(line.split("max abs diff ")[1].split()[0])
    assert diff < RAW_TOLERANCE


def _tf_case(folder: str) -> tuple[torch.nn.Module, dict[str, np.ndarray], np.ndarray]:
    """The fixture's model read from its TF checkpoint, TF's outputs, the input (NCHW)."""
    truth = dict(np.load(FIXTURES / folder / "outputs.npz"))
    shape = tuple(int(s) for s in truth["input_shape"])
    image = np.random.default_rng(int(truth["seed"])).uniform(-1.0, 1.0, shape)
    model = mobilenetv3.create_model(weights=FIXTURES / folder / "model.ckpt")
    return model, truth, image.astype(np.float32).transpose(0, 3, 1, 2)


def test_ssdlite_tflite_of_a_tf_checkpoint_gives_tfs_outputs_in_litert(tmp_path: Path) -> None:
    """TF Object Detection's own run as truth: raw outputs, and LiteRT's post-process against
    TF's batch_multiclass_non_max_suppression (boxes within 1e-3 px)."""
    model, truth, image = _tf_case("detection_ssdlite_v3_small")
    path = tmp_path / "ssdlite.tflite"
    export(model, path, "tflite", image_size=image.shape[-2:])
    got = make_runner("litert", path, threads=1).outputs(image)
    np.testing.assert_allclose(got["raw_outputs/box_encodings"], truth["box_encodings"],
                               rtol=0, atol=RAW_TOLERANCE)  # fmt: skip
    scores = 1 / (1 + np.exp(-truth["class_logits"].astype(np.float64)))
    np.testing.assert_allclose(got["raw_outputs/class_predictions"], scores, rtol=0,
                               atol=RAW_TOLERANCE)  # fmt: skip
    count = int(got["TFLite_Detection_PostProcess:3"][0])
    assert count == int(truth["num_detections"][0]) == 100
    classes = got["TFLite_Detection_PostProcess:1"][0] + 1  # TF Lite's are 0-based
    np.testing.assert_array_equal(classes, truth["nms_classes"][0])
    np.testing.assert_allclose(got["TFLite_Detection_PostProcess:2"][0], truth["nms_scores"][0],
                               rtol=0, atol=RAW_TOLERANCE)  # fmt: skip
    boxes = got["TFLite_Detection_PostProcess"][0].clip(0.0, 1.0)  # TF clips to the image
    pixels = np.array(image.shape[-2:] * 2, np.float64)
    assert np.abs((boxes - truth["nms_boxes"][0]) * pixels).max() < BOX_TOLERANCE


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_lraspp_file_of_a_tf_checkpoint_gives_deeplabs_logits(fmt: str, tmp_path: Path) -> None:
    model, truth, image = _tf_case("segmentation_lraspp_v3_small")
    model.pooling_crop = tuple(int(s) for s in truth["pooling_crop"])  # scaled to the input
    path = tmp_path / f"lraspp.{fmt}"
    export(model, path, fmt, image_size=image.shape[-2:])  # 193 x 289: odd, non-square
    logits = make_runner(FORMAT_ENGINE[fmt], path, threads=1).outputs(image)["logits"]
    nhwc = logits if fmt == "tflite" else logits.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(nhwc[:, ::7, ::9], truth["logits_every_7_9"], rtol=0,
                               atol=RAW_TOLERANCE)  # fmt: skip
