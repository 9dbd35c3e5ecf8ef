"""Parameters and MACs of the four head models against figures from outside: TF's own count of
the same graphs (tools/fixtures/detection_segmentation_flops.py in the scratch venv), the paper's
tables 6 and 7 (arXiv 1905.02244v5) and torchvision's SSDLite; docs/heads_cost.md is current."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import mobilenetv3

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import heads_cost  # noqa: E402 - the benchmarks folder is on the path only from here

# Trainable variables of the TF graphs at depth multiplier 1.0 (90 COCO / 19 Cityscapes
# classes), printed by tools/fixtures/detection_segmentation_flops.py in the scratch venv.
TF_TRAINABLE = {
    "ssdlite_v3_large": 3_248_255,
    "ssdlite_v3_small": 1_785_743,
    "lraspp_v3_large": 1_507_198,
    "lraspp_v3_small": 468_830,
}
# The same script's conv_macs: tf.profiler's Conv2D + DepthwiseConv2dNative float ops / 2, at
# the published input sizes (LR-ASPP: DeepLab's Cityscapes eval crop and the paper's 1024x2048,
# pooling crop 769).
TF_CONV_MACS = {
    ("ssdlite_v3_large", (320, 320)): 506_563_904,
    ("ssdlite_v3_small", (320, 320)): 162_303_424,
    ("lraspp_v3_large", (1025, 2049)): 7_582_881_504,
    ("lraspp_v3_small", (1025, 2049)): 1_963_916_608,
    ("lraspp_v3_large", (1024, 2048)): 7_447_144_576,
    ("lraspp_v3_small", (1024, 2048)): 1_925_398_272,
}


def _meta_model(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return mobilenetv3.create_model(name)


@pytest.mark.parametrize("name", list(TF_TRAINABLE))
def test_parameters_equal_tf(name: str) -> None:
    assert mobilenetv3.count_params(_meta_model(name)) == TF_TRAINABLE[name]


@pytest.mark.parametrize(("name", "size"), list(TF_CONV_MACS))
def test_macs_equal_tfs_conv_count(name: str, size: tuple[int, int]) -> None:
    assert mobilenetv3.count_macs(_meta_model(name), size) == TF_CONV_MACS[name, size]


@pytest.mark.parametrize("name", list(heads_cost.PAPER_SSD))
def test_ssdlite_gives_the_papers_table_6(name: str) -> None:
    """Table 6 prints params without BatchNorm (M) and conv MACs (B) to two decimals."""
    params_m, madds_b = heads_cost.PAPER_SSD[name]
    assert round(heads_cost._no_batch_norm(name) / 1e6, 2) == params_m
    assert round(mobilenetv3.count_macs(_meta_model(name), 320) / 1e9, 2) == madds_b


@pytest.mark.parametrize("name", list(heads_cost.PAPER_SEG))
def test_lraspp_gives_the_papers_table_7_params(name: str) -> None:
    params_m, _ = heads_cost.PAPER_SEG[name]
    assert round(mobilenetv3.count_params(_meta_model(name)) / 1e6, 2) == params_m


def test_torchvision_ssdlite_is_ours_with_six_anchors_on_the_first_map() -> None:
    params, macs = heads_cost.torchvision_ssdlite()
    assert params == heads_cost.TORCHVISION_SSD[0] == 3_440_060
    assert round(macs / 1e9, 3) == heads_cost.TORCHVISION_SSD[1]


def test_the_cost_document_is_current() -> None:
    assert heads_cost.DOC.read_text() == heads_cost.render(), (
        "docs/heads_cost.md is stale: run python benchmarks/heads_cost.py"
    )
