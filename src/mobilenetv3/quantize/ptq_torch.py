"""PyTorch int8 post-training quantization -> a torch.export program (.pt2).

PT2E (`prepare_pt2e` / `convert_pt2e` with `X86InductorQuantizer`) moved out of torch into
torchao in torch 2.10+, and torchao is not installed here; the in-tree route to the same
result is FX graph mode quantization with the x86 qconfig mapping (int8 per-channel
symmetric weights, fixed [0, 1) qparams for hardsigmoid) with full-range uint8 per-tensor
activations calibrated by percentile (`qconfig_mapping`), converted to the *decomposed*
reference graph (`quantized_decomposed.quantize_per_tensor` / `dequantize_*` around float ops:
the representation PT2E produces, weights stored int8: `store_int8`) and exported with
`torch.export`, so the .pt2 loads with `torch.export.load(path).module()` and inductor
(`torch.compile`) can lower the Q/DQ patterns to int8 kernels.

The traced graph is the deployment graph (BatchNorm folded, static padding, native
hard-swish) with FX-traceable padding and SE gate (`core.deploy.KeepdimPool`).

Measured (96 odd-label sample photos for calibration, top-1 on the 500 even-label ones;
official uint8 weights): V3-Small 1.0 float 73.0, int8 77.6 (was 58.6 with x86's default
qconfig: the SE gate as mul/add/clamp -14 points, 7-bit reduce_range activations -4; with
HistogramObserver 76.4, min/max 73.0); Large-minimalistic 1.0 float 81.0, int8 83.4 (was
80.4). The weights were trained with quantized activations, so int8 beats float (as ONNX
Runtime's 76.4 and LiteRT's 77.8 on Small). Batch 1, 2 threads, Small: float eager 8.8 ms,
int8 eager 24.7 ms (Q/DQ around float ops; 29.6 ms with float weights), int8 through
`torch_compile` 16.7 ms: int8 is for accuracy parity and deployment, not eager speed.
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
from torch.ao.quantization import QConfig, QConfigMapping, get_default_qconfig_mapping
from torch.ao.quantization.observer import HistogramObserver

from mobilenetv3.atomic import atomic_output
from mobilenetv3.core.deploy import KeepdimPool, SlimGate, StaticConv, deploy_graph

BATCH = 16
PERCENTILE = 99.999


class _Pad(nn.Module):
    def __init__(self, pad: tuple[int, ...]) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pad)


class _Gate(nn.Module):
    """Slim's SE gate relu6(x + 3) * 0.16667 as `F.hardsigmoid` (/ 6: at most 2e-5 off, far
    below the 1/256 output step). The qconfig mappings give hardsigmoid fixed [0, 1) qparams;
    spelled as mul, add and clamp, each of the three got its own calibrated range and
    requantization, which cost V3-Small 14 points of top-1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardsigmoid(x)


class PercentileObserver(HistogramObserver):
    """uint8 range from the histogram's central `percentile` % (ONNX Runtime's percentile
    calibration). HistogramObserver's own L2 search clips the rare large activations that
    the QAT-trained weights rely on (the last map before the global pool) and is slow."""

    def __init__(self, percentile: float = PERCENTILE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.percentile = percentile

    def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
        cdf = torch.cumsum(self.histogram, 0) / self.histogram.sum()
        cut = torch.tensor((100.0 - self.percentile) / 200.0)
        low, high = torch.searchsorted(cdf, cut), torch.searchsorted(cdf, 1.0 - cut)
        width = (self.max_val - self.min_val) / self.bins
        return self.min_val + low * width, self.min_val + (high + 1) * width


def qconfig_mapping(percentile: float = PERCENTILE) -> QConfigMapping:
    """The x86 mapping (per-channel int8 weights, fixed qparams for hardsigmoid) with
    full-range uint8 percentile activations: x86's reduce_range (7-bit activations, for old
    fbgemm kernels) is not needed by the reference Q/DQ graph and cost 4 points."""
    mapping = get_default_qconfig_mapping("x86")
    activation = PercentileObserver.with_args(percentile=percentile, reduce_range=False)
    return mapping.set_global(QConfig(activation, mapping.global_qconfig.weight))


def traceable_graph(model: nn.Module, image_size: tuple[int, int]) -> nn.Module:
    """The deployment graph with every autograd.Function replaced by traceable modules."""
    graph = deploy_graph(model, image_size)
    for parent in list(graph.modules()):
        for name, child in parent.named_children():
            if isinstance(child, StaticConv):
                pad = [_Pad(child.pad)] if child.pad else []
                setattr(parent, name, nn.Sequential(*pad, child.conv, child.act))
            elif isinstance(child, SlimGate):
                setattr(parent, name, _Gate())
    return KeepdimPool(graph).eval()


def calibrate(prepared: nn.Module, images: np.ndarray) -> None:
    with torch.no_grad():
        for start in range(0, len(images), BATCH):
            prepared(torch.from_numpy(np.ascontiguousarray(images[start : start + BATCH])))


class _StoredInt8:
    """Mixin for a reference conv / linear whose `weight` is already int8 (see `store_int8`)."""

    def get_weight(self) -> torch.Tensor:
        from torch.ao.nn.quantized.reference.modules.utils import _dequantize_weight_decomposed

        return _dequantize_weight_decomposed(
            self.weight, self.weight_qscheme, self.weight_dtype, self.weight_scale,
            self.weight_zero_point, self.weight_axis_int, self.weight_quant_min,
            self.weight_quant_max)  # fmt: skip


def store_int8(module: nn.Module) -> nn.Module:
    """Keep each reference conv / linear weight as int8 with one dequantize per run (what
    PT2E's convert folds to). The reference modules keep it float and quantize + dequantize
    it on every forward: half of the eager run time, and a .pt2 four times larger."""
    from torch.ao.nn.quantized.reference.modules.utils import (
        ReferenceQuantizedModule,
        _quantize_weight_decomposed,
    )

    for ref in module.modules():
        if isinstance(ref, ReferenceQuantizedModule) and ref.is_decomposed:
            weight = _quantize_weight_decomposed(
                ref.weight.detach(), ref.weight_qscheme, ref.weight_dtype, ref.weight_scale,
                ref.weight_zero_point, ref.weight_axis_int, ref.weight_quant_min,
                ref.weight_quant_max)  # fmt: skip
            del ref.weight
            ref.register_buffer("weight", weight)
            ref.__class__ = type(f"Int8{type(ref).__name__}", (_StoredInt8, type(ref)), {})
    return module


def quantize_graph_module(model: nn.Module, images: np.ndarray,
                          percentile: float = PERCENTILE) -> nn.Module:  # fmt: skip
    """The int8 Q/DQ (decomposed reference) graph module of `model`, calibrated on `images`."""
    from torch.ao.quantization.quantize_fx import _convert_to_reference_decomposed_fx, prepare_fx

    graph = traceable_graph(model, tuple(images.shape[-2:]))
    example = (torch.from_numpy(np.ascontiguousarray(images[:2])),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FX quantization's migration notice
        prepared = prepare_fx(graph, qconfig_mapping(percentile), example)
        calibrate(prepared, images)
        return store_int8(_convert_to_reference_decomposed_fx(prepared))


def save_program(module: nn.Module, output: str | os.PathLike, example: torch.Tensor,
                 note: dict) -> Path:  # fmt: skip
    """Export with a free batch dimension; save with the JSON note `files.int8_model_info` reads."""
    from mobilenetv3.quantize.files import METADATA_KEY

    batch = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}}
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes=batch)
    with atomic_output(output) as tmp:
        torch.export.save(program, tmp, extra_files={METADATA_KEY: json.dumps(note)})
    return Path(output)


def quantize_pt2(model: nn.Module, output: str | os.PathLike, images: np.ndarray,
                 percentile: float = PERCENTILE) -> Path:  # fmt: skip
    """`quantize --format pt2`: the int8 program of `model`, calibrated on `images`."""
    from mobilenetv3.quantize.files import metadata

    converted = quantize_graph_module(model, images, percentile)
    note = metadata(model, method="percentile", percentile=percentile,
                    calibration_images=len(images))  # fmt: skip
    example = torch.from_numpy(np.ascontiguousarray(images[:2]))
    return save_program(converted, output, example, note)
