"""MobileNetV3 in PyTorch with TF-slim numerics."""
