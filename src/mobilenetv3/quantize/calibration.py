"""Calibration images: listed, checked, split from the evaluation images, preprocessed once.

Post-training quantization fixes every activation's range from real photos, so the photos it
sees must not be the ones the accuracy is then measured on. `split_samples` makes the split
used throughout this package: the samples whose (slim, 1001-class) label is odd calibrate,
the even ones evaluate (500 + 500 on the 1000 ImageNet sample photos, one per class).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mobilenetv3.data.datasets import IMAGE_SUFFIXES
from mobilenetv3.data.preprocess import (
    SLIM_EVAL,
    ImageError,
    Preprocess,
    load_image,
    preprocess_image,
)

MIN_IMAGES = 16  # fewer cannot give stable percentiles; a typo'd folder usually has 0-2
SUBSETS = ("all", "odd", "even")


class CalibrationError(ValueError):
    """Calibration data that cannot be used: says what is wrong and what to give instead."""


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under `folder` (recursively, sorted): calibration needs no labels."""
    root = Path(folder)
    if not root.is_dir():
        raise CalibrationError(f"calibration folder {root} does not exist or is not a folder")
    found = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = [f for f in sorted(files) if not f.startswith(".")]
        found += [Path(dirpath) / f for f in names if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return found


def split_samples(
    samples: Sequence[tuple[Path, int]], subset: str
) -> list[tuple[Path, int]]:
    """The calibration ("odd" labels) or evaluation ("even") half, or "all" of them."""
    if subset not in SUBSETS:
        raise CalibrationError(f"unknown subset {subset!r}: expected one of {', '.join(SUBSETS)}")
    if subset == "all":
        return list(samples)
    parity = 1 if subset == "odd" else 0
    return [(p, label) for p, label in samples if label % 2 == parity]


def calibration_paths(
    folder: str | os.PathLike, num_images: int | None = None, subset: str = "all"
) -> list[Path]:
    """Up to `num_images` calibration photos from `folder`, evenly spread over its listing;
    `subset` odd/even keeps one half of a labelled folder (see `split_samples`)."""
    if subset == "all":
        paths = list_images(folder)
    else:
        from mobilenetv3.data.datasets import list_samples

        paths = [p for p, _ in split_samples(list_samples(folder), subset)]
    if not paths:
        raise CalibrationError(f"calibration folder {folder} has no images "
                               f"({', '.join(sorted(IMAGE_SUFFIXES))})")  # fmt: skip
    if num_images is not None and num_images < len(paths):
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, num_images).round().astype(int)]
    if len(paths) < MIN_IMAGES:
        raise CalibrationError(f"only {len(paths)} calibration image(s) in {folder}; give at "
                               f"least {MIN_IMAGES} (a few hundred is better)")  # fmt: skip
    return paths


def load_batch(paths: Sequence[Path], preprocess: Preprocess = SLIM_EVAL,
               progress: bool = False, max_pixels: int | None = None) -> np.ndarray:  # fmt: skip
    """NCHW float32 model input for `paths`; unreadable files are skipped, not fatal."""
    from tqdm import tqdm

    arrays = []
    for path in tqdm(paths, desc="calibration photos", unit="img", disable=not progress):
        try:
            arrays.append(preprocess_image(load_image(path, max_pixels), preprocess).numpy())
        except (ImageError, OSError):
            continue
    if len(arrays) < MIN_IMAGES:
        raise CalibrationError(f"only {len(arrays)} of {len(paths)} calibration images could "
                               f"be read; need at least {MIN_IMAGES}")  # fmt: skip
    return np.stack(arrays).astype(np.float32)
