"""MobileNetV2 at every released multiplier against the published table of the TF-slim
MobileNet README (`research/slim/nets/mobilenet/README.md`, "MobileNetV2" checkpoints at 224):
MACs in millions (the table truncates) and parameters in millions. The table's parameters are
the conv and logits weights and biases without BatchNorm's gamma/beta; below 1.0 the released
models keep the last 1x1 layer at 1280 channels (the paper's rule), which is this project's
`_finegrain` variant."""

from __future__ import annotations

import pytest
import torch

import mobilenetv3

PUBLISHED = {  # name: (MACs M, params M), from the README's table
    "v2_1.4": (582, 6.06),
    "v2_1.3": (509, 5.34),
    "v2_1.0": (300, 3.47),
    "v2_0.75_finegrain": (209, 2.61),
    "v2_0.5_finegrain": (97, 1.95),
    "v2_0.35_finegrain": (59, 1.66),
}


@pytest.mark.parametrize("name", PUBLISHED)
def test_v2_matches_the_published_table(name: str) -> None:
    model = mobilenetv3.create_model(name)
    macs, params = PUBLISHED[name]
    assert int(mobilenetv3.count_macs(model, (224, 224)) / 1e6) == macs
    without_bn = sum(p.numel() for module in model.modules()
                     if not isinstance(module, torch.nn.BatchNorm2d)
                     for p in module.parameters(recurse=False))  # fmt: skip
    assert round(without_bn / 1e6, 2) == params
