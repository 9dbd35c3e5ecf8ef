"""`create_model` and `list_models`: the public entry points."""

from __future__ import annotations

from typing import Any

from torch import nn

from mobilenetv3 import heads
from mobilenetv3.core import specs
from mobilenetv3.core.model import FeatureExtractor, MobileNet


def list_models(task: str = "classification") -> list[str]:
    """The named models of a task: "classification", "detection", "segmentation"."""
    models = {"classification": specs.NAMED_VARIANTS, **heads.TASK_MODELS}
    if task not in models:
        raise ValueError(f"unknown task {task!r}: expected one of {', '.join(models)}")
    return list(models[task])


def create_model(
    name: str | None = None,
    *,
    num_classes: int = 1001,
    depth_multiplier: float | None = None,
    weights: Any = None,
    features_only: bool = False,
    endpoints: list[str] | None = None,
    int8: bool = False,
    **overrides: Any,
) -> nn.Module:
    """Build a variant by name (`v3_large_1.0`, `v3_small_0.75_finegrain`, `v2_1.4`, or a family
    with `depth_multiplier=`), optionally loading `weights` (a TF checkpoint, release `.tgz`,
    `.tflite` or `.safetensors`; with `name=None` the variant is read from the weights).

    `overrides`: `dropout`, `finegrain_classification_mode`, `min_depth`, `divisible_by`.
    `features_only=True` returns a backbone whose forward gives the slim endpoints by name.
    `int8=True` (a uint8 .tflite, or a .tgz holding one) returns the integer reference path:
    the file's quantized graph run as LiteRT's reference kernels run it (`quantized.py`).
    """
    if int8:
        return _int8_module(weights)
    if weights is not None:
        from mobilenetv3.weights.loading import load_pretrained

        model = load_pretrained(weights, name, num_classes=num_classes,
                                depth_multiplier=depth_multiplier, **overrides)  # fmt: skip
    else:
        if name is None:
            raise ValueError("create_model needs a model name or weights to infer it from; "
                             f"known names: {', '.join(list_models())}")  # fmt: skip
        if heads.parse_name(name, depth_multiplier):  # a head model (1001: the default)
            if features_only or endpoints or overrides:
                raise TypeError(f"{name} is a detection/segmentation model: features_only, "
                                "endpoints and classification options do not apply")  # fmt: skip
            return heads.build(name, num_classes=None if num_classes == 1001 else num_classes,
                               depth_multiplier=depth_multiplier)  # fmt: skip
        model = build(name, num_classes=num_classes, depth_multiplier=depth_multiplier,
                      **overrides)  # fmt: skip
    return FeatureExtractor(model, endpoints) if features_only or endpoints else model


def build(name: str, *, num_classes: int = 1001, depth_multiplier: float | None = None,
          dropout: float | None = None, **variant_fields: Any) -> MobileNet:  # fmt: skip
    variant = specs.parse_variant(name, depth_multiplier)
    unknown = set(variant_fields) - {"finegrain_classification_mode", "min_depth", "divisible_by"}
    if unknown:
        raise TypeError(f"unknown create_model option(s): {', '.join(sorted(unknown))}")
    if variant_fields:
        variant = specs.replace(variant, **variant_fields)
    return MobileNet(variant, num_classes=num_classes, dropout=dropout)


def _int8_module(weights: Any) -> nn.Module:
    from pathlib import Path

    from mobilenetv3.tflite.interpreter import QuantizedTFLiteModule
    from mobilenetv3.tflite.reader import TFLiteModel

    if weights is None or not str(weights).endswith((".tflite", ".tgz", ".tar.gz")):
        raise ValueError(f"int8=True runs a quantized .tflite (or a release .tgz holding one), "
                         f"got {weights!r}")  # fmt: skip
    if str(weights).endswith(".tflite"):
        return QuantizedTFLiteModule(TFLiteModel.from_file(Path(weights))).eval()
    from mobilenetv3.weights.archive import read_tar_member

    data = read_tar_member(weights, ".tflite")
    return QuantizedTFLiteModule(TFLiteModel.from_bytes(data, source=str(weights))).eval()
