"""Detection and segmentation heads on the MobileNet backbones, built from the data in
`heads/specs.py`: SSDLite (TF Object Detection's ssd_mobilenet_v3_{large,small}) and LR-ASPP
(DeepLab's mobilenet_v3_{large,small}_seg)."""

from mobilenetv3.heads.lraspp import LRASPP
from mobilenetv3.heads.specs import HEADS, TASK_MODELS, LRASPPSpec, SSDLiteSpec, parse_name
from mobilenetv3.heads.ssdlite import SSDLite

_BUILDERS: dict[type, type[SSDLite | LRASPP]] = {SSDLiteSpec: SSDLite, LRASPPSpec: LRASPP}


def build(name: str, *, num_classes: int | None = None,
          depth_multiplier: float | None = None) -> SSDLite | LRASPP:  # fmt: skip
    """A head model with random weights, e.g. `ssdlite_v3_large_1.0` (90 COCO classes) or
    `lraspp_v3_small_0.5` (19 Cityscapes classes)."""
    parsed = parse_name(name, depth_multiplier)
    if parsed is None:
        known = [n for names in TASK_MODELS.values() for n in names]
        raise ValueError(f"unknown head model {name!r}: expected one of {', '.join(known)}")
    family, multiplier = parsed
    spec = HEADS[family]
    return _BUILDERS[type(spec)](spec, multiplier, num_classes)


__all__ = ["HEADS", "LRASPP", "TASK_MODELS", "SSDLite", "build", "parse_name"]
