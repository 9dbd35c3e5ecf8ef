"""The detection and segmentation heads as data, in the spirit of `core/specs.py`.

SSDLite: TF Object Detection's `ssd_mobilenet_v3_{large,small}` (the feature extractor
`models/ssd_mobilenet_v3_feature_extractor.py` and the zoo configs
`samples/configs/ssdlite_mobilenet_v3_{large,small}_320x320_coco.config`).
LR-ASPP: DeepLab's `mobilenet_v3_{large,small}_seg` with the model zoo's mobilenet v3 flags
(`research/deeplab/g3doc/model_zoo.md`; `model.py`, `core/feature_extractor.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mobilenetv3.core.specs import multiplier_of
from mobilenetv3.heads.anchors import SSDAnchors
from mobilenetv3.heads.losses import SSDLoss


@dataclass(frozen=True)
class NMS:
    """The configs' `batch_non_max_suppression` with a SIGMOID score converter."""

    score_threshold: float = 1e-8
    iou_threshold: float = 0.6
    max_per_class: int = 100
    max_total: int = 100


@dataclass(frozen=True)
class SSDLiteSpec:
    """An SSDLite model: the backbone family, the two endpoints it takes, the extra layers.

    Every extra layer is a 1x1 conv to half its depth, a 3x3 depthwise conv of stride 2 and a
    1x1 conv (`multi_resolution_feature_maps` with insert_1x1_conv and use_depthwise); the
    widths are `max(int(depth * multiplier), min_depth)`. Each feature map gets a depthwise 3x3
    + 1x1 box predictor and class predictor. All convs but the predictors' last 1x1 have
    BatchNorm and ReLU6 (the configs' conv_hyperparams).
    """

    backbone: str  # a family of core/specs.py
    endpoints: tuple[str, str]  # slim endpoint names: the first two feature maps
    extra_depths: tuple[int, ...] = (512, 256, 256, 128)
    min_depth: int = 16
    num_classes: int = 90  # COCO; the class logits have one more, index 0 = background
    box_scales: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w
    anchors: SSDAnchors = SSDAnchors()
    nms: NMS = NMS()
    loss: SSDLoss = SSDLoss()  # training: matcher, focal + smooth L1
    class_bias_init: float = -4.6  # class_prediction_bias_init: a fresh model's class biases
    input_size: int = 320  # the configs' fixed_shape_resizer
    scope: str = "FeatureExtractor"  # SSD's variable scope around backbone and extra layers


SSDLITE: dict[str, SSDLiteSpec] = {
    "ssdlite_v3_large": SSDLiteSpec(
        "v3_large_detection", ("layer_14/expansion_output", "layer_17")
    ),
    "ssdlite_v3_small": SSDLiteSpec(
        "v3_small_detection", ("layer_10/expansion_output", "layer_13")
    ),
}


@dataclass(frozen=True)
class LRASPPSpec:
    """LR-ASPP (paper figure 10) as DeepLab builds it at output stride 32.

    The `high` map (the backbone's last) goes through a 1x1 conv + BN + ReLU (`aspp0`), gated
    by the image-level branch: average pooling of `pooling_crop` / 32 pixels with stride
    `pooling_stride` (VALID), a 1x1 conv with biases, slim's hard sigmoid, bilinear resize back
    (align_corners). Decoder (sum merge, output is logits): that product resized to the stride-8
    `low` map, a 1x1 conv to the classes, plus a 1x1 projection of `low`. BatchNorm eps 1e-5.
    """

    backbone: str  # a family of core/specs.py
    low: str  # DeepLab's decoder end point at stride 8
    high: str  # the final endpoint, stride 32
    filters: int = 128  # aspp_convs_filters
    num_classes: int = 19  # Cityscapes train ids
    pooling_crop: tuple[int, int] = (769, 769)  # image_pooling_crop_size
    pooling_stride: tuple[int, int] = (4, 5)  # image_pooling_stride
    batch_norm_eps: float = 1e-5  # DeepLab's head; the backbone keeps slim's 1e-3
    ignore_label: int = 255  # training: label pixels the loss skips


LRASPP: dict[str, LRASPPSpec] = {
    "lraspp_v3_large": LRASPPSpec("v3_large_segmentation", "layer_7/depthwise_output", "layer_17"),
    "lraspp_v3_small": LRASPPSpec("v3_small_segmentation", "layer_4/depthwise_output", "layer_13"),
}

HEADS: dict[str, SSDLiteSpec | LRASPPSpec] = {**SSDLITE, **LRASPP}
TASK_MODELS: dict[str, tuple[str, ...]] = {
    "detection": ("ssdlite_v3_large_1.0", "ssdlite_v3_small_1.0"),
    "segmentation": ("lraspp_v3_large_1.0", "lraspp_v3_small_1.0"),
}

_NAME = re.compile(r"^(?P<family>[a-z0-9_]+?)(?:_(?P<dm>\d+(?:\.\d+)?))?$")


def parse_name(name: str, depth_multiplier: float | None = None) -> tuple[str, float] | None:
    """`ssdlite_v3_large_0.5` -> ("ssdlite_v3_large", 0.5); None when not a head's name."""
    match = _NAME.match(name)
    if not match or match["family"] not in HEADS:
        return None
    multiplier = multiplier_of(name, match["dm"], depth_multiplier)
    return match["family"], multiplier
