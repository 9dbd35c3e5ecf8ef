"""`.safetensors` files written by this project: weights + variant, classes, preprocessing and
labels in the metadata, and a sha256 of the tensor data.

Nothing in a file is trusted before it is checked: every metadata number is range-checked
before the model is built, the tensors' names and shapes are compared with the model built on
the meta device (no memory) before any tensor is read, and the sha256 (written by `convert`
and training) is verified when present. The format itself has no checksum, so a file without
the digest can carry a flipped weight byte unnoticed; non-finite weights are always an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from mobilenetv3.atomic import atomic_output
from mobilenetv3.core import specs
from mobilenetv3.core.model import MobileNet
from mobilenetv3.data.preprocess import Preprocess
from mobilenetv3.weights.errors import WeightsError

__all__ = ["load_safetensors", "read_model", "safetensors_metadata", "save_safetensors",
           "tensor_digest"]

SAFETENSORS_FORMAT = "mobilenetv3"
_PLAIN = ("format", "sha256")  # stored as text; every other value is JSON
_MAX_CLASSES = 100_000
_MAX_IMAGE_SIDE = 4096
# (low, high) of every number in the variant; wider than any MobileNet anyone trains.
_VARIANT_RANGES: dict[str, tuple[float, float]] = {
    "depth_multiplier": (0.01, 4.0),
    "min_depth": (1, 1024),
    "divisible_by": (1, 256),
}


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name and raw bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode() + b"\0")
        flat = tensors[name].detach().cpu().reshape(-1).contiguous()
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def save_safetensors(model: nn.Module, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Weights + variant (+ preprocessing, labels, a head model's `head` family in `extra`) of
    a classifier or head model (its backbone's variant) in one file, written atomically."""
    path = Path(path)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": SAFETENSORS_FORMAT,
        "sha256": tensor_digest(tensors),
        "variant": json.dumps(asdict(model.variant)),
        "num_classes": str(model.num_classes),
    }
    meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def _header(path: Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """(raw metadata, {tensor name: shape}) from the header, which safetensors checks against
    the file size; no tensor is read."""
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
            return f.metadata() or {}, shapes
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise WeightsError(
            f"{path} is not a readable safetensors file ({exc}); re-create it with "
            "`mobilenetv3 convert`"
        ) from exc


def _decode(path: Path, raw: dict[str, str]) -> dict[str, Any]:
    if raw.get("format") != SAFETENSORS_FORMAT:
        raise WeightsError(f"{path} was not written by mobilenetv3 (no variant in its metadata)")
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            meta[key] = value if key in _PLAIN else json.loads(value)
        except ValueError as exc:
            raise WeightsError(f"{path}: metadata {key!r} is not valid JSON ({exc})") from exc
    return meta


def _number(path: Path, key: str, value: Any, low: float, high: float, kind: type) -> Any:
    """`value` if it is a `kind` (bool is not a number) within [low, high]."""
    ok_type = isinstance(value, (int, float) if kind is float else int)
    if not ok_type or isinstance(value, bool) or not low <= value <= high:
        raise WeightsError(
            f"{path}: metadata {key} is {str(value)[:40]!r}, expected "
            f"{'a number' if kind is float else 'an integer'} in "
            f"[{low}, {high}]; the file is damaged or not from mobilenetv3"
        )
    return value


def _variant(path: Path, value: Any) -> specs.Variant:
    names = {f.name for f in fields(specs.Variant)}
    if not isinstance(value, dict) or set(value) != names:
        raise WeightsError(f"{path}: metadata variant must hold exactly {sorted(names)}")
    fine = value["finegrain_classification_mode"]
    family = value["family"]
    if not isinstance(family, str) or family not in specs.FAMILIES or not isinstance(fine, bool):
        raise WeightsError(f"{path}: metadata variant {str(value)[:120]} is not a known variant")
    for key, (low, high) in _VARIANT_RANGES.items():
        kind = float if key == "depth_multiplier" else int
        _number(path, f"variant.{key}", value[key], low, high, kind)
    return specs.Variant(**value)


def _preprocess(path: Path, value: Any) -> dict[str, Any]:
    try:
        preset = Preprocess.from_dict(value)
    except (ValueError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{path}: metadata preprocess is invalid ({exc})") from exc
    for side in preset.image_size:
        _number(path, "preprocess.image_size", side, 1, _MAX_IMAGE_SIDE, int)
    return value


def safetensors_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The checked metadata of a mobilenetv3 `.safetensors` file."""
    path = Path(path)
    meta = _decode(path, _header(path)[0])
    _checked_variant(path, meta)
    return meta


def _checked_variant(path: Path, meta: dict[str, Any]) -> specs.Variant:
    """The variant, after range-checking every number of the metadata."""
    for key in ("variant", "num_classes"):
        if key not in meta:
            raise WeightsError(f"{path}: metadata lacks {key!r}; re-create it with convert")
    variant = _variant(path, meta["variant"])
    _number(path, "num_classes", meta["num_classes"], 1, _MAX_CLASSES, int)
    if "preprocess" in meta:
        _preprocess(path, meta["preprocess"])
    labels = meta.get("labels")
    if labels is not None and (
        not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)
    ):
        raise WeightsError(f"{path}: metadata labels must be a list of class names")
    return variant


def _check_names_and_shapes(path: Path, model: nn.Module, shapes: dict) -> None:
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, extra = sorted(set(want) - set(shapes)), sorted(set(shapes) - set(want))
    wrong = sorted(k for k in set(want) & set(shapes) if want[k] != shapes[k])
    if missing or extra or wrong:
        raise WeightsError(
            f"{path} does not fit {model.variant.name} with {model.num_classes} classes: "
            f"missing {missing[:3]}, unexpected {extra[:3]}, other shapes {wrong[:3]}; "
            "the file is damaged or its metadata does not match its tensors"
        )


def _tensors(path: Path, digest: str | None) -> dict[str, torch.Tensor]:
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise WeightsError(f"{path}: the tensor data cannot be read ({exc})") from exc
    if digest is not None and tensor_digest(state) != digest:
        raise WeightsError(
            f"{path}: the tensor data does not match the sha256 in its metadata; the file is "
            "damaged, re-create or re-download it"
        )
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise WeightsError(f"{path}: tensor {name} holds non-finite values (NaN or inf)")
    return state


def read_model(path: Path, build: Callable[[specs.Variant, int], nn.Module]) -> nn.Module:
    """`build(variant, num_classes)` for the file's metadata, with the file's tensors, every
    part checked before use: a classifier here, a head model in `heads.loading`."""
    raw, shapes = _header(path)
    meta = _decode(path, raw)
    variant, stored = _checked_variant(path, meta), meta["num_classes"]
    with torch.device("meta"):
        _check_names_and_shapes(path, build(variant, stored), shapes)
    model = build(variant, stored)
    model.load_state_dict(_tensors(path, meta.get("sha256")))
    model.pretrained_info = {"source": str(path), "format": "safetensors", **meta}
    return model.eval()


def load_safetensors(
    path: Path, name: str | None = None, *, num_classes: int = 1001, dropout: float | None = None
) -> MobileNet:
    """The classifier of a mobilenetv3 `.safetensors` file, every part checked before use."""

    def build(variant: specs.Variant, stored: int) -> MobileNet:
        if name is not None and specs.parse_variant(name) != variant:
            raise WeightsError(f"{path} holds {variant.name} weights, not {name}")
        return MobileNet(variant, num_classes=stored, dropout=dropout)

    model = read_model(path, build)
    if num_classes not in (1001, model.num_classes):
        model.reset_classifier(num_classes)
    return model
