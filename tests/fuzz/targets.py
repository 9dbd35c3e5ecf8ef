"""What a trial does with its file, per format, and how its outcome is classified. Imported
by the worker process only (it imports torch and the package)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch

from mobilenetv3 import create_model
from mobilenetv3.data.preprocess import ImageError, load_image, preprocess_image
from mobilenetv3.quantize.files import read_metadata
from mobilenetv3.runtime.program_file import load_program
from mobilenetv3.weights.loading import read_slim_state

OUTCOMES = ("loaded", "clear", "unclear", "crash", "hang", "memory")
BAD = ("unclear", "crash", "hang", "memory")


def _pt2(path: str) -> None:
    read_metadata(path)
    load_program(path)(torch.zeros(1, 3, 8, 8))


def _image(path: str) -> None:
    preprocess_image(load_image(path))


def _selftest(path: str) -> None:
    """Each outcome on demand (the file names it), to show the harness tells them apart."""
    what = open(path, "rb").read().strip()  # noqa: SIM115
    if what == b"crash":
        os.abort()
    if what == b"hang":
        time.sleep(3600)
    if what == b"memory":
        bytearray(64 << 30)
    if what == b"unclear":
        raise KeyError("scale")
    if what == b"clear":
        raise ImageError(f"{path}: not an image")


LOADERS: dict[str, Callable[[str], object]] = {
    "tgz": read_slim_state,
    "checkpoint": read_slim_state,
    "tflite": read_slim_state,
    "safetensors": lambda path: create_model(weights=path),
    "pt2": _pt2,
    "image": _image,
    "selftest": _selftest,
}


def classify(exc: BaseException, path: str) -> str:
    """`clear`: one of the package's error types (ValueError/OSError subclasses defined in
    mobilenetv3) whose message names the file; `memory`: an allocation refused; else unclear."""
    text = str(exc)
    if isinstance(exc, MemoryError) or "can't allocate memory" in text:
        return "memory"
    ours = type(exc).__module__.startswith("mobilenetv3")
    if ours and isinstance(exc, ValueError | OSError) and os.path.basename(path) in text:
        return "clear"
    return "unclear"
