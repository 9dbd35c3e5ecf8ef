"""LR-ASPP against DeepLab's mobilenet_v3_*_seg run on the committed fixtures
(tools/fixtures/segmentation_lraspp.py: TF1 checkpoints with random weights, DeepLab's outputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mobilenetv3
from mobilenetv3.heads import LRASPP

FIXTURES = Path(__file__).parent / "fixtures"
# fixture: (backbone family, depth multiplier, num_classes) the generator built
MODELS = {
    "lraspp_v3_large": ("v3_large_segmentation", 0.25, 19),
    "lraspp_v3_small": ("v3_small_segmentation", 0.35, 19),
}


def _checkpoint(name: str) -> Path:
    return FIXTURES / f"segmentation_{name}" / "model.ckpt"


@pytest.fixture(scope="module", params=list(MODELS))
def case(request: pytest.FixtureRequest) -> tuple[str, LRASPP, dict, torch.Tensor]:
    name = request.param
    truth = dict(np.load(FIXTURES / f"segmentation_{name}" / "outputs.npz"))
    shape = tuple(int(s) for s in truth["input_shape"])
    image = np.random.default_rng(int(truth["seed"])).uniform(-1.0, 1.0, shape)
    model = mobilenetv3.create_model(weights=_checkpoint(name))
    model.pooling_crop = tuple(int(s) for s in truth["pooling_crop"])  # scaled to the input
    return name, model, truth, torch.from_numpy(image.astype(np.float32)).permute(0, 3, 1, 2)


def test_checkpoint_gives_the_model_it_was_made_for(case: tuple) -> None:
    name, model, _, _ = case
    family, multiplier, classes = MODELS[name]
    assert isinstance(model, LRASPP)
    assert (model.variant.family, model.variant.depth_multiplier) == (family, multiplier)
    assert model.num_classes == classes
    assert model.load_report["unexpected"] == []


def test_backbone_endpoints_equal_deeplab(case: tuple) -> None:
    """The final map and the decoder's stride-8 endpoint (slim's depthwise_output)."""
    _, model, truth, x = case
    with torch.no_grad():
        ends = model.backbone(x)
    for name, key in ((model.spec.low, "low_level"), (model.spec.high, "features")):
        got = ends[name].permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(got, truth[key], rtol=0, atol=1e-4, err_msg=name)


def test_decoder_logits_equal_deeplab(case: tuple) -> None:
    _, model, truth, x = case
    with torch.no_grad():
        got = model.forward_raw(x)["decoder_logits"].permute(0, 2, 3, 1).numpy()
    assert got.shape == truth["decoder_logits"].shape  # stride 8: (H - 1) // 8 + 1
    np.testing.assert_allclose(got, truth["decoder_logits"], rtol=0, atol=1e-4)


def test_upsampled_logits_equal_deeplab(case: tuple) -> None:
    _, model, truth, x = case
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (x.shape[0], model.num_classes, *x.shape[-2:])
    got = logits.permute(0, 2, 3, 1)[:, ::7, ::9].numpy()
    np.testing.assert_allclose(got, truth["logits_every_7_9"], rtol=0, atol=1e-4)


def test_list_models_segmentation() -> None:
    assert mobilenetv3.list_models(task="segmentation") == ["lraspp_v3_large_1.0",
                                                            "lraspp_v3_small_1.0"]  # fmt: skip


def test_named_model_builds_with_cityscapes_classes() -> None:
    model = mobilenetv3.create_model("lraspp_v3_large_0.5").eval()
    assert isinstance(model, LRASPP) and model.num_classes == 19
    with torch.no_grad():
        out = model.forward_raw(torch.zeros(1, 3, 97, 129))["decoder_logits"]
    assert out.shape == (1, 19, 13, 17)
