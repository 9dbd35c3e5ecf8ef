"""`create_model`, `load_int8` and `list_models`: the public entry points."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
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
    pretrained: bool = False,
    features_only: bool = False,
    endpoints: list[str] | None = None,
    out_indices: Sequence[int] | None = None,
    int8: bool = False,
    dequantize: bool = False,
    **overrides: Any,
) -> nn.Module:
    """Build a variant by name (`v3_large_1.0`, `v3_small_0.75_finegrain`, `v2_1.4`, or a family
    with `depth_multiplier=`), optionally loading `weights` (a TF checkpoint, release `.tgz`,
    `.tflite` or `.safetensors`; with `name=None` the variant is read from the weights).

    `pretrained=True` loads the official release `name` (`mobilenetv3.weights.hub.RELEASES`)
    from the cache, verified; it never downloads (`mobilenetv3 download NAME` does).
    `overrides`: `dropout`, `finegrain_classification_mode`, `min_depth`, `divisible_by`.
    `features_only=True` returns a backbone whose forward gives the slim endpoints by name,
    chosen by `endpoints` (names) or `out_indices` (stages), described by its `feature_info`.
    An 8-bit `.tflite` is an int8 model: `int8=True` is `load_int8(weights)`, the file's own
    graph (so every other option is refused); `dequantize=True` loads its weights as a float
    model instead; without either it is refused.
    """
    if pretrained:
        name, weights = _release(name, weights)
    if int8:
        _refuse_int8_options(name=name, num_classes=num_classes, features_only=features_only,
                             depth_multiplier=depth_multiplier, endpoints=endpoints,
                             out_indices=out_indices, dequantize=dequantize,
                             **overrides)  # fmt: skip
        return load_int8(weights)
    if weights is not None:
        model = load_pretrained(weights, name, num_classes=num_classes,
                                depth_multiplier=depth_multiplier, dequantize=dequantize,
                                **overrides)  # fmt: skip
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
    if features_only or endpoints or out_indices is not None:
        return FeatureExtractor(model, endpoints, out_indices)
    return model


def load_pretrained(weights: Any, name: str | None = None, *, num_classes: int = 1001,
                    depth_multiplier: float | None = None, use_ema: bool = True,
                    dropout: float | None = None,
                    dequantize: bool = False) -> nn.Module:  # fmt: skip
    """The model the weights were made for (or `name`), loaded: a classifier, or a detection /
    segmentation model where the checkpoint (or `name`) has a head.

    An 8-bit .tflite is an int8 model, so its weights load as float only with `dequantize`:
    one file is one model whatever runs it (`load_int8` runs the integer graph)."""
    from mobilenetv3.heads.loading import is_head_model, load_head, load_head_safetensors
    from mobilenetv3.weights import loading
    from mobilenetv3.weights.errors import WeightsError
    from mobilenetv3.weights.safetensors_io import load_safetensors, safetensors_metadata

    path = loading.existing_weights(weights)
    if path.suffix.lower() == ".safetensors":
        if "head" in safetensors_metadata(path):  # trained by `train --task`
            return load_head_safetensors(path, name)
        return load_safetensors(path, name, num_classes=num_classes, dropout=dropout)
    state, meta = loading.read_slim_state(path, use_ema=use_ema)
    if meta.get("quantized") and not dequantize:
        raise WeightsError(
            f"{path} is an 8-bit .tflite, an int8 model: run its integer graph with int8=True "
            "(load_int8; predict and evaluate run it so by default), or load its weights as a "
            "float model with dequantize=True (--dequantize)"
        )
    if is_head_model(state, name):
        return load_head(state, str(path), name, meta)
    return loading.model_from_state(state, meta, path, name, num_classes=num_classes,
                                    depth_multiplier=depth_multiplier, use_ema=use_ema,
                                    dropout=dropout)  # fmt: skip


def _release(name: str | None, weights: Any) -> tuple[str, Any]:
    """(variant, cached file) of the official release `name`."""
    from mobilenetv3.weights import hub

    if weights is not None:
        raise ValueError("give pretrained=True (an official release by name) or weights=, "
                         "not both")  # fmt: skip
    entry = hub.release(str(name))
    return entry.variant, hub.cached(str(name))


def build(name: str, *, num_classes: int = 1001, depth_multiplier: float | None = None,
          dropout: float | None = None, **variant_fields: Any) -> MobileNet:  # fmt: skip
    variant = specs.parse_variant(name, depth_multiplier)
    unknown = set(variant_fields) - {"finegrain_classification_mode", "min_depth", "divisible_by"}
    if unknown:
        raise TypeError(f"unknown create_model option(s): {', '.join(sorted(unknown))}")
    if variant_fields:
        variant = specs.replace(variant, **variant_fields)
    return MobileNet(variant, num_classes=num_classes, dropout=dropout)


# what `create_model` gets when an option is not given
_DEFAULTS = {"name": None, "num_classes": 1001, "features_only": False, "depth_multiplier": None,
             "endpoints": None, "out_indices": None, "dequantize": False}  # fmt: skip


def _refuse_int8_options(**given: Any) -> None:
    changed = sorted(k for k, v in given.items() if k not in _DEFAULTS or v != _DEFAULTS[k])
    if changed:
        raise ValueError(f"int8=True runs the file's own quantized graph, which cannot take "
                         f"{', '.join(changed)}: pass only weights= (the same as "
                         "mobilenetv3.load_int8(path)), or load the float model without int8=True")


def load_int8(path: str | os.PathLike) -> nn.Module:
    """The integer graph of a quantized .tflite (or of the one a release .tgz holds) as a
    module, bit-exact with LiteRT's reference kernels (`tflite.interpreter`): NCHW float input
    in, the file's dequantized output out. An int8 .onnx / .pt2 runs in its own engine instead
    (`mobilenetv3.quantize.int8_runner(path)`)."""
    from mobilenetv3.tflite.interpreter import QuantizedTFLiteModule
    from mobilenetv3.tflite.reader import TFLiteModel
    from mobilenetv3.weights.archive import read_tar_member

    name = str(path)
    if name.lower().endswith((".onnx", ".pt2")):
        raise ValueError(f"{name}: an int8 {Path(name).suffix} file runs in its engine, not as a "
                         "module: use mobilenetv3.quantize.int8_runner(path)")  # fmt: skip
    if path is None or not name.lower().endswith((".tflite", ".tgz", ".tar.gz")):
        raise ValueError(f"int8=True runs a quantized .tflite (or a release .tgz holding one), as "
                         f"does load_int8; got {path!r}")  # fmt: skip
    if name.lower().endswith(".tflite"):
        return QuantizedTFLiteModule(TFLiteModel.from_file(Path(path))).eval()
    data = read_tar_member(path, ".tflite")
    return QuantizedTFLiteModule(TFLiteModel.from_bytes(data, source=name)).eval()
