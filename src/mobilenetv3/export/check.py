"""What every exporter shares: its result, and the check of a written file against PyTorch
(a reproducible input, PyTorch's output, the max abs difference); `randomize` gives a model
weights non-trivial enough for such a check to fail when the graph is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how far its engine's outputs are from PyTorch's."""

    path: Path
    format: str
    max_abs_diff: float | None  # None when the check was skipped

    def __str__(self) -> str:
        diff = "unchecked" if self.max_abs_diff is None else f"max abs diff {self.max_abs_diff:.3g}"
        return f"{self.format} -> {self.path} ({diff} vs PyTorch)"


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine terms and a wider classifier, in place: a
    freshly built model has identity BatchNorm and ~0 logits, which would make an export
    check pass whatever the folding or the graph got wrong."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, low: float, high: float) -> None:
        t.data.copy_(torch.rand(t.shape, generator=generator) * (high - low) + low)

    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            uniform(m.running_mean, -0.5, 0.5)
            uniform(m.running_var, 0.5, 2.0)
            uniform(m.weight, 0.5, 1.5)
            uniform(m.bias, -0.5, 0.5)
        elif isinstance(m, nn.Linear | nn.Conv2d) and m.bias is not None:
            uniform(m.bias, -0.2, 0.2)
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Linear):
        classifier.weight.data.normal_(0.0, 0.3, generator=generator)
    return model.eval()


def example_input(image_size: tuple[int, int], batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A reproducible NCHW batch in [-1, 1], the model's input range."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, *image_size, generator=generator) * 2 - 1


def max_abs_diff(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"output shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b)))


def reference_output(model: nn.Module, x: torch.Tensor, softmax: bool) -> np.ndarray:
    """PyTorch's answer for the check after an export."""
    with torch.inference_mode():
        out = model.eval()(x)
    return (out.softmax(-1) if softmax else out).numpy()
