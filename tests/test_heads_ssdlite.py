"""SSDLite against TF's ssd_mobilenet_v3 run on the committed fixtures (tools/fixtures/
detection_ssdlite.py: TF1 checkpoints with random weights and the TF graph's outputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mobilenetv3
from mobilenetv3.heads import SSDLite
from mobilenetv3.heads.boxes import decode
from mobilenetv3.weights.loading import WeightsError

FIXTURES = Path(__file__).parent / "fixtures"
# fixture: (backbone family, depth multiplier, num_classes) the generator built
MODELS = {
    "ssdlite_v3_large": ("v3_large_detection", 0.25, 90),
    "ssdlite_v3_small": ("v3_small_detection", 0.35, 20),
}


def _checkpoint(name: str) -> Path:
    return FIXTURES / f"detection_{name}" / "model.ckpt"


def _truth_and_input(name: str) -> tuple[dict[str, np.ndarray], torch.Tensor]:
    truth = dict(np.load(FIXTURES / f"detection_{name}" / "outputs.npz"))
    shape = tuple(int(s) for s in truth["input_shape"])
    image = np.random.default_rng(int(truth["seed"])).uniform(-1.0, 1.0, shape)
    return truth, torch.from_numpy(image.astype(np.float32)).permute(0, 3, 1, 2)


@pytest.fixture(scope="module", params=list(MODELS))
def loaded(request: pytest.FixtureRequest) -> tuple[str, SSDLite]:
    return request.param, mobilenetv3.create_model(weights=_checkpoint(request.param))


def test_checkpoint_gives_the_model_it_was_made_for(loaded: tuple[str, SSDLite]) -> None:
    name, model = loaded
    family, multiplier, classes = MODELS[name]
    assert isinstance(model, SSDLite)
    assert (model.variant.family, model.variant.depth_multiplier) == (family, multiplier)
    assert model.num_classes == classes
    assert model.load_report["unexpected"] == []


def test_raw_outputs_equal_tf(loaded: tuple[str, SSDLite]) -> None:
    name, model = loaded
    truth, x = _truth_and_input(name)
    with torch.no_grad():
        raw = model.forward_raw(x)
        maps = model.forward_features(x)
    for key in ("box_encodings", "class_logits", "anchors"):
        assert raw[key].shape == truth[key].shape, key
        np.testing.assert_allclose(raw[key].numpy(), truth[key], rtol=0, atol=1e-4, err_msg=key)
    for i in (0, 1):  # the backbone endpoints, incl. slim's expansion_output
        got = maps[i].permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(got, truth[f"feature_{i}"], rtol=0, atol=1e-4)


def test_decoded_boxes_equal_tf_within_a_thousandth_of_a_pixel(
    loaded: tuple[str, SSDLite],
) -> None:
    name, model = loaded
    truth, x = _truth_and_input(name)
    with torch.no_grad():
        raw = model.forward_raw(x)
    boxes = decode(raw["box_encodings"], raw["anchors"], model.spec.box_scales).numpy()
    pixels = np.array(x.shape[-2:] * 2, dtype=np.float64)  # (H, W, H, W) for y, x, y, x
    assert np.abs((boxes - truth["decoded_boxes"]) * pixels).max() < 1e-3


def test_detections_equal_tf_postprocessing(loaded: tuple[str, SSDLite]) -> None:
    """Sigmoid scores, per-class NMS (IoU 0.6, 100 per class), best 100: as TF's run."""
    name, model = loaded
    truth, x = _truth_and_input(name)
    with torch.no_grad():
        out = model(x)
    np.testing.assert_array_equal(out["num_detections"].numpy(), truth["num_detections"])
    np.testing.assert_array_equal(out["detection_classes"].numpy(), truth["nms_classes"])
    np.testing.assert_allclose(out["detection_scores"].numpy(), truth["nms_scores"], atol=1e-5)
    pixels = np.array(x.shape[-2:] * 2, dtype=np.float64)
    assert np.abs((out["detection_boxes"].numpy() - truth["nms_boxes"]) * pixels).max() < 1e-3


def test_list_models_by_task() -> None:
    assert mobilenetv3.list_models(task="detection") == ["ssdlite_v3_large_1.0",
                                                         "ssdlite_v3_small_1.0"]  # fmt: skip
    assert "v3_large_1.0" in mobilenetv3.list_models()
    with pytest.raises(ValueError, match="unknown task 'tracking'"):
        mobilenetv3.list_models(task="tracking")


def test_named_model_builds_with_coco_classes() -> None:
    model = mobilenetv3.create_model("ssdlite_v3_small_0.5").eval()
    assert isinstance(model, SSDLite) and model.num_classes == 90
    assert model.variant.depth_multiplier == 0.5
    x = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        raw = model.forward_raw(x)
    grids = [(4, 4), (2, 2), (1, 1), (1, 1), (1, 1), (1, 1)]  # strides 16, 32, then 2x each
    anchors = sum(r * c * n for (r, c), n in zip(grids, [3, 6, 6, 6, 6, 6], strict=True))
    assert raw["class_logits"].shape == (1, anchors, 91)


def test_name_that_disagrees_with_the_checkpoint_is_one_clear_error() -> None:
    with pytest.raises(WeightsError, match="holds ssdlite_v3_small_0.35 weights, not"):
        mobilenetv3.create_model("ssdlite_v3_large", weights=_checkpoint("ssdlite_v3_small"))


def test_classification_checkpoint_under_a_head_name_is_one_clear_error(shared: Path) -> None:
    checkpoint = shared / "reference" / "slim" / "v3_small_1.0" / "model.ckpt"
    with pytest.raises(WeightsError, match="is a classification checkpoint"):
        mobilenetv3.create_model("ssdlite_v3_small", weights=checkpoint)


def test_classification_options_on_a_head_are_refused() -> None:
    with pytest.raises(TypeError, match="features_only, endpoints and classification options"):
        mobilenetv3.create_model("ssdlite_v3_large", features_only=True)
