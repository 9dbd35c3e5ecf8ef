"""Head checkpoints (TF Object Detection's SSDLite): the model inferred from names and shapes."""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from mobilenetv3.core.naming import slim_names, slim_shape
from mobilenetv3.heads.specs import SSDLITE, parse_name
from mobilenetv3.heads.ssdlite import SSDLite
from mobilenetv3.weights.loading import WeightsError, load_slim_state, slim_state_shapes

_MULTIPLIERS = (0.35, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
_CLASS_BIASES = "BoxPredictor_0/ClassPredictor/biases"


def is_head_state(state: dict[str, np.ndarray]) -> bool:
    """A detection checkpoint: its variables include the box predictors."""
    return _CLASS_BIASES in state


@cache
def _shapes(family: str, multiplier: float, num_classes: int) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = SSDLite(SSDLITE[family], multiplier, num_classes)
    state = model.state_dict()
    return {s: slim_shape(tuple(state[k].shape), s) for s, k in slim_names(model).items()}


def infer_ssdlite(shapes: dict[str, tuple[int, ...]]) -> tuple[str, float, int]:
    """(family, depth multiplier, num_classes) whose variables have exactly these shapes."""
    per_location = SSDLITE["ssdlite_v3_large"].anchors.per_location()[0]
    num_classes = shapes[_CLASS_BIASES][0] // per_location - 1
    wanted = {k: v for k, v in shapes.items() if k.endswith("weights")}
    stem = wanted.get("FeatureExtractor/MobilenetV3/Conv_1/weights", (0,))[-1]
    for family in SSDLITE:
        base = _shapes(family, 1.0, num_classes)
        ratio = stem / base.get("FeatureExtractor/MobilenetV3/Conv_1/weights", (1,))[-1]
        guesses = sorted({*_MULTIPLIERS, round(ratio, 2)}, key=lambda m: abs(m - ratio))
        for multiplier in guesses:
            have = {k: v for k, v in _shapes(family, multiplier, num_classes).items()
                    if k.endswith("weights")}  # fmt: skip
            if have == wanted:
                return family, multiplier, num_classes
    raise WeightsError(
        "the detection checkpoint matches no SSDLite model (ssd_mobilenet_v3_large/small at "
        f"multipliers {_MULTIPLIERS} or its own width ratio); first names: {sorted(wanted)[:3]}"
    )


def load_head(state: dict[str, np.ndarray], source: str, name: str | None = None) -> SSDLite:
    """Build the SSDLite the checkpoint was made for (`name` must agree) and load it."""
    family, multiplier, num_classes = infer_ssdlite(slim_state_shapes(state))
    if name is not None and parse_name(name) != (family, multiplier):
        raise WeightsError(f"{source} holds {family}_{multiplier:g} weights, not {name}")
    model = SSDLite(SSDLITE[family], multiplier, num_classes)
    model.load_report = load_slim_state(model, state, source=source)  # type: ignore[arg-type]
    model.pretrained_info = {"source": source, "format": "tf_checkpoint"}
    return model.eval()
