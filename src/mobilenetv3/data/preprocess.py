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
- `to_uint8_nhwc` maps such float input to the uint8 codes a quantized .tflite file expects,
  using that file's input scale and zero point (default: the official files' 1/127, 128):
  `q = clip(round_half_away_from_zero(x / scale) + zero_point, 0, 255)`. For a resized pixel
  value `p` this is `q = clip(round((p / 127.5 - 1) * 127) + 128, 0, 255)`, so p = 0 -> 1,
  p = 127.5 -> 128, p = 255 -> 255. This is what TFLite's own QUANTIZE op would do with the
  float model input, and it reproduces the figures in shared/README.md.
"""

from __future__ import annotations

import math
import struct
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

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
    "resize_bilinear_tf1",
    "to_rgb",
    "tf_resize_bilinear_hwc",
    "to_uint8_nhwc",
]

KINDS = ("slim_central_crop", "resize_then_crop")
RESIZES = ("bilinear_tf", "bilinear_tf1_legacy", "pil_bilinear", "pil_bicubic")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INV_255 = float(np.float32(1.0 / 255.0))
MAX_SIDE = 4096  # model input sides (a bound for sizes read from files' metadata)
MAX_PIXELS = 89_478_485  # Pillow's own warning threshold (a 0.25 GiB RGBA image)
_PIL_FILTERS = {"pil_bilinear": Image.Resampling.BILINEAR, "pil_bicubic": Image.Resampling.BICUBIC}


class ImageError(ValueError):
    """A file that cannot be decoded as an image (missing, empty, truncated, not an image)."""


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


# --------------------------------------------------------------------------- decoding


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from any Pillow mode, so every engine sees the same pixels.

    - RGBA / LA / PA / P or L with transparency: alpha-composited on white (transparent
      regions of logos and cut-outs are usually meant as background, and their hidden colour
      is often black noise; dropping alpha would expose it).
    - I;16* and I (16-bit PNG/TIFF greyscale): scaled by 255/65535 (rounded), not clipped.
    - F (float): assumed to hold 0..255 values, clipped.
    - L, 1, CMYK, YCbCr, LAB, HSV: Pillow's own conversion to RGB.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img).astype(np.float64)
        a = np.clip(np.rint(a * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "F":
        a = np.clip(np.rint(np.asarray(img, dtype=np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """Decode a file to 8-bit RGB, applying the EXIF orientation (as a camera viewer would).

    Raises `ImageError` naming the file for a missing, empty, truncated or non-image file, and
    for one declaring more than `max_pixels` pixels (default `MAX_PIXELS`; checked from the
    header, before decoding: a small file can declare a huge image). Pixels are decoded
    exactly (no JPEG `draft()` downscaling), as slim evaluation needs.
    """
    path, max_pixels = Path(path), max_pixels or MAX_PIXELS
    hint = "check or re-download the file, or remove it from the dataset (or use skip_bad)"
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file (0 bytes); {hint}")
        with warnings.catch_warnings():  # the limit below replaces Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            if img.width * img.height > max_pixels:
                raise ImageError(f"{path}: declares {img.width}x{img.height} pixels, more than "
                                 f"the limit of {max_pixels}; raise it with --max-pixels / "
                                 "max_pixels if the image is genuine")  # fmt: skip
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return to_rgb(img)
    except ImageError:
        raise
    except FileNotFoundError as e:
        raise ImageError(f"{path}: no such file; {hint}") from e
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: {e}; set PIL.Image.MAX_IMAGE_PIXELS for larger images") from e
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, struct.error, zlib.error,
            IndexError, KeyError, TypeError) as e:  # fmt: skip
        raise ImageError(f"{path}: cannot decode image ({type(e).__name__}: {e}); {hint}") from e


# --------------------------------------------------------------------------- geometry


def central_crop_box(height: int, width: int, fraction: float) -> tuple[int, int, int, int]:
    """(top, left, crop_h, crop_w) exactly as `tf.image.central_crop` computes it.

    TF: start = int((size - size * fraction) / 2) in float64 (truncation), crop size =
    size - 2 * start, so the crop is always centred with equal margins.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"central_fraction must be in (0, 1], got {fraction}")
    top = int((float(height) - float(height) * fraction) / 2)
    left = int((float(width) - float(width) * fraction) / 2)
    return top, left, height - 2 * top, width - 2 * left


def center_crop_box(height: int, width: int, crop_h: int, crop_w: int) -> tuple[int, int]:
    """(top, left) of a fixed-size centre crop with torchvision's rounding."""
    if crop_h > height or crop_w > width:
        raise ValueError(f"crop {crop_h}x{crop_w} larger than image {height}x{width}")
    return int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))


def _shorter_side_size(height: int, width: int, shorter: int) -> tuple[int, int]:
    """(H, W) after resizing the shorter side to `shorter` (torchvision's truncation)."""
    if height <= width:
        return shorter, max(1, int(shorter * width / height))
    return max(1, int(shorter * height / width)), shorter


# --------------------------------------------------------------------------- resizing


def resize_bilinear_tf(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF2 `tf.image.resize(..., "bilinear", antialias=False)` of a (C, H, W) or (N, C, H, W)
    float tensor: half-pixel centres, source index clamped at the borders.

    PyTorch's `interpolate(align_corners=False, antialias=False)` uses the same sampling
    grid (src = (dst + 0.5) * in / out - 0.5, clamped at 0), so it is used for speed.
    """
    squeeze = x.dim() == 3
    x4 = x.unsqueeze(0) if squeeze else x
    if tuple(x4.shape[-2:]) == tuple(size):
        out = x4
    else:
        out = F.interpolate(x4, size=size, mode="bilinear", align_corners=False, antialias=False)
    return out.squeeze(0) if squeeze else out


def _legacy_axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TF1 legacy sampling: src = dst * in / out, lower = floor, upper = min(lower + 1, in - 1)."""
    scale = n_in / n_out
    src = torch.arange(n_out, dtype=torch.float32) * np.float32(scale)
    lo = torch.floor(src).to(torch.int64).clamp_(max=n_in - 1)
    hi = torch.clamp(lo + 1, max=n_in - 1)
    return lo, hi, src - lo.to(torch.float32)


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1 `tf.compat.v1.image.resize_bilinear(align_corners=False)` (no half-pixel centres)
    of a (C, H, W) or (N, C, H, W) float tensor."""
    h_out, w_out = size
    h_in, w_in = x.shape[-2:]
    ylo, yhi, yf = _legacy_axis(h_in, h_out)
    xlo, xhi, xf = _legacy_axis(w_in, w_out)
    top_rows = x.index_select(-2, ylo)
    bot_rows = x.index_select(-2, yhi)
    xf = xf.to(x.dtype)
    yf = yf.to(x.dtype).unsqueeze(-1)

    def horiz(rows: torch.Tensor) -> torch.Tensor:
        left = rows.index_select(-1, xlo)
        return left + (rows.index_select(-1, xhi) - left) * xf

    top = horiz(top_rows)
    return top + (horiz(bot_rows) - top) * yf


# --------------------------------------------------------------------------- pipeline


def _to_float(arr: np.ndarray) -> np.ndarray:
    """HWC uint8 -> HWC float32 in [0, 1] exactly as TF's `convert_image_dtype` does it:
    multiply by float32(1 / 255), which differs from division by 255 in the last bit."""
    return arr.astype(np.float32) * _INV_255


def _tf_axis(n_in: int, n_out: int, half_pixel: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TF resize_bilinear's per-axis (lower, upper, lerp), computed in float32 as TF does."""
    scale = np.float32(n_in) / np.float32(n_out)
    i = np.arange(n_out, dtype=np.float32)
    src = (i + np.float32(0.5)) * scale - np.float32(0.5) if half_pixel else i * scale
    src_floor = np.floor(src)
    lo = np.maximum(src_floor, 0).astype(np.intp)
    hi = np.minimum(np.ceil(src), n_in - 1).astype(np.intp)
    return lo, hi, (src - src_floor).astype(np.float32)


def tf_resize_bilinear_hwc(
    x: np.ndarray, size: tuple[int, int], half_pixel: bool, scale: float | None = None
) -> np.ndarray:
    """Port of TF's `ResizeBilinear` kernel for one HWC image (numpy, single thread): float32.

    half_pixel=True is TF2 `tf.image.resize` (no antialias); False is TF1's legacy
    `resize_bilinear(align_corners=False)`. Same float32 formula as TF:
    top = tl + (tr - tl) * x_lerp, bottom likewise, out = top + (bottom - top) * y_lerp.
    With `scale`, input values are first mapped `float32(v) * float32(scale)` (e.g. uint8
    pixels * 1/255, TF's convert_image_dtype); that is done after gathering the needed
    pixels, which gives identical numbers with 4x less memory traffic.
    Used by `preprocess_image` instead of torch so decoding threads never contend for torch's
    intra-op thread pool (which made preprocessing ~50x slower on a busy 2-core machine).
    """
    h_in, w_in, c = x.shape
    out_h, out_w = size
    mul = None if scale is None else np.float32(scale)

    def as_float(a: np.ndarray) -> np.ndarray:
        if mul is None:
            return a.astype(np.float32)
        return np.multiply(a, mul, dtype=np.float32)  # exact cast, then float32 multiply

    if (h_in, w_in) == (out_h, out_w):
        return as_float(x)
    ylo, yhi, y_lerp = _tf_axis(h_in, out_h, half_pixel)
    xlo, xhi, x_lerp = _tf_axis(w_in, out_w, half_pixel)
    # gather columns on (rows, W * C) with flat indices: much faster than fancy indexing
    chan = np.arange(c)
    col_lo = (xlo[:, None] * c + chan).ravel()
    col_hi = (xhi[:, None] * c + chan).ravel()
    x_lerp_flat = np.repeat(x_lerp, c)

    def horizontal(rows: np.ndarray) -> np.ndarray:
        flat = rows.reshape(rows.shape[0], w_in * c)
        left = as_float(np.take(flat, col_lo, axis=1))
        out = as_float(np.take(flat, col_hi, axis=1))
        out -= left
        out *= x_lerp_flat
        out += left
        return out

    top = horizontal(np.take(x, ylo, axis=0))
    out = horizontal(np.take(x, yhi, axis=0))
    out -= top
    out *= y_lerp[:, None]
    out += top
    return out.reshape(out_h, out_w, c)


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
        rh, rw = _shorter_side_size(img.height, img.width, p.shorter_side)
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


def to_uint8_nhwc(
    x: torch.Tensor | np.ndarray, scale: float = 1.0 / 127.0, zero_point: int = 128
) -> np.ndarray:
    """Quantize model-input floats (N, C, H, W) or (C, H, W) to uint8 NHWC for a .tflite file.

    `q = clip(round_half_away_from_zero(x / scale) + zero_point, 0, 255)`, i.e. TFLite's own
    QUANTIZE of the float input; pass the file's input (scale, zero_point). For slim [-1, 1]
    input with the official (1/127, 128): pixel p -> round((p / 127.5 - 1) * 127) + 128.
    """
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) or (C, H, W), got shape {a.shape}")
    v = a.astype(np.float32) / np.float32(scale)
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    return np.ascontiguousarray(np.clip(q, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1))
