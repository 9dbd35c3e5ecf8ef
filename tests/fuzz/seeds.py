"""Valid files each reader loads, to mutate: a TF-written checkpoint (committed, see
make_checkpoint_seed.py), a release-like .tgz around it, the official uint8 .tflite from
../shared, and a .safetensors, .pt2 and images made here."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from shared_data import shared_dir

from mobilenetv3 import create_model
from mobilenetv3.data.preprocess import SLIM_EVAL
from mobilenetv3.weights.safetensors_io import save_safetensors

from .mutate import Files

CHECKPOINT = Path(__file__).parent / "seeds" / "tiny.ckpt"
DATA_SUFFIX = ".data-00000-of-00001"
TFLITE = "pretrained/v3-small_224_1.0_uint8.tflite"


def _checkpoint() -> Files:
    return {s: Path(f"{CHECKPOINT}{s}").read_bytes() for s in (".index", DATA_SUFFIX)}


def _tgz() -> Files:
    """Laid out as the official release archives: <name>/ema/model.ckpt-N.* (+ pristine/)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for folder in ("ema", "pristine"):
            for suffix, data in _checkpoint().items():
                info = tarfile.TarInfo(f"tiny_224_1.0_float/{folder}/model.ckpt-100{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return {".tgz": out.getvalue()}


def _safetensors(folder: Path) -> Files:
    torch.manual_seed(0)  # the same seed file, so the same trials, on every run
    model = create_model("v3_small_0.35", num_classes=10)
    extra = {"preprocess": SLIM_EVAL.to_dict(), "labels": [f"c{i}" for i in range(10)]}
    path = save_safetensors(model, folder / "seed.safetensors", extra)
    return {".safetensors": path.read_bytes()}


def _pt2(folder: Path) -> Files:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    program = torch.export.export(model, (torch.zeros(1, 3, 8, 8),))
    note = json.dumps({"variant": "tiny_int8", "num_classes": 4})
    torch.export.save(program, str(folder / "seed.pt2"), extra_files={"mobilenetv3": note})
    return {".pt2": (folder / "seed.pt2").read_bytes()}


def _images() -> list[Files]:
    y, x = np.mgrid[0:30, 0:40]
    rgb = np.stack([x * 6, y * 8, (x + y) * 3], axis=-1).astype(np.uint8)
    files = []
    for suffix, fmt, mode in ((".png", "PNG", "RGB"), (".jpg", "JPEG", "RGB"),
                              (".png", "PNG", "RGBA")):  # fmt: skip
        out = io.BytesIO()
        Image.fromarray(rgb).convert(mode).save(out, fmt)
        files.append({suffix: out.getvalue()})
    return files


def build(folder: Path) -> dict[str, list[Files]]:
    """Seed files by format; .tflite only where ../shared is present."""
    folder.mkdir(parents=True, exist_ok=True)
    seeds = {"tgz": [_tgz()], "checkpoint": [_checkpoint()],
             "safetensors": [_safetensors(folder)], "pt2": [_pt2(folder)], "image": _images()}
    shared = shared_dir()
    if shared is not None and (shared / TFLITE).is_file():
        seeds["tflite"] = [{".tflite": (shared / TFLITE).read_bytes()}]
    return seeds
