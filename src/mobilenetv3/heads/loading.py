"""Head checkpoints (TF Object Detection's SSDLite, DeepLab's LR-ASPP): the model inferred from
the variables' names and shapes, then loaded through the slim name map. A head's .tflite also
gives what its graph fixes: the post-process options and anchors, the image pooling window."""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilenetv3.core.naming import slim_names, slim_shape
from mobilenetv3.core.specs import Variant
from mobilenetv3.heads import build
from mobilenetv3.heads.lraspp import LRASPP, OUTPUT_STRIDE
from mobilenetv3.heads.specs import HEADS, NMS, LRASPPSpec, SSDLiteSpec, parse_name
from mobilenetv3.heads.ssdlite import SSDLite
from mobilenetv3.tflite.model import POSTPROCESS, DetectionPostProcess, Model, TFLiteError
from mobilenetv3.weights.loading import (
    WeightsError,
    fold_identity_batch_norm,
    load_slim_state,
    slim_state_shapes,
)
from mobilenetv3.weights.safetensors_io import read_model, safetensors_metadata

_MULTIPLIERS = (0.25, 0.35, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
_DETECTION_BIASES = "BoxPredictor_0/ClassPredictor/biases"
_SEGMENTATION_BIASES = "decoder/decoder_conv0/biases"
_LAST_CONV = "MobilenetV3/Conv_1/weights"  # its width gives the multiplier's first guess


def is_head_state(state: dict[str, np.ndarray]) -> bool:
    """A detection or segmentation checkpoint: it has a head's class layer."""
    return _DETECTION_BIASES in state or _SEGMENTATION_BIASES in state


def is_head_model(state: dict[str, np.ndarray], name: str | None) -> bool:
    """The weights, or the name asked for, are a head model's."""
    return is_head_state(state) or (name is not None and parse_name(name) is not None)


@cache
def _kernel_shapes(family: str, multiplier: float, classes: int) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = build(family, num_classes=classes, depth_multiplier=multiplier)
    state = model.state_dict()
    return {
        slim: slim_shape(tuple(state[key].shape), slim)
        for slim, key in slim_names(model).items()
        if slim.endswith("weights")
    }


def _num_classes(family: str, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """The class count a family would read from these variables; None: not that kind of head."""
    spec = HEADS[family]
    if isinstance(spec, SSDLiteSpec):  # the first map's boxes x (classes + background)
        biases = shapes.get(_DETECTION_BIASES)
        return None if biases is None else biases[0] // spec.anchors.per_location()[0] - 1
    biases = shapes.get(_SEGMENTATION_BIASES)
    return None if biases is None else biases[0]


def infer_head(shapes: dict[str, tuple[int, ...]]) -> tuple[str, float, int]:
    """(family, depth multiplier, num_classes) whose kernels have exactly these shapes."""
    wanted = {k: v for k, v in shapes.items() if k.endswith("weights")}
    width = next((v[-1] for k, v in wanted.items() if k.endswith(_LAST_CONV)), 0)
    for family in HEADS:
        classes = _num_classes(family, shapes)
        if classes is None:
            continue
        base = _kernel_shapes(family, 1.0, classes)
        ratio = width / next(v[-1] for k, v in base.items() if k.endswith(_LAST_CONV))
        usual = sorted(_MULTIPLIERS, key=lambda m: abs(m - ratio))  # before the ratio itself:
        for multiplier in [*usual, round(ratio, 2)]:  # 0.35 and 0.36 can give equal widths
            if _kernel_shapes(family, multiplier, classes) == wanted:
                return family, multiplier, classes
    raise WeightsError(
        f"the checkpoint matches no head model ({', '.join(HEADS)} at multipliers "
        f"{_MULTIPLIERS} or its own width ratio); first names: {sorted(wanted)[:3]}"
    )


def load_head(state: dict[str, np.ndarray], source: str, name: str | None = None,
              meta: dict[str, Any] | None = None) -> SSDLite | LRASPP:  # fmt: skip
    """Build the head model the checkpoint (or .tflite: `meta["graph"]`) was made for (`name`
    must agree) and load it."""
    if not is_head_state(state):
        raise WeightsError(
            f"{source} has no detection or segmentation head (no {_SEGMENTATION_BIASES} nor "
            f"{_DETECTION_BIASES}): it is a classification checkpoint, so {name} "
            "cannot be built from it; load it without a head model's name"
        )
    family, multiplier, classes = infer_head(slim_state_shapes(state))
    if name is not None and parse_name(name) != (family, multiplier):
        raise WeightsError(f"{source} holds {family}_{multiplier:g} weights, not {name}")
    meta = meta or {"format": "tf_checkpoint"}
    graph = meta.get("graph")
    spec = HEADS[family] if graph is None else _graph_spec(HEADS[family], graph, classes)
    model = (SSDLite if isinstance(spec, SSDLiteSpec) else LRASPP)(spec, multiplier, classes)
    if graph is not None:
        fold_identity_batch_norm(model, state)
    model.load_report = load_slim_state(model, state, source=source)  # type: ignore[arg-type]
    model.pretrained_info = {"source": source, "format": meta["format"]}
    if isinstance(model, SSDLite) and graph is not None:
        _check_anchors(model.eval(), graph)
    return model.eval()


def _graph_spec(spec: SSDLiteSpec | LRASPPSpec, graph: Model, classes: int
                ) -> SSDLiteSpec | LRASPPSpec:  # fmt: skip
    """The spec with what the .tflite's graph fixes: SSDLite's post-process options (NMS, box
    coder scales) and square input size; LR-ASPP's image pooling window and stride. The model
    runs per-class NMS whatever `use_regular_nms` says (the zoo's detect.tflite asks for LiteRT's
    fast NMS, one class per box)."""
    if isinstance(spec, LRASPPSpec):
        # the image pooling: the last pool in the (topologically ordered) operators, after the
        # backbone's squeeze-excite pools where a converter writes those as pools
        pools = [op for op in graph.operators if op.opcode == "AVERAGE_POOL_2D"]
        if not pools:
            raise TFLiteError(f"{graph.source} has no AVERAGE_POOL_2D operator, an LR-ASPP graph "
                              "has one (its image pooling)")  # fmt: skip
        o = pools[-1].options
        window = (o["filter_height"], o["filter_width"])  # DeepLab's (crop - 1) // 32 + 1
        return dataclasses.replace(spec, pooling_stride=(o["stride_h"], o["stride_w"]),
                                   pooling_crop=tuple((w - 1) * OUTPUT_STRIDE + 1
                                                      for w in window))  # fmt: skip
    _, height, width, _ = graph.tensors[graph.inputs[0]].shape
    spec = dataclasses.replace(spec, input_size=height if height == width else spec.input_size)
    ops = [op for op in graph.operators if op.custom_code == POSTPROCESS]
    if not ops:  # the raw graph: box encodings and scores only
        return spec
    options = DetectionPostProcess.from_flexbuffer(ops[0].custom_options or b"", graph.source)
    scores = graph.tensors[ops[0].inputs[1]].shape
    if options.num_classes != classes or scores[-1:] != (classes + 1,):
        raise TFLiteError(f"{graph.source}: {POSTPROCESS} has num_classes {options.num_classes} "
                          f"and scores {scores}, the class predictor has {classes} classes and "
                          "a background; the file is damaged")  # fmt: skip
    nms = NMS(score_threshold=options.nms_score_threshold, iou_threshold=options.nms_iou_threshold,
              max_per_class=options.detections_per_class, max_total=options.max_detections)
    scales = (options.y_scale, options.x_scale, options.h_scale, options.w_scale)
    return dataclasses.replace(spec, nms=nms, box_scales=scales)


def _check_anchors(model: SSDLite, graph: Model) -> None:
    """The file's anchors (the post-process op's third input, center-size) must be the ones
    our generator makes for its input size: the predictors were trained for them."""
    ops = [op for op in graph.operators if op.custom_code == POSTPROCESS]
    if not ops:
        return
    stored = graph.constant(ops[0].inputs[2])
    _, height, width, _ = graph.tensors[graph.inputs[0]].shape
    with torch.no_grad():
        ours = model.forward_raw(torch.zeros(1, 3, height, width))["anchors"].numpy()
    if stored is not None and stored.shape == ours.shape:
        yc, xc, h, w = stored.T
        stored = np.stack([yc - h / 2.0, xc - w / 2.0, yc + h / 2.0, xc + w / 2.0], 1)
        if np.abs(stored - ours).max() <= 1e-5:
            return
    found = "no constant" if stored is None else f"{stored.shape}"
    raise TFLiteError(f"{graph.source}: its anchors ({found}) are not those of "
                      f"{model.variant.name}'s SSD anchor generator at {height}x{width} "
                      f"({ours.shape}); this project cannot decode its boxes")  # fmt: skip


def load_head_safetensors(path: Path, name: str | None = None) -> SSDLite | LRASPP:
    """A head model trained here (`train --task`): the family is the metadata's `head`, the
    depth multiplier its backbone variant's."""
    family = safetensors_metadata(path).get("head")
    if family not in HEADS:
        raise WeightsError(f"{path}: metadata head {family!r} is not one of {', '.join(HEADS)}")

    def make(variant: Variant, classes: int) -> SSDLite | LRASPP:
        if name is not None and parse_name(name) != (family, variant.depth_multiplier):
            raise WeightsError(f"{path} holds {family}_{variant.depth_multiplier:g} weights, "
                               f"not {name}")  # fmt: skip
        return build(family, num_classes=classes, depth_multiplier=variant.depth_multiplier)

    return read_model(path, make)
