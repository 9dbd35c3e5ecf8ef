"""Quantization-aware fine-tuning: fake-quantized training graph -> int8 .pt2.

The same traceable deployment graph as `ptq_torch` (BatchNorm folded into the convs, which
are made trainable again) is prepared with the x86 QAT qconfig mapping (fake-quant modules
with learnable-free moving-average observers on activations, per-channel weight fake-quant),
trained like any module, then converted to the decomposed Q/DQ graph and saved as .pt2.

    prepared = prepare_qat(model, images[:2])    # an nn.Module: train it (SGD, a few epochs)
    save_qat(prepared, "model_int8.pt2", images[:2], model)

Not wired into `mobilenetv3 train` yet (its loop, EMA and checkpoints expect a `MobileNet`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn


def prepare_qat(model: nn.Module, example: np.ndarray) -> nn.Module:
    """A fake-quantized, trainable copy of `model`'s deployment graph (train mode)."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    from .ptq_torch import traceable_graph

    graph = traceable_graph(model, tuple(example.shape[-2:]))
    for parameter in graph.parameters():
        parameter.requires_grad_(True)  # the export graph freezes its folded weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FX quantization's migration notice
        prepared = prepare_qat_fx(graph.train(), get_default_qat_qconfig_mapping("x86"),
                                  (torch.from_numpy(np.ascontiguousarray(example)),))  # fmt: skip
    return prepared.train()


def save_qat(prepared: nn.Module, output: str | os.PathLike, example: np.ndarray,
             model: nn.Module) -> Path:  # fmt: skip
    """Convert a QAT-trained graph to int8 Q/DQ and save it as .pt2 (with the int8 note)."""
    from torch.ao.quantization.quantize_fx import _convert_to_reference_decomposed_fx

    from .files import metadata
    from .ptq_torch import save_program

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = _convert_to_reference_decomposed_fx(prepared.eval())
    note = metadata(model, method="quantization-aware training (FX x86 QAT)")
    return save_program(converted, output, torch.from_numpy(np.ascontiguousarray(example)), note)
