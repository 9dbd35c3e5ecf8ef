"""PyTorch int8 post-training quantization -> a torch.export program (.pt2).

PT2E (`prepare_pt2e` / `convert_pt2e` with `X86InductorQuantizer`) moved out of torch into
torchao in torch 2.10+, and torchao is not installed here; the in-tree route to the same
result is FX graph mode quantization with the x86 qconfig mapping (int8 per-channel
symmetric weights, uint8 per-tensor activations with histogram observers), converted to the
*decomposed* reference graph (`quantized_decomposed.quantize_per_tensor` / `dequantize_*`
around float ops: the representation PT2E produces) and exported with `torch.export`, so the
.pt2 loads with `torch.export.load(path).module()` and inductor (`torch.compile`) can lower
the Q/DQ patterns to int8 kernels.

The traced graph is the deployment graph (BatchNorm folded, static padding, native
hard-swish) with FX-traceable padding and SE gate (`_Traceable`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BATCH = 16


class _Pad(nn.Module):
    def __init__(self, pad: tuple[int, ...]) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pad)


class _Gate(nn.Module):
    """Slim's SE gate relu6(x + 3) * 0.16667 as a clamp (the ONNX export's HardSigmoid)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from ..export.onnx import GATE_ALPHA, GATE_BETA

        return F.hardtanh(x * GATE_ALPHA + GATE_BETA, 0.0, 1.0)


class _Traceable(nn.Module):
    """features -> head -> global mean (keepdim: quantized mean needs rank 4) -> classifier."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.features, self.head, self.classifier = graph.features, graph.head, graph.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.head(self.features(x)).mean((2, 3), keepdim=True)
        return self.classifier(torch.flatten(pooled, 1))


def traceable_graph(model: nn.Module, image_size: tuple[int, int]) -> nn.Module:
    """The deployment graph with every autograd.Function replaced by traceable modules."""
    from ..export.onnx import SlimGate, StaticConv, export_graph

    graph = export_graph(model, image_size)
    for parent in list(graph.modules()):
        for name, child in parent.named_children():
            if isinstance(child, StaticConv):
                pad = [_Pad(child.pad)] if child.pad else []
                setattr(parent, name, nn.Sequential(*pad, child.conv, child.act))
            elif isinstance(child, SlimGate):
                setattr(parent, name, _Gate())
    return _Traceable(graph).eval()


def calibrate(prepared: nn.Module, images: np.ndarray) -> None:
    with torch.no_grad():
        for start in range(0, len(images), BATCH):
            prepared(torch.from_numpy(np.ascontiguousarray(images[start : start + BATCH])))


def quantize_graph_module(model: nn.Module, images: np.ndarray) -> nn.Module:
    """The int8 Q/DQ (decomposed reference) graph module of `model`, calibrated on `images`."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import _convert_to_reference_decomposed_fx, prepare_fx

    graph = traceable_graph(model, tuple(images.shape[-2:]))
    example = (torch.from_numpy(np.ascontiguousarray(images[:2])),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FX quantization's migration notice
        prepared = prepare_fx(graph, get_default_qconfig_mapping("x86"), example)
        calibrate(prepared, images)
        return _convert_to_reference_decomposed_fx(prepared)


def save_program(module: nn.Module, output: str | os.PathLike, example: torch.Tensor,
                 note: dict) -> Path:  # fmt: skip
    """Export with a free batch dimension; save with the JSON note `files.load_int8` reads."""
    from ..export import atomic_output
    from .files import METADATA_KEY

    batch = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}}
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes=batch)
    with atomic_output(output) as tmp:
        torch.export.save(program, tmp, extra_files={METADATA_KEY: json.dumps(note)})
    return Path(output)


def quantize_pt2(model: nn.Module, output: str | os.PathLike, images: np.ndarray) -> Path:
    """`quantize --format pt2`: the int8 program of `model`, calibrated on `images`."""
    from .files import metadata

    converted = quantize_graph_module(model, images)
    note = metadata(model, method="histogram (FX x86 qconfig)", calibration_images=len(images))
    example = torch.from_numpy(np.ascontiguousarray(images[:2]))
    return save_program(converted, output, example, note)
