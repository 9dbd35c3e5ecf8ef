"""`features_only` with timm's `feature_info`/`out_indices` and slim's endpoint names. Truth:
timm's published stages for mobilenetv3_large_100 / _small_100 (channels at reductions 2..32)
and the endpoints TF's object detection API feeds its SSD heads
(`ssd_mobilenet_v3_feature_extractor.py`: Large `layer_13/expansion_output` + `layer_17`,
Small `layer_10/expansion_output` + `layer_13`: 672 / 288 channels at stride 16)."""

from __future__ import annotations

import pytest
import torch

import mobilenetv3

TIMM_STAGES = {"v3_large_1.0": [16, 24, 40, 112, 960], "v3_small_1.0": [16, 16, 24, 48, 576]}
SSD = {"v3_large_1.0": (["layer_13/expansion_output", "layer_17"], [672, 960]),
       "v3_small_1.0": (["layer_10/expansion_output", "layer_13"], [288, 576])}  # fmt: skip


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


@pytest.mark.parametrize("name", list(SSD))
def test_expansion_outputs_are_the_ssd_endpoints(name):
    endpoints, channels = SSD[name]
    backbone = mobilenetv3.create_model(name, endpoints=endpoints).eval()
    out = backbone(torch.zeros(1, 3, 320, 320))
    assert [x.shape[1] for x in out.values()] == channels
    assert [x.shape[-1] for x in out.values()] == [20, 10]  # 320 / 16, 320 / 32
    assert [f["reduction"] for f in backbone.feature_info] == [16, 32]


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
