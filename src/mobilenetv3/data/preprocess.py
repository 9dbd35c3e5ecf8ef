"""Image preprocessing as data: one frozen `Preprocess` value describes a pipeline exactly.

Why data rather than code: the evaluation pipeline is part of a model's published number
(slim's 87.5% central crop + bilinear resize vs. timm's resize-256-then-crop), so it is stored
next to the weights (`to_dict()` is JSON-able for safetensors metadata) and applied by one
function, `preprocess_image`, for every engine.

Pixel conventions:
- `load_image` always returns an 8-bit RGB `PIL.Image` (see its docstring for each mode).
- `preprocess_image` returns float32 CHW: pixels `p` in [0, 255] become `p / 255`, are cropped
  and resized as the preset says, then normalised `(x - mean) / std`. For `SLIM_EVAL`
  (mean = std = 0.5) that is slim's `(p / 255 - 0.5) * 2 = p / 127.5 - 1` in [-1, 1].
- A quantized .tflite file takes such float input as uint8 codes (`runtime.engines.
  quantize_input`, with the file's scale and zero point; the official files' 1/127, 128):
  `q = clip(round_half_to_even(x / scale) + zero_point, 0, 255)`, so pixel p = 0 -> 1,
  p = 127.5 -> 128, p = 255 -> 255, as LiteRT's default QUANTIZE kernel does it.

Decoding lives in `data.images`, the crop and resize kernels in `data.resize`; this module
holds the recipe (the `Preprocess` value, the presets) and applies it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from mobilenetv3.data.images import MAX_PIXELS, ImageError, load_image, to_rgb
from mobilenetv3.data.resize import (
    center_crop_box,
    central_crop_box,
    resize_bilinear_tf,
    shorter_side_size,
    tf_resize_bilinear_hwc,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KINDS",
    "MAX_PIXELS",
    "RESIZES",
    "SLIM_EVAL",
    "SLIM_EVAL_TF1",
    "TIMM_IMAGENET",
    "ImageError",
    "Preprocess",
    "central_crop_box",
    "center_crop_box",
    "load_image",
    "preprocess_batch",
    "preprocess_image",
    "resize_bilinear_tf",
    "to_rgb",
    "tf_resize_bilinear_hwc",
]

KINDS = ("slim_central_crop", "resize_then_crop")
RESIZES = ("bilinear_tf", "bilinear_tf1_legacy", "pil_bilinear", "pil_bicubic")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INV_255 = float(np.float32(1.0 / 255.0))
MAX_SIDE = 4096  # model input sides (a bound for sizes read from files' metadata)
_PIL_FILTERS = {"pil_bilinear": Image.Resampling.BILINEAR, "pil_bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class Preprocess:
    """One evaluation pipeline, fully specified so that results are reproducible.

    kind:
      "slim_central_crop": crop the central `central_fraction` of the image with
        `tf.image.central_crop`'s arithmetic, then resize to `image_size` (slim eval).
      "resize_then_crop": resize the shorter side to `resize_shorter` (default
        `floor(min(image_size) / central_fraction)`, timm's rule), then take the centre
        `image_size` crop with torchvision's rounding.
    resize: "bilinear_tf" (TF2 `tf.image.resize` bilinear: half-pixel centres, no antialias),
      "bilinear_tf1_legacy" (TF1 `resize_bilinear(align_corners=False)`: no half-pixel offset),
      "pil_bilinear" / "pil_bicubic" (Pillow's antialiased filters on uint8 pixels).
    image_size: output (H, W). mean / std: per-channel, applied to pixels scaled to [0, 1].
    """

    kind: str = "slim_central_crop"
    image_size: tuple[int, int] = (224, 224)
    central_fraction: float = 0.875
    resize: str = "bilinear_tf"
    resize_shorter: int | None = None
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown preprocess kind {self.kind!r}; expected one of {KINDS}")
        if self.resize not in RESIZES:
            raise ValueError(f"unknown resize {self.resize!r}; expected one of {RESIZES}")
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.image_size) != 2 or not 1 <= min(self.image_size) <= max(self.image_size) \
                <= MAX_SIDE:  # fmt: skip
            raise ValueError(f"image_size must be (H, W) in 1..{MAX_SIDE}, got {self.image_size}")
        if not 0.0 < self.central_fraction <= 1.0:
            raise ValueError(f"central_fraction must be in (0, 1], got {self.central_fraction}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need 3 values each, std > 0")
        if self.resize_shorter is not None and not 1 <= self.resize_shorter <= MAX_SIDE:
            raise ValueError(f"resize_shorter must be in 1..{MAX_SIDE}, got {self.resize_shorter}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (lists for tuples), e.g. for safetensors metadata."""
        d = asdict(self)
        for key in ("image_size", "mean", "std"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        """Inverse of `to_dict`; unknown keys are an error so typos do not pass silently."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown Preprocess fields: {sorted(unknown)}")
        kw = dict(d)
        for key in ("image_size", "mean", "std"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)

    def replace(self, **changes: Any) -> Preprocess:
        """A copy with some fields changed (e.g. another image size)."""
        return Preprocess.from_dict({**asdict(self), **changes})

    @property
    def shorter_side(self) -> int:
        """Target of the shorter-side resize for "resize_then_crop"."""
        if self.resize_shorter is not None:
            return self.resize_shorter
        return int(math.floor(min(self.image_size) / self.central_fraction))


SLIM_EVAL = Preprocess(
    kind="slim_central_crop",
    image_size=(224, 224),
    central_fraction=0.875,
    resize="bilinear_tf",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    name="slim_eval",
)
"""Slim evaluation: central_crop(0.875), TF2 bilinear to 224x224, scale to [-1, 1]."""

SLIM_EVAL_TF1 = SLIM_EVAL.replace(resize="bilinear_tf1_legacy", name="slim_eval_tf1")
"""As SLIM_EVAL with TF1's legacy `resize_bilinear` (what slim's TF1-era code ran)."""

TIMM_IMAGENET = Preprocess(
    kind="resize_then_crop",
    image_size=(224, 224),
    central_fraction=0.875,
    resize="pil_bicubic",
    resize_shorter=256,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    name="timm_imagenet",
)
"""timm/torchvision style: shorter side to 256 (Pillow bicubic), centre 224 crop, ImageNet
mean/std."""


def to_model_range(pixels: np.ndarray) -> torch.Tensor:
    """HWC pixels in [0, 255] -> CHW float32 in [-1, 1], TF's (2 / 255) x - 1: the input of the
    detection and segmentation heads (TF Object Detection's and DeepLab's preprocessing)."""
    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(2, 0, 1)
    return x * np.float32(2 / 255) - 1


def _to_float(arr: np.ndarray) -> np.ndarray:
    """HWC uint8 -> HWC float32 in [0, 1] exactly as TF's `convert_image_dtype` does it:
    multiply by float32(1 / 255), which differs from division by 255 in the last bit."""
    return arr.astype(np.float32) * _INV_255


def _resize_pil(img: Image.Image, size: tuple[int, int], resize: str) -> Image.Image:
    """Pillow resize to (H, W); Pillow takes (W, H)."""
    return img.resize((size[1], size[0]), _PIL_FILTERS[resize])


def _resize_u8(arr: np.ndarray, size: tuple[int, int], resize: str) -> np.ndarray:
    """uint8 HWC pixels -> float32 [0, 1] resized with a TF kernel."""
    return tf_resize_bilinear_hwc(arr, size, resize == "bilinear_tf", scale=_INV_255)


def _normalize_chw(x: np.ndarray, p: Preprocess) -> torch.Tensor:
    """HWC float32 -> contiguous CHW tensor of (x - mean) / std, one channel at a time
    (broadcasting over a last axis of 3 is slow in numpy)."""
    chw = np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)
    for ch in range(3):
        chw[ch] -= np.float32(p.mean[ch])
        chw[ch] /= np.float32(p.std[ch])
    return torch.from_numpy(chw)


def preprocess_image(img: Image.Image, p: Preprocess = SLIM_EVAL) -> torch.Tensor:
    """Apply preset `p` to one image: float32 (3, H, W), normalised with p.mean / p.std.

    Computed in numpy (single-threaded, exact TF float32 formulas); only the result is torch.
    """
    img = to_rgb(img)
    out_h, out_w = p.image_size
    pil = p.resize in _PIL_FILTERS
    if p.kind == "slim_central_crop":
        top, left, ch, cw = central_crop_box(img.height, img.width, p.central_fraction)
        if pil:
            img = img.crop((left, top, left + cw, top + ch))
            x = _to_float(np.asarray(_resize_pil(img, (out_h, out_w), p.resize)))
        else:
            arr = np.asarray(img)[top : top + ch, left : left + cw]
            x = _resize_u8(arr, (out_h, out_w), p.resize)
    else:
        rh, rw = shorter_side_size(img.height, img.width, p.shorter_side)
        top, left = center_crop_box(rh, rw, out_h, out_w)
        if pil:
            arr = np.asarray(_resize_pil(img, (rh, rw), p.resize))
            x = _to_float(arr[top : top + out_h, left : left + out_w])
        else:
            x = _resize_u8(np.asarray(img), (rh, rw), p.resize)
            x = x[top : top + out_h, left : left + out_w]
    return _normalize_chw(x, p)


def preprocess_batch(images: Sequence[Image.Image], p: Preprocess = SLIM_EVAL) -> torch.Tensor:
    """Stack `preprocess_image` over images: float32 (N, 3, H, W)."""
    if not images:
        return torch.empty((0, 3, *p.image_size), dtype=torch.float32)
    return torch.stack([preprocess_image(img, p) for img in images])


