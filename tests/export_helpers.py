"""What the export tests share: every variant exported once per module, at a test size."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import mobilenetv3
from mobilenetv3.export import randomize

VARIANTS = mobilenetv3.list_models()[:12]
FULL_SIZE = {"v3_large_1.0", "v3_small_1.0"}  # 224 for these, 64 for the rest (speed)


def export_size(name: str) -> tuple[int, int]:
    return (224, 224) if name in FULL_SIZE else (64, 64)



def export_every_variant(folder: Path, suffix: str, export: Callable, **options: Any) -> dict:
    """name -> (model with random non-trivial weights, exported path, export result)."""
    out = {}
    for i, name in enumerate(VARIANTS):
        model = randomize(mobilenetv3.create_model(name), seed=i)
        path = folder / f"{name}{suffix}"
        out[name] = (model, path, export(model, path, image_size=export_size(name), **options))
    return out
