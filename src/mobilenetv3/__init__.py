"""MobileNetV3 (and V2, EdgeTPU) in PyTorch with TF-slim numerics."""

from mobilenetv3.core.complexity import count_macs, count_params
from mobilenetv3.factory import create_model, list_models, load_int8

__all__ = ["count_macs", "count_params", "create_model", "list_models", "load_int8"]
__version__ = "0.1.0"
