"""SSDLite on a MobileNet detection backbone: one builder for every `SSDLiteSpec`."""

from __future__ import annotations

import torch
from torch import nn

from mobilenetv3.core import specs as core_specs
from mobilenetv3.core.layers import ConvBNAct
from mobilenetv3.core.model import FeatureExtractor, MobileNet
from mobilenetv3.heads import boxes
from mobilenetv3.heads.specs import SSDLiteSpec


def _separable(in_channels: int, out_channels: int, *, scope: str, stride: int,
               head: bool) -> nn.Sequential:  # fmt: skip
    """Slim's separable_conv2d (depthwise 3x3, BN, ReLU6) then a 1x1 conv: BN + ReLU6 for the
    extra feature layers, plain biases for a predictor (`head`)."""
    depthwise = ConvBNAct(in_channels, in_channels, 3, scope=f"{scope}_depthwise", stride=stride,
                          depthwise=True, act=core_specs.RELU6)  # fmt: skip
    pointwise = ConvBNAct(in_channels, out_channels, 1, scope=scope,
                          act=core_specs.IDENTITY if head else core_specs.RELU6,
                          batch_norm=not head)  # fmt: skip
    return nn.Sequential(depthwise, pointwise)


class SSDLite(nn.Module):
    """Input NCHW float in [-1, 1] (TF's `(2 / 255) x - 1`).

    `forward_raw` gives what the TF graph computes before post-processing; `forward` gives
    the detections as TF's `postprocess` does (sigmoid scores, per-class NMS).
    """

    def __init__(self, spec: SSDLiteSpec, depth_multiplier: float = 1.0,
                 num_classes: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.spec = spec
        self.num_classes = spec.num_classes if num_classes is None else num_classes
        self.variant = core_specs.Variant(spec.backbone, depth_multiplier, min_depth=spec.min_depth)
        self.backbone = FeatureExtractor(MobileNet(self.variant, num_classes=0), spec.endpoints)
        for module in self.backbone.modules():
            if hasattr(module, "slim_scope"):
                module.slim_scope = f"{spec.scope}/{module.slim_scope}"
        channels = [info["num_chs"] for info in self.backbone.feature_info]
        scope = f"{spec.scope}/{self.variant.spec.scope}/{spec.endpoints[-1]}"
        self.extra = nn.ModuleList()
        for index, depth in enumerate(spec.extra_depths, start=len(spec.endpoints)):
            half, full = self._depth(depth / 2), self._depth(depth)
            reduce = ConvBNAct(channels[-1], half, 1, scope=f"{scope}_1_Conv2d_{index}_1x1_{half}",
                               act=core_specs.RELU6)  # fmt: skip
            grow = _separable(half, full, scope=f"{scope}_2_Conv2d_{index}_3x3_s2_{full}",
                              stride=2, head=False)  # fmt: skip
            self.extra.append(nn.Sequential(reduce, *grow))
            channels.append(full)
        per_location = spec.anchors.per_location()
        self.box_heads = nn.ModuleList(
            _separable(c, n * 4, scope=f"BoxPredictor_{i}/BoxEncodingPredictor", stride=1,
                       head=True)  # fmt: skip
            for i, (c, n) in enumerate(zip(channels, per_location, strict=True))
        )
        self.class_heads = nn.ModuleList(
            _separable(c, n * (self.num_classes + 1), scope=f"BoxPredictor_{i}/ClassPredictor",
                       stride=1, head=True)  # fmt: skip
            for i, (c, n) in enumerate(zip(channels, per_location, strict=True))
        )

    def _depth(self, depth: float) -> int:
        return max(int(depth * self.variant.depth_multiplier), self.spec.min_depth)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six feature maps the predictors run on, NCHW."""
        maps = list(self.backbone(x).values())
        for extra in self.extra:
            maps.append(extra(maps[-1]))
        return maps

    def forward_raw(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """box_encodings [N, A, 4] (ty, tx, th, tw), class_logits [N, A, classes + 1] (0 =
        background), anchors [A, 4] (normalized ymin, xmin, ymax, xmax), in TF's order."""
        maps = self.forward_features(x)
        encodings = [_per_anchor(h(m), 4) for h, m in zip(self.box_heads, maps, strict=True)]
        logits = [_per_anchor(h(m), self.num_classes + 1)
                  for h, m in zip(self.class_heads, maps, strict=True)]  # fmt: skip
        shapes = [tuple(m.shape[-2:]) for m in maps]
        anchors = self.spec.anchors.generate(shapes, tuple(x.shape[-2:])).to(x.device)
        return {"box_encodings": torch.cat(encodings, 1), "class_logits": torch.cat(logits, 1),
                "anchors": anchors}  # fmt: skip

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Detections padded to the config's max_total, as TF's detection outputs:
        detection_boxes [N, K, 4] (normalized ymin, xmin, ymax, xmax), detection_scores [N, K],
        detection_classes [N, K] (1-based class ids, 0 in padding), num_detections [N]."""
        return self.postprocess(self.forward_raw(x))

    def postprocess(self, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`forward`'s detections from `forward_raw`'s outputs (validation has both)."""
        decoded = boxes.decode(raw["box_encodings"], raw["anchors"], self.spec.box_scales)
        scores = torch.sigmoid(raw["class_logits"])[..., 1:]
        nms, k, batch = self.spec.nms, self.spec.nms.max_total, decoded.shape[0]
        out = {
            "detection_boxes": decoded.new_zeros(batch, k, 4),
            "detection_scores": scores.new_zeros(batch, k),
            "detection_classes": torch.zeros(batch, k, dtype=torch.long, device=decoded.device),
            "num_detections": torch.zeros(batch, dtype=torch.long, device=decoded.device),
        }
        for i in range(batch):
            kept, score, label = boxes.multiclass_nms(
                decoded[i], scores[i], score_threshold=nms.score_threshold,
                iou_threshold=nms.iou_threshold, max_per_class=nms.max_per_class, max_total=k,
            )
            n = len(score)
            out["detection_boxes"][i, :n] = kept
            out["detection_scores"][i, :n] = score
            out["detection_classes"][i, :n] = label + 1
            out["num_detections"][i] = n
        return out


def _per_anchor(prediction: torch.Tensor, size: int) -> torch.Tensor:
    """NCHW [N, boxes * size, H, W] -> [N, H * W * boxes, size] (TF's NHWC reshape)."""
    return prediction.permute(0, 2, 3, 1).reshape(prediction.shape[0], -1, size)
