"""Decoding image files to 8-bit RGB, the same pixels for every engine, with one clear error
(`ImageError`, naming the file) for anything that is not a readable image."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS = 89_478_485  # Pillow's own warning threshold (a 0.25 GiB RGBA image)


class ImageError(ValueError):
    """A file that cannot be decoded as an image (missing, empty, truncated, not an image)."""


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
    hint = "check or re-download the file, or pass --skip-bad (skip_bad=True in Python) to skip it"
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
        raise ImageError(f"{path}: {e}; raise the limit with --max-pixels / max_pixels") from e
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, struct.error, zlib.error,
            IndexError, KeyError, TypeError) as e:  # fmt: skip
        raise ImageError(f"{path}: cannot decode image ({type(e).__name__}: {e}); {hint}") from e
