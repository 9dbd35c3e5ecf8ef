"""TF's crop geometry and bilinear resize, to the last bit.

`central_crop_box` is `tf.image.central_crop`'s arithmetic, `center_crop_box` and
`shorter_side_size` torchvision's rounding; `tf_resize_bilinear_hwc` is a numpy port of TF's
`ResizeBilinear` kernel (TF2 half-pixel centres, or TF1's legacy sampling), the one used for
evaluation; `resize_bilinear_tf` is the TF2 form on torch tensors (training augmentation).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


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


def shorter_side_size(height: int, width: int, shorter: int) -> tuple[int, int]:
    """(H, W) after resizing the shorter side to `shorter` (torchvision's truncation)."""
    if height <= width:
        return shorter, max(1, int(shorter * width / height))
    return max(1, int(shorter * height / width)), shorter


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
