"""Detection and segmentation .tflite files read without TensorFlow: TF's own converter output
(tools/fixtures/heads_tflite.py: the TF fixture checkpoints, SSDLite with the
`TFLite_Detection_PostProcess` custom op) gives TF's outputs; our exports round-trip; bad files
are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobilenetv3 import create_model
from mobilenetv3.cli import main
from mobilenetv3.export import export, randomize
from mobilenetv3.heads import LRASPP, SSDLite, build
from mobilenetv3.heads.specs import NMS
from mobilenetv3.tflite.model import DetectionPostProcess, Quantization, TFLiteError
from mobilenetv3.tflite.reader import TFLiteModel
from mobilenetv3.tflite.writer import serialize
from mobilenetv3.weights.errors import WeightsError

FIXTURES = Path(__file__).parent / "fixtures"
TFLITE = FIXTURES / "tflite"
SSD_FILE = TFLITE / "ssdlite_v3_small_converter.tflite"
SEG_FILE = TFLITE / "lraspp_v3_small_converter.tflite"
CLASSIFIER = TFLITE / "v3_small_0.35_converter.tflite"
TOLERANCE = 1e-4


def _fixture_input(folder: str) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """The TF fixture's input (NCHW) and its outputs."""
    outputs = dict(np.load(FIXTURES / folder / "outputs.npz"))
    rng = np.random.default_rng(int(outputs["seed"]))
    x = rng.uniform(-1.0, 1.0, outputs["input_shape"]).astype(np.float32)
    return torch.from_numpy(x).permute(0, 3, 1, 2), outputs


def test_reader_decodes_the_post_process_options_tf_wrote() -> None:
    tfl = TFLiteModel.from_file(SSD_FILE)
    [op] = [o for o in tfl.operators if o.opcode == "CUSTOM"]
    assert op.custom_code == "TFLite_Detection_PostProcess" and len(op.inputs) == 3
    written = json.loads(str(np.load(TFLITE / "ssdlite_v3_small_converter.npz")["meta_json"]))
    options = DetectionPostProcess.from_flexbuffer(op.custom_options, "x")
    for key, value in written["postprocess"].items():
        assert getattr(options, key) == pytest.approx(value, rel=1e-7), key


def test_ssdlite_from_tf_converter_file_gives_tf_outputs_and_detections() -> None:
    model = create_model(weights=SSD_FILE)
    assert isinstance(model, SSDLite) and model.variant.name == "v3_small_detection_0.35"
    assert model.num_classes == 20 and model.spec.box_scales == (10.0, 10.0, 5.0, 5.0)
    assert model.spec.nms == NMS(np.float32(0.3), 0.5, max_per_class=10, max_total=20)
    x, graph = _fixture_input("detection_ssdlite_v3_small")
    lite = np.load(TFLITE / "ssdlite_v3_small_converter.npz")
    with torch.no_grad():
        raw, found = model.forward_raw(x), model(x)
    assert np.abs(raw["box_encodings"].numpy() - graph["box_encodings"]).max() < TOLERANCE
    assert np.abs(raw["class_logits"].numpy() - graph["class_logits"]).max() < TOLERANCE
    scores, encodings = torch.sigmoid(raw["class_logits"]).numpy(), raw["box_encodings"].numpy()
    assert np.abs(scores - lite["raw_outputs_class_predictions"]).max() < TOLERANCE
    assert np.abs(encodings - lite["raw_outputs_box_encodings"]).max() < TOLERANCE
    # LiteRT's post-process op in TF's interpreter: the same detections (its boxes unclipped)
    assert int(found["num_detections"][0]) == int(lite["TFLite_Detection_PostProcess_3"][0]) == 20
    classes = lite["TFLite_Detection_PostProcess_1"][0] + 1  # 0-based there
    assert (found["detection_classes"][0].numpy() == classes).all()
    assert np.abs(found["detection_scores"][0].numpy()
                  - lite["TFLite_Detection_PostProcess_2"][0]).max() < TOLERANCE  # fmt: skip
    boxes = lite["TFLite_Detection_PostProcess"][0].clip(0.0, 1.0)
    assert np.abs(found["detection_boxes"][0].numpy() - boxes).max() < TOLERANCE


def test_lraspp_from_tf_converter_file_gives_tf_logits() -> None:
    model = create_model(weights=SEG_FILE)
    assert isinstance(model, LRASPP) and model.variant.name == "v3_small_segmentation_0.35"
    assert model.pooling_crop == (97, 161) and model.spec.pooling_stride == (4, 5)
    x, graph = _fixture_input("segmentation_lraspp_v3_small")
    lite = np.load(TFLITE / "lraspp_v3_small_converter.npz")
    with torch.no_grad():
        logits = model(x).permute(0, 2, 3, 1)[:, ::7, ::9].numpy()
    assert np.abs(logits - graph["logits_every_7_9"]).max() < TOLERANCE
    assert np.abs(logits - lite["logits_every_7_9"]).max() < TOLERANCE


@pytest.fixture(scope="module")
def exported_ssdlite(tmp_path_factory: pytest.TempPathFactory) -> tuple[SSDLite, Path]:
    model = randomize(build("ssdlite_v3_small", depth_multiplier=0.35, num_classes=7), seed=0,
                      batch=8)  # fmt: skip
    path = tmp_path_factory.mktemp("heads") / "ssdlite.tflite"
    export(model, path, "tflite", image_size=(96, 128), check=False)
    return model, path


@pytest.mark.parametrize("kind", ["ssdlite", "lraspp"])
def test_own_export_round_trips(kind: str, exported_ssdlite: tuple[SSDLite, Path],
                                tmp_path: Path) -> None:  # fmt: skip
    if kind == "ssdlite":
        model, path = exported_ssdlite
    else:
        model = randomize(build("lraspp_v3_small", depth_multiplier=0.35), seed=0, batch=8)
        path = tmp_path / "lraspp.tflite"
        export(model, path, "tflite", image_size=(96, 128), check=False)
    loaded = create_model(weights=path)
    assert type(loaded) is type(model) and loaded.variant == model.variant
    x = torch.from_numpy(np.random.default_rng(4).uniform(-1, 1, (1, 3, 96, 128)).astype("f4"))
    with torch.no_grad():
        got, expected = loaded.forward_raw(x), model.forward_raw(x)
    for key, value in expected.items():
        assert torch.allclose(got[key], value, atol=1e-5, rtol=0), key
    if kind == "ssdlite":
        assert loaded.spec.nms == model.spec.nms and loaded.num_classes == 7


def _rewritten(path: Path, out: Path, change) -> Path:  # noqa: ANN001
    tfl = TFLiteModel.from_file(path)
    change(tfl)
    out.write_bytes(serialize(tfl))
    return out


def test_truncated_or_hostile_post_process_options_are_one_line(
        exported_ssdlite: tuple[SSDLite, Path], tmp_path: Path) -> None:  # fmt: skip
    _, path = exported_ssdlite
    blobs = [None, b"\x00\x01", np.random.default_rng(1).bytes(300), bytes(1 << 17)]
    for i, blob in enumerate(blobs):

        def cut(tfl: TFLiteModel, blob: bytes | None = blob) -> None:
            [op] = [o for o in tfl.operators if o.opcode == "CUSTOM"]
            op.custom_options = op.custom_options[: len(op.custom_options) // 2] if blob is None \
                else blob  # fmt: skip

        bad = _rewritten(path, tmp_path / f"bad{i}.tflite", cut)
        with pytest.raises(TFLiteError) as error:
            create_model(weights=bad)
        message = str(error.value)
        assert "\n" not in message and str(bad) in message, message
        assert "TFLite_Detection_PostProcess" in message and "options" in message, message


def test_anchors_not_ours_are_refused(exported_ssdlite: tuple[SSDLite, Path],
                                      tmp_path: Path) -> None:  # fmt: skip
    _, path = exported_ssdlite

    def shift(tfl: TFLiteModel) -> None:
        anchors = tfl.tensor("anchors")
        anchors.data = anchors.data * np.float32(1.01)

    bad = _rewritten(path, tmp_path / "anchors.tflite", shift)
    with pytest.raises(TFLiteError, match="its anchors .* are not those of"):
        create_model(weights=bad)


def test_classification_tflite_given_to_detect_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    image = tmp_path / "noise.png"
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(image)
    assert main(["detect", str(image), "--weights", str(CLASSIFIER)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a detection model (it builds MobileNet)" in err[0], err


def test_uint8_detection_weights_load_only_with_dequantize(
        exported_ssdlite: tuple[SSDLite, Path], tmp_path: Path) -> None:  # fmt: skip
    model, path = exported_ssdlite

    def to_uint8(tfl: TFLiteModel) -> None:  # per-tensor uint8 filters, as the zoo's files
        for op in tfl.operators:
            if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                w = tfl.tensors[op.inputs[1]]
                scale = float(np.abs(w.data).max()) / 127.0
                w.data = (np.round(w.data / scale) + 128).astype(np.uint8)
                w.dtype, w.quantization = w.data.dtype, Quantization.per_tensor(scale, 128)

    quantized = _rewritten(path, tmp_path / "uint8.tflite", to_uint8)
    with pytest.raises(WeightsError, match="8-bit .tflite, an int8 model"):
        create_model(weights=quantized)
    loaded = create_model(weights=quantized, dequantize=True)
    assert isinstance(loaded, SSDLite) and loaded.variant == model.variant
    x = torch.from_numpy(np.random.default_rng(4).uniform(-1, 1, (1, 3, 96, 128)).astype("f4"))
    with torch.no_grad():
        got, expected = loaded.forward_raw(x), model.forward_raw(x)
    assert 0 < float((got["class_logits"] - expected["class_logits"]).abs().max()) < 0.5


def test_a_file_without_slim_scopes_is_one_line(exported_ssdlite: tuple[SSDLite, Path],
                                                tmp_path: Path) -> None:  # fmt: skip
    _, path = exported_ssdlite

    def rename(tfl: TFLiteModel) -> None:  # the weights are mapped by their slim scopes
        for i, tensor in enumerate(tfl.tensors):
            tensor.name = f"t{i}"

    bad = _rewritten(path, tmp_path / "renamed.tflite", rename)
    with pytest.raises(TFLiteError, match="is not a MobileNet tflite of this project") as error:
        create_model(weights=bad)
    assert "\n" not in str(error.value)
