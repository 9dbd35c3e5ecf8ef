"""Export of the detection and segmentation heads (SSDLite, LR-ASPP) through the same
`export()` as the classifiers, at a fixed input size (TF "SAME" padding made static).

What each file holds, and what the check after writing compares with PyTorch:

- SSDLite, ONNX: `forward_raw`'s `box_encodings` [N, A, 4], `class_logits` [N, A, C + 1] and
  `anchors` [A, 4] (a constant output).
- SSDLite, TFLite: what TF's `export_tflite_ssd_graph` + converter give (the zoo's
  detect.tflite): input `normalized_input_image_tensor` [1, H, W, 3]; `raw_outputs/box_encodings`,
  `raw_outputs/class_predictions` (sigmoid scores) and the constant `anchors` (center-size
  ycenter, xcenter, h, w) feeding the custom op `TFLite_Detection_PostProcess` (LiteRT ships
  it), whose four outputs (boxes, 0-based classes, scores, count) come first, the two raw ones
  after them. Its options are the config's NMS and box coder scales, with regular per-class
  NMS and 100 detections, so that it equals `model(x)` (TF's exporter defaults to fast NMS,
  one class per box, 10 detections). LiteRT leaves boxes unclipped: the check clips them to
  the image as `model(x)` does.
- LR-ASPP: logits at the input size ([N, classes, H, W] in ONNX, NHWC in TFLite), the decoder
  output resized bilinearly with align_corners as DeepLab does (RESIZE_BILINEAR align_corners,
  half_pixel_centers off: torch's align_corners=True).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from flatbuffers import flexbuffers
from torch import nn

from mobilenetv3.atomic import atomic_output
from mobilenetv3.core.deploy import deploy_graph
from mobilenetv3.core.layers import Bottleneck
from mobilenetv3.core.model import inner_endpoint
from mobilenetv3.export.check import ExportResult, Outputs, engine_differences, same_outputs
from mobilenetv3.export.onnx import OPSET, write_onnx
from mobilenetv3.export.tflite import (
    average_pool,
    emit,
    emit_bottleneck,
    emit_conv,
    emit_hard_sigmoid,
)
from mobilenetv3.heads import LRASPP, SSDLite
from mobilenetv3.tflite.model import Model, Operator
from mobilenetv3.tflite.writer import serialize

RAW_OUTPUTS = ("box_encodings", "class_logits", "anchors")
POSTPROCESS = "TFLite_Detection_PostProcess"
#: the custom op's outputs (TF's tensor names) -> `model(x)`'s keys
DETECTIONS = {POSTPROCESS: "detection_boxes", f"{POSTPROCESS}:1": "detection_classes",
              f"{POSTPROCESS}:2": "detection_scores", f"{POSTPROCESS}:3": "num_detections"}
RAW_TFLITE = ("raw_outputs/box_encodings", "raw_outputs/class_predictions")
SCORE_MARGIN = 1e-3  # detections this close to the cut may fall either side of it
SEGMENTATION_SIZE = (1024, 2048)  # Cityscapes, the size DeepLab's MAdds are given at


def default_image_size(model: nn.Module) -> tuple[int, int]:
    """The size a model is exported at when none is given: SSDLite's fixed_shape_resizer,
    Cityscapes for LR-ASPP, 224 for a classifier."""
    if isinstance(model, SSDLite):
        return (model.spec.input_size, model.spec.input_size)
    return SEGMENTATION_SIZE if isinstance(model, LRASPP) else (224, 224)


def export_head(model: nn.Module, path: str | os.PathLike, format: str, *,
                image_size: tuple[int, int] | None = None, dynamic_batch: bool = False,
                softmax: bool = False, check: bool = True,
                opset: int = OPSET) -> ExportResult:  # fmt: skip
    """Write a head model as ONNX or TFLite at a fixed size (`default_image_size` unless
    given), then run the file in its engine and compare every output with PyTorch."""
    _check_options(model, format, softmax, dynamic_batch)
    image_size = tuple(image_size or default_image_size(model))
    with atomic_output(path) as tmp:
        if format == "onnx":
            graph, outputs = onnx_graph(model, image_size)
            write_onnx(graph, tmp, image_size, outputs, dynamic_batch, opset, ("anchors",))
            batch = 2 if dynamic_batch else 1
            differences = check_onnx(tmp, model, image_size, batch) if check else None
        else:
            tmp.write_bytes(serialize(build_head_graph(model.eval(), image_size, dynamic_batch)))
            differences = check_tflite(tmp, model, image_size) if check else None
    worst = None if differences is None else max(differences.values())
    return ExportResult(Path(path), format, worst, differences)


def _check_options(model: nn.Module, fmt: str, softmax: bool, dynamic_batch: bool) -> None:
    """Refuse, in one line, what a head's file cannot be."""
    name = type(model).__name__
    if fmt not in ("onnx", "tflite"):
        raise ValueError(f"{name} exports to onnx or tflite, not {fmt}")
    if softmax:
        raise ValueError(f"{name} has no classifier to end in a softmax: export it without "
                         "--softmax")  # fmt: skip
    if dynamic_batch and fmt == "tflite" and isinstance(model, SSDLite):
        raise ValueError(f"{POSTPROCESS} runs one image: export SSDLite to TFLite without "
                         "--dynamic-batch")  # fmt: skip


class _RawDetections(nn.Module):
    """`forward_raw` as a tuple (the form a tracer exports), the anchors of the fixed image
    size a stored constant rather than ops computing them."""

    def __init__(self, model: nn.Module, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        with torch.no_grad():
            anchors = model.forward_raw(torch.zeros(1, 3, *image_size))["anchors"]
        self.register_buffer("anchors", anchors)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raw = self.model.forward_raw(x)
        return raw["box_encodings"], raw["class_logits"], self.anchors


def onnx_graph(model: nn.Module, image_size: tuple[int, int]) -> tuple[nn.Module, list[str]]:
    """The module the ONNX exporter traces for a head, and its output names."""
    graph = deploy_graph(model, image_size)
    if isinstance(model, SSDLite):
        return _RawDetections(graph, image_size), list(RAW_OUTPUTS)
    return graph, ["logits"]


def check_onnx(path: str | os.PathLike, model: nn.Module, image_size: tuple[int, int],
               batch: int = 1) -> dict[str, float]:  # fmt: skip
    """Per-output max abs difference of ONNX Runtime on `path` from PyTorch."""

    def reference(x: torch.Tensor) -> Outputs:
        with torch.inference_mode():
            if isinstance(model, SSDLite):
                raw = model.eval().forward_raw(x)
                return {name: raw[name].numpy() for name in RAW_OUTPUTS}
            return {"logits": model.eval()(x).numpy()}

    return engine_differences("onnxruntime", path, reference, image_size, batch)


def check_tflite(path: str | os.PathLike, model: nn.Module, image_size: tuple[int, int]
                 ) -> dict[str, float]:  # fmt: skip
    """LiteRT on `path` against PyTorch: LR-ASPP's logits, or SSDLite's raw scores and box
    encodings per element and its detections matched to `model(x)`'s (`compare_detections`)."""
    if isinstance(model, SSDLite):
        return engine_differences("litert", path, lambda x: _detections(model, x), image_size,
                                  compare=compare_detections)  # fmt: skip

    def reference(x: torch.Tensor) -> Outputs:
        with torch.inference_mode():
            return {"logits": model.eval()(x).numpy()}

    def nchw(got: Outputs, expected: Outputs) -> dict[str, float]:
        return same_outputs({"logits": got["logits"].transpose(0, 3, 1, 2)}, expected)

    return engine_differences("litert", path, reference, image_size, compare=nchw)


def _detections(model: SSDLite, x: torch.Tensor) -> Outputs:
    with torch.inference_mode():
        raw = model.eval().forward_raw(x)
        found = model(x)
    return {"raw_outputs/box_encodings": raw["box_encodings"].numpy(),
            "raw_outputs/class_predictions": torch.sigmoid(raw["class_logits"]).numpy(),
            **{name: value[0].numpy() for name, value in found.items()}}  # fmt: skip


def compare_detections(got: Outputs, expected: Outputs) -> dict[str, float]:
    """The raw outputs element by element; the detections (batch 1) matched rather than by rank,
    as scores closer than the raw outputs' rounding may swap places or cross the cut of a full
    list: each PyTorch detection scoring more than `SCORE_MARGIN` above that cut is compared
    with LiteRT's detection of its class with the nearest box, clipped to the image first as
    `model(x)` clips it."""
    differences = same_outputs(got, {name: expected[name] for name in RAW_TFLITE})
    found = {DETECTIONS[name]: value[0] for name, value in got.items() if name in DETECTIONS}
    count, wanted = int(found["num_detections"]), int(expected["num_detections"])
    mine = (found["detection_boxes"][:count].clip(0.0, 1.0),
            found["detection_classes"][:count] + 1, found["detection_scores"][:count])
    theirs = tuple(expected[f"detection_{key}"][:wanted] for key in ("boxes", "classes", "scores"))
    full = len(expected["detection_scores"])
    lowest = [scores[-1] for scores in (mine[2], theirs[2]) if len(scores) == full]
    box_diff, score_diff, unmatched = _match(mine, theirs, max(lowest, default=-np.inf))
    return {**differences, "detection_boxes": box_diff, "detection_scores": score_diff,
            "unmatched_detections": float(unmatched), "num_detections": float(abs(count - wanted))}


def _match(got: tuple[np.ndarray, ...], expected: tuple[np.ndarray, ...], cut: float
           ) -> tuple[float, float, int]:  # fmt: skip
    """(boxes, classes, scores) of two detection lists: the largest box and score differences
    of each expected detection above `cut` + `SCORE_MARGIN` from the got detection of its class
    with the nearest box, and how many found none of their class."""
    boxes, classes, scores = got
    box_diff, score_diff, unmatched = 0.0, 0.0, 0
    for box, label, score in zip(*expected, strict=True):
        if score <= cut + SCORE_MARGIN:
            continue
        same = np.flatnonzero(classes == label)
        if not same.size:
            unmatched += 1
            continue
        nearest = same[np.abs(boxes[same] - box).max(1).argmin()]
        box_diff = max(box_diff, float(np.abs(boxes[nearest] - box).max()))
        score_diff = max(score_diff, float(abs(scores[nearest] - score)))
    return box_diff, score_diff, unmatched


# TFLite ------------------------------------------------------------------------------------


def build_head_graph(model: nn.Module, image_size: tuple[int, int],
                     dynamic_batch: bool = False) -> Model:  # fmt: skip
    """A head model (eval mode) walked into a TFLite graph: input tensor 0."""
    name = f"{type(model).__name__} {model.variant.name}"
    g = Model(description=f"mobilenetv3 export: {name} at {tuple(image_size)}")
    x = g.add_activation("normalized_input_image_tensor", (1, *image_size, 3))
    if dynamic_batch:
        g.tensors[x].shape_signature = (-1, *image_size, 3)
    with torch.no_grad():
        g.outputs = _ssdlite(g, model, x) if isinstance(model, SSDLite) else _lraspp(g, model, x)
    g.inputs = [x]
    return g


def emit_endpoints(g: Model, layers: nn.Sequential, x: int, wanted: list[str]
                   ) -> dict[str, int]:  # fmt: skip
    """The backbone's layers (cut after the last endpoint, as the heads keep them); the wanted
    endpoints' tensors by slim name, inner ones such as `layer_14/expansion_output` included."""
    found: dict[str, int] = {}
    for number, layer in enumerate(layers, start=1):
        prefix = f"layer_{number}/"

        def tap(module: nn.Module, out: int, prefix: str = prefix) -> None:
            found[f"{prefix}{inner_endpoint(module)}"] = out

        tapped = isinstance(layer, Bottleneck)
        x = emit_bottleneck(g, layer, x, tap) if tapped else emit(g, layer, x)
        found[f"layer_{number}"] = x
    return {name: found[name] for name in wanted}


def _emit_all(g: Model, layers: nn.Sequential, x: int) -> int:
    for layer in layers:
        x = emit(g, layer, x)
    return x


def _per_anchor(g: Model, x: int, size: int) -> int:
    """NHWC [1, H, W, boxes * size] -> [1, H * W * boxes, size] (TF's reshape)."""
    batch, height, width, channels = g.shape(x)
    new_shape = g.add_constant(f"{g.tensors[x].name}/shape", np.array([batch, -1, size], np.int32))
    return g.op("RESHAPE", [x, new_shape], f"{g.tensors[x].name}/Reshape",
                (batch, height * width * channels // size, size), new_shape=[batch, -1, size])


def _concat(g: Model, parts: list[int], name: str) -> int:
    batch, _, size = g.shape(parts[0])
    anchors = sum(g.shape(p)[1] for p in parts)
    return g.op("CONCATENATION", parts, name, (batch, anchors, size), axis=1,
                fused_activation_function="NONE")  # fmt: skip


def center_size_anchors(model: SSDLite, maps: list[tuple[int, int]],
                        image_size: tuple[int, int]) -> np.ndarray:  # fmt: skip
    """[A, 4] anchors as TF's exporter stores them: ycenter, xcenter, height, width."""
    ymin, xmin, ymax, xmax = model.spec.anchors.generate(maps, image_size).unbind(-1)
    height, width = ymax - ymin, xmax - xmin
    return torch.stack([ymin + height / 2.0, xmin + width / 2.0, height, width], 1).numpy()


def postprocess_options(model: SSDLite) -> bytes:
    """`TFLite_Detection_PostProcess`'s FlexBuffer options: the config's NMS and box coder."""
    nms, (y, x, h, w) = model.spec.nms, model.spec.box_scales
    return bytes(flexbuffers.Dumps({
        "max_detections": nms.max_total, "max_classes_per_detection": 1,
        "detections_per_class": nms.max_per_class, "use_regular_nms": True,
        "nms_score_threshold": nms.score_threshold, "nms_iou_threshold": nms.iou_threshold,
        "num_classes": model.num_classes, "y_scale": y, "x_scale": x, "h_scale": h,
        "w_scale": w, "_output_quantized": True,
    }))  # fmt: skip


def _ssdlite(g: Model, model: SSDLite, x: int) -> list[int]:
    maps = list(emit_endpoints(g, model.backbone.features, x, list(model.spec.endpoints)).values())
    for extra in model.extra:
        maps.append(_emit_all(g, extra, maps[-1]))
    classes = model.num_classes + 1
    boxes = _concat(g, [_per_anchor(g, _emit_all(g, head, m), 4)
                        for head, m in zip(model.box_heads, maps, strict=True)],
                    "raw_outputs/box_encodings")  # fmt: skip
    logits = _concat(g, [_per_anchor(g, _emit_all(g, head, m), classes)
                         for head, m in zip(model.class_heads, maps, strict=True)],
                     "concat_1")  # fmt: skip
    scores = g.op("LOGISTIC", [logits], "raw_outputs/class_predictions", g.shape(logits))
    shapes = [g.shape(m)[1:3] for m in maps]
    anchors = g.add_constant("anchors", center_size_anchors(model, shapes, g.shape(x)[1:3]))
    k = model.spec.nms.max_total
    shapes = {POSTPROCESS: (1, k, 4), f"{POSTPROCESS}:1": (1, k), f"{POSTPROCESS}:2": (1, k),
              f"{POSTPROCESS}:3": (1,)}  # fmt: skip
    outputs = tuple(g.add_activation(name, shape) for name, shape in shapes.items())
    g.operators.append(Operator("CUSTOM", (boxes, scores, anchors), outputs,
                                custom_code=POSTPROCESS,
                                custom_options=postprocess_options(model)))  # fmt: skip
    return [*outputs, boxes, scores]


def _resize(g: Model, x: int, size: tuple[int, int], name: str) -> int:
    """RESIZE_BILINEAR with align_corners (DeepLab's resize_bilinear)."""
    target = g.add_constant(f"{name}/size", np.array(size, np.int32))
    batch, _, _, channels = g.shape(x)
    return g.op("RESIZE_BILINEAR", [x, target], name, (batch, *size, channels),
                align_corners=True, half_pixel_centers=False)  # fmt: skip


def _lraspp(g: Model, model: LRASPP, x: int) -> list[int]:
    spec = model.spec
    ends = emit_endpoints(g, model.backbone.features, x, [spec.low, spec.high])
    low, high = ends[spec.low], ends[spec.high]
    high_size, low_size = g.shape(high)[1:3], g.shape(low)[1:3]
    pooled = average_pool(g, high, "image_pooling/AvgPool", tuple(model.pool_window(high_size)),
                          spec.pooling_stride)  # fmt: skip
    gate = emit_hard_sigmoid(g, emit_conv(g, model.image_pooling, pooled), "image_pooling")
    gate = _resize(g, gate, high_size, "image_pooling/ResizeBilinear")
    merged = g.op("MUL", [emit_conv(g, model.aspp, high), gate], "aspp0/mul", g.shape(high)[:3]
                  + (spec.filters,), fused_activation_function="NONE")  # fmt: skip
    merged = _resize(g, merged, low_size, "decoder/ResizeBilinear")
    logits = g.op("ADD", [emit_conv(g, model.classifier, merged),
                          emit_conv(g, model.projection, low)],
                  "decoder/add", (*g.shape(low)[:3], model.num_classes),
                  fused_activation_function="NONE")  # fmt: skip
    return [_resize(g, logits, g.shape(x)[1:3], "logits")]
