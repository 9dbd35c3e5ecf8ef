"""`features_only` with timm's `feature_info`/`out_indices` and slim's endpoint names. Truth:
timm's published stages for mobilenetv3_large_100 / _small_100 (channels at reductions 2..32)
and the endpoints the TF heads take, with the shapes TF's graphs give them at depth 1.0
(slim's `mobilenet` under each head's arg scope, built by tools/fixtures/detection_ssdlite.py
and segmentation_lraspp.py's setup): TF object detection's `ssd_mobilenet_v3_feature_extractor.py`
(Large `layer_14/expansion_output` + `layer_17`, Small `layer_10/expansion_output` +
`layer_13`, 320x320 -> 20x20 and 10x10) and DeepLab's mobilenet_v3_*_seg decoder input
(`layer_7` / `layer_4/depthwise_output`) and final map (512x1024 -> 64x128 and 16x32)."""

from __future__ import annotations

import pytest
import torch

import mobilenetv3

TIMM_STAGES = {"v3_large_1.0": [16, 24, 40, 112, 960], "v3_small_1.0": [16, 16, 24, 48, 576]}
# family: {endpoint: (channels, stride)} as TF's graphs give them (NHWC shapes / input size)
HEAD_ENDPOINTS = {
    "v3_large_detection": {"layer_14/expansion_output": (672, 16), "layer_17": (480, 32)},
    "v3_small_detection": {"layer_10/expansion_output": (288, 16), "layer_13": (288, 32)},
    "v3_large_segmentation": {"layer_7/depthwise_output": (120, 8), "layer_17": (480, 32)},
    "v3_small_segmentation": {"layer_4/depthwise_output": (88, 8), "layer_13": (288, 32)},
}
HEAD_MODELS = {"ssdlite_v3_large": "v3_large_detection", "ssdlite_v3_small": "v3_small_detection",
               "lraspp_v3_large": "v3_large_segmentation",
               "lraspp_v3_small": "v3_small_segmentation"}  # fmt: skip


@pytest.mark.parametrize("name", list(TIMM_STAGES))
def test_out_indices_pick_timms_stages(name):
    backbone = mobilenetv3.create_model(name, features_only=True, out_indices=(0, 1, 2, 3, 4))
    info = backbone.feature_info
    assert [f["num_chs"] for f in info] == TIMM_STAGES[name]
    assert [f["reduction"] for f in info] == [2, 4, 8, 16, 32]
    out = backbone.eval()(torch.zeros(1, 3, 224, 224))
    assert list(out) == [f["module"] for f in info]
    for f, x in zip(info, out.values(), strict=True):
        assert x.shape == (1, f["num_chs"], 224 // f["reduction"], 224 // f["reduction"])
    last_two = mobilenetv3.create_model(name, features_only=True, out_indices=(-2, -1))
    assert [f["reduction"] for f in last_two.feature_info] == [16, 32]


@pytest.mark.parametrize("family", list(HEAD_ENDPOINTS))
def test_head_endpoints_have_tfs_channels_and_strides(family: str) -> None:
    expected = HEAD_ENDPOINTS[family]
    backbone = mobilenetv3.create_model(family, endpoints=list(expected)).eval()
    info = {f["module"]: (f["num_chs"], f["reduction"]) for f in backbone.feature_info}
    assert info == expected
    size = (320, 320) if "detection" in family else (256, 512)
    with torch.no_grad():
        out = backbone(torch.zeros(1, 3, *size))
    for name, (channels, stride) in expected.items():
        assert out[name].shape == (1, channels, size[0] // stride, size[1] // stride), name


@pytest.mark.parametrize("head", list(HEAD_MODELS))
def test_heads_run_the_features_only_backbone(head: str) -> None:
    """create_model(family, endpoints=...) is the heads' backbone: same endpoints, same maps."""
    model = mobilenetv3.create_model(head).eval()
    family = HEAD_MODELS[head]
    backbone = mobilenetv3.create_model(family, features_only=True,
                                        endpoints=list(HEAD_ENDPOINTS[family])).eval()  # fmt: skip
    backbone.load_state_dict(model.backbone.state_dict())
    assert backbone.feature_info == model.backbone.feature_info
    x = torch.rand(1, 3, 96, 128) * 2 - 1
    with torch.no_grad():
        for got, expected in zip(backbone(x).values(), model.backbone(x).values(), strict=True):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_expansion_output_is_the_expand_conv_of_that_layer():
    model = mobilenetv3.create_model("v3_large_1.0").eval()
    backbone = mobilenetv3.create_model("v3_large_1.0", endpoints=["layer_13/expansion_output"])
    backbone.load_state_dict(model.state_dict(), strict=False)
    x = torch.rand(1, 3, 96, 96) * 2 - 1
    with torch.no_grad():
        expected = model.features[12].block[0](model.features[:12](x))
        torch.testing.assert_close(backbone.eval()(x)["layer_13/expansion_output"], expected)


def test_bad_choices_say_what_there_is():
    with pytest.raises(ValueError, match="out of range: this backbone has 5 stages"):
        mobilenetv3.create_model("v3_small_1.0", features_only=True, out_indices=(5,))
    with pytest.raises(ValueError, match="not both"):
        mobilenetv3.create_model("v3_small_1.0", endpoints=["layer_2"], out_indices=(0,))
    with pytest.raises(ValueError, match="unknown endpoints"):
        mobilenetv3.create_model("v3_small_1.0", endpoints=["layer_1/expansion_output"])
