"""torch.export archive (.pt2): the eager model traced to an ExportedProgram, for AOT
compilation or loading without this package (`torch.export.load(path).module()`)."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import torch
from torch import nn

from mobilenetv3.atomic import atomic_output
from mobilenetv3.export.check import ExportResult, example_input, max_abs_diff, reference_output


def export_pt2(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    image_size: tuple[int, int] = (224, 224),
    dynamic_batch: bool = False,
    softmax: bool = False,
    check: bool = True,
) -> ExportResult:
    """Write `torch.export.export(model)` with `torch.export.save`, then reload and compare."""
    image_size = tuple(image_size)
    module = nn.Sequential(model, nn.Softmax(-1)) if softmax else model
    # A batch of 2 as the example: torch.export specializes a dimension of size 1.
    x = example_input(image_size, 2 if dynamic_batch else 1)
    dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}} if dynamic_batch else None
    with torch.no_grad():
        program = torch.export.export(module.eval(), (x,), dynamic_shapes=_named(module, dynamic))
    with atomic_output(path) as tmp:
        torch.export.save(program, tmp)
        batch = 3 if dynamic_batch else 1
        diff = check_pt2(tmp, model, image_size, softmax, batch) if check else None
    return ExportResult(Path(path), "pt2", diff)


def _named(module: nn.Module, dynamic: dict | None) -> dict | None:
    """dynamic_shapes keyed by the forward's own argument name (`x`, or `input` for a
    Sequential)."""
    if dynamic is None:
        return None
    name = next(iter(inspect.signature(module.forward).parameters))
    return {name: dynamic["x"]}


def check_pt2(path: str | os.PathLike, model: nn.Module, image_size: tuple[int, int],
              softmax: bool, batch: int = 1) -> float:  # fmt: skip
    """Max abs difference between the reloaded program and the eager model."""
    x = example_input(image_size, batch, seed=1)
    loaded = torch.export.load(str(path)).module()
    with torch.no_grad():
        out = loaded(x)
    return max_abs_diff(out.numpy(), reference_output(model, x, softmax))
