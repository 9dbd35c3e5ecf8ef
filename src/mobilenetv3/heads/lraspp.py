"""LR-ASPP segmentation on a MobileNet segmentation backbone: one builder for `LRASPPSpec`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobilenetv3.core import specs as core_specs
from mobilenetv3.core.layers import ConvBNAct, SlimHardSigmoid
from mobilenetv3.core.model import FeatureExtractor, MobileNet
from mobilenetv3.heads.specs import LRASPPSpec

OUTPUT_STRIDE = 32


class LRASPP(nn.Module):
    """Input NCHW float in [-1, 1] (DeepLab's `(2 / 255) x - 1`).

    `forward_raw` gives `decoder_logits` [N, classes, H/8, W/8]; `forward` upsamples them to the
    input size as DeepLab's predict_labels does (bilinear, align_corners). `pooling_crop` is the
    crop the image-level pooling window was sized for (DeepLab's image_pooling_crop_size).
    """

    def __init__(self, spec: LRASPPSpec, depth_multiplier: float = 1.0,
                 num_classes: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.spec = spec
        self.num_classes = spec.num_classes if num_classes is None else num_classes
        self.pooling_crop = spec.pooling_crop
        self.variant = core_specs.Variant(spec.backbone, depth_multiplier)
        self.backbone = FeatureExtractor(MobileNet(self.variant, num_classes=0),
                                         [spec.low, spec.high])  # fmt: skip
        low, high = (info["num_chs"] for info in self.backbone.feature_info)
        linear = {"act": core_specs.IDENTITY, "batch_norm": False}
        self.image_pooling = ConvBNAct(high, spec.filters, 1, scope="image_pooling", **linear)
        self.gate = SlimHardSigmoid()  # DeepLab's q_sigmoid: relu6(x + 3) * 0.16667
        self.aspp = ConvBNAct(high, spec.filters, 1, scope="aspp0")
        self.aspp.bn.eps = spec.batch_norm_eps
        self.projection = ConvBNAct(low, self.num_classes, 1, scope="decoder/feature_projection0",
                                    **linear)  # fmt: skip
        self.classifier = ConvBNAct(spec.filters, self.num_classes, 1,
                                    scope="decoder/decoder_conv0", **linear)  # fmt: skip

    def forward_raw(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        low, high = self.backbone(x).values()
        gate = self.gate(self.image_pooling(self._pool(high)))
        gate = F.interpolate(gate, size=high.shape[-2:], mode="bilinear", align_corners=True)
        merged = self.aspp(high) * gate
        merged = F.interpolate(merged, size=low.shape[-2:], mode="bilinear", align_corners=True)
        return {"decoder_logits": self.classifier(merged) + self.projection(low)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.forward_raw(x)["decoder_logits"]
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)

    def _pool(self, high: torch.Tensor) -> torch.Tensor:
        window = self.pool_window(high.shape[-2:])
        return F.avg_pool2d(high, window, stride=self.spec.pooling_stride)

    def pool_window(self, size: tuple[int, int]) -> list[int]:
        """DeepLab's image-pooling window on a map of this size: scale_dimension(crop, 1/32) =
        (crop - 1) // 32 + 1 pixels, clipped to the map (where TF fails on inputs smaller than
        the crop)."""
        sizes = zip(self.pooling_crop, size, strict=True)
        return [min((crop - 1) // OUTPUT_STRIDE + 1, side) for crop, side in sizes]
