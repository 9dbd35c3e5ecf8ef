"""MobileNetV3 (and V2, EdgeTPU) in PyTorch with TF-slim numerics."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["count_macs", "count_params", "create_model", "list_models", "load_int8",
           "preprocessing"]
__version__ = "0.1.0"

# Imported on first use, so `mobilenetv3 --help` and the CLI's argument parsing need no torch.
_LAZY = {
    "count_macs": "mobilenetv3.core.complexity",
    "count_params": "mobilenetv3.core.complexity",
    "create_model": "mobilenetv3.factory",
    "list_models": "mobilenetv3.factory",
    "load_int8": "mobilenetv3.factory",
    "preprocessing": "mobilenetv3.data.transform",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'mobilenetv3' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
