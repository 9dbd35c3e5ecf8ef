"""`mobilenetv3.preprocessing(model_or_weights)`: from a photo to the model's input in one call,
with the preprocessing the weights were evaluated with (stored in a .safetensors, else slim's
evaluation recipe: what every official checkpoint, .tgz and .tflite expects)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mobilenetv3.data.preprocess import SLIM_EVAL, Preprocess, load_image, preprocess_image

ImageLike = str | os.PathLike | Image.Image | np.ndarray


class Transform:
    """Call with an image (path, PIL image or HxWx3 uint8 array) or a list of them; get an
    NCHW float32 batch ([1, 3, H, W] for one image)."""

    def __init__(self, preprocess: Preprocess) -> None:
        self.preprocess = preprocess

    def __call__(self, images: ImageLike | Sequence[ImageLike]) -> torch.Tensor:
        many = images if isinstance(images, list | tuple) else [images]
        return torch.stack([preprocess_image(_as_pil(image), self.preprocess) for image in many])

    def __repr__(self) -> str:
        return f"Transform({self.preprocess!r})"


def preprocessing(source: Any) -> Transform:
    """The transform for a model (its `pretrained_cfg`), a weights file, an official release
    name or a `Preprocess`."""
    return Transform(preprocess_of(source))


def preprocess_of(source: Any) -> Preprocess:
    if isinstance(source, Preprocess):
        return source
    if isinstance(source, torch.nn.Module):
        cfg = getattr(source, "pretrained_cfg", None)
        return Preprocess.from_dict(cfg["preprocess"]) if cfg else SLIM_EVAL
    path = Path(source)
    if path.suffix.lower() != ".safetensors":
        return SLIM_EVAL  # TF checkpoints, release tarballs and .tflite files: slim's recipe
    from mobilenetv3.weights.safetensors_io import safetensors_metadata

    stored = safetensors_metadata(path).get("preprocess")
    return Preprocess.from_dict(stored) if stored else SLIM_EVAL


def _as_pil(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"an image array must be HxWx3 uint8 RGB, got {image.dtype} "
                             f"{image.shape}")  # fmt: skip
        return Image.fromarray(image)
    return load_image(image)
