"""What every exporter shares: its result, and the check of a written file in its engine
against PyTorch (a reproducible input, PyTorch's output, the max abs difference).

PyTorch's side of the check runs on the CPU unless a command asks for another device with
`reference_device` (its `--device`); the file's engine always runs on the CPU."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobilenetv3.heads import LRASPP, SSDLite


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how far its engine's outputs are from PyTorch's."""

    path: Path
    format: str
    max_abs_diff: float | None  # None when the check was skipped
    differences: dict[str, float] | None = None  # per output, where a file has several

    def __str__(self) -> str:
        diff = "unchecked" if self.max_abs_diff is None else f"max abs diff {self.max_abs_diff:.3g}"
        return f"{self.format} -> {self.path} ({diff} vs PyTorch)"


def example_input(image_size: tuple[int, int], batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A reproducible NCHW batch in [-1, 1], the model's input range."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, *image_size, generator=generator) * 2 - 1


def max_abs_diff(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"output shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b)))


_DEVICE: ContextVar[str] = ContextVar("reference_device", default="cpu")


@contextmanager
def reference_device(device: torch.device | str) -> Iterator[None]:
    """Run PyTorch's side of every check inside the block on `device` (the exporters are
    unchanged: they write from the CPU model)."""
    token = _DEVICE.set(str(device))
    try:
        yield
    finally:
        _DEVICE.reset(token)


def reference_output(model: nn.Module, x: torch.Tensor, softmax: bool) -> np.ndarray:
    """PyTorch's answer for the check after an export, on the `reference_device` (a copy of
    the model there; cuDNN without TF32, so a GPU answers in float32 as the CPU does)."""
    device = torch.device(_DEVICE.get())
    reference = model if device.type == "cpu" else copy.deepcopy(model).to(device)
    with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        out = reference.eval()(x.to(device))
    return (out.softmax(-1) if softmax else out).cpu().numpy()


def engine_difference(engine: str, path: str | os.PathLike, model: nn.Module,
                      image_size: tuple[int, int], softmax: bool,
                      batch: int = 1) -> float:  # fmt: skip
    """Max abs difference between `engine` running the file at `path` and PyTorch on the same
    reproducible batch: the check after every export to a file engine."""

    def first(got: Outputs, expected: Outputs) -> dict[str, float]:
        return {"output": max_abs_diff(next(iter(got.values())), expected["output"])}

    differences = engine_differences(
        engine, path, lambda x: {"output": reference_output(model, x, softmax)}, image_size,
        batch, compare=first,
    )
    return differences["output"]


Outputs = dict[str, np.ndarray]


def engine_differences(engine: str, path: str | os.PathLike,
                       reference: Callable[[torch.Tensor], Outputs], image_size: tuple[int, int],
                       batch: int = 1,
                       compare: Callable[[Outputs, Outputs], dict[str, float]] | None = None,
                       ) -> dict[str, float]:  # fmt: skip
    """`compare` (default `same_outputs`) of what `engine` gives running the file at `path`
    and what `reference` (PyTorch) gives, on the same reproducible batch."""
    from mobilenetv3.runtime.engines import make_runner

    x = example_input(image_size, batch, seed=1)
    got = make_runner(engine, path, threads=1).outputs(x.numpy())
    return (compare or same_outputs)(got, reference(x))


def same_outputs(got: Outputs, expected: Outputs) -> dict[str, float]:
    """Max abs difference per output of the reference; the file must have each by its name."""
    missing = sorted(set(expected) - set(got))
    if missing:
        raise ValueError(f"the file has no output {', '.join(missing)} (it has {sorted(got)})")
    return {name: max_abs_diff(got[name], value) for name, value in expected.items()}


def refuse_head(model: nn.Module, exporter: str) -> None:
    """One line for a detection or segmentation model given to a classifier's exporter."""
    if isinstance(model, SSDLite | LRASPP):
        raise ValueError(f"{exporter} writes classifiers; export a {type(model).__name__} "
                         "through mobilenetv3.export.export (it checks each of its outputs)")
