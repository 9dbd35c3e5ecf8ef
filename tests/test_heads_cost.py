"""Parameter counts of the four head models against TF's own count of the same graphs."""

from __future__ import annotations

import pytest

import mobilenetv3

# Trainable variables of the TF graphs at depth multiplier 1.0 (90 COCO / 19 Cityscapes
# classes), printed by tools/fixtures/detection_segmentation_flops.py in the scratch venv.
TF_TRAINABLE = {
    "ssdlite_v3_large": 3_248_255,
    "ssdlite_v3_small": 1_785_743,
    "lraspp_v3_large": 1_507_198,
    "lraspp_v3_small": 468_830,
}


@pytest.mark.parametrize("name", list(TF_TRAINABLE))
def test_parameters_equal_tf(name: str) -> None:
    assert mobilenetv3.count_params(mobilenetv3.create_model(name)) == TF_TRAINABLE[name]
