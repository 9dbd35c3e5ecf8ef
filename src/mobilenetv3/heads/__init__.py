"""Detection heads on the MobileNet backbones: SSDLite (TF Object Detection's
ssd_mobilenet_v3_{large,small}), built from the data in `heads/specs.py`."""

from mobilenetv3.heads.specs import DETECTION_MODELS, SSDLITE, parse_name
from mobilenetv3.heads.ssdlite import SSDLite

TASK_MODELS: dict[str, tuple[str, ...]] = {"detection": DETECTION_MODELS}


def build(name: str, *, num_classes: int | None = None,
          depth_multiplier: float | None = None) -> SSDLite:  # fmt: skip
    """A head model with random weights, e.g. `ssdlite_v3_large_1.0` (90 COCO classes)."""
    parsed = parse_name(name, depth_multiplier)
    if parsed is None:
        raise ValueError(f"unknown head model {name!r}: expected one of "
                         f"{', '.join(DETECTION_MODELS)}")  # fmt: skip
    family, multiplier = parsed
    return SSDLite(SSDLITE[family], multiplier, num_classes)


__all__ = ["SSDLITE", "TASK_MODELS", "SSDLite", "build", "parse_name"]
