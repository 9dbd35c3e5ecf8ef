"""Quantization-aware fine-tuning: fake-quantized training graph -> int8 .pt2.

The same traceable deployment graph as `ptq_torch` (BatchNorm folded into the convs, which
are made trainable again; the SE gate as hardsigmoid, whose output has fixed [0, 1) qparams)
is prepared with the x86 QAT mapping, its activations at the full uint8 range as in
`ptq_torch` (x86's 7-bit `reduce_range` is for old fbgemm kernels, not the Q/DQ graph);
moving-average min/max observers on activations, per-channel weight fake-quant. It trains
like any module (`mobilenetv3 train --qat`), then converts to the decomposed Q/DQ graph with
int8-stored weights and is saved as .pt2.

    prepared = prepare_qat(model, images[:2])    # an nn.Module: train it (SGD, a few epochs)
    save_qat(prepared, "model_int8.pt2", images[:2], model)
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
    from torch.ao.quantization import (
        FakeQuantize,
        MovingAverageMinMaxObserver,
        QConfig,
        get_default_qat_qconfig_mapping,
    )
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    from mobilenetv3.quantize import check_quantizable
    from mobilenetv3.quantize.ptq_torch import traceable_graph

    check_quantizable(model)
    graph = traceable_graph(model, tuple(example.shape[-2:]))
    for parameter in graph.parameters():
        parameter.requires_grad_(True)  # the export graph freezes its folded weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FX quantization's migration notice
        mapping = get_default_qat_qconfig_mapping("x86")
        activation = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0,
                                            quant_max=255, reduce_range=False)  # fmt: skip
        mapping.set_global(QConfig(activation, mapping.global_qconfig.weight))
        prepared = prepare_qat_fx(graph.train(), mapping,
                                  (torch.from_numpy(np.ascontiguousarray(example)),))  # fmt: skip
    return prepared.train()


def save_qat(prepared: nn.Module, output: str | os.PathLike, example: np.ndarray,
             model: nn.Module) -> Path:  # fmt: skip
    """Convert a QAT-trained graph to int8 Q/DQ and save it as .pt2 (with the int8 note)."""
    from torch.ao.quantization.quantize_fx import _convert_to_reference_decomposed_fx

    from mobilenetv3.quantize.files import metadata
    from mobilenetv3.quantize.ptq_torch import save_program, store_int8

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = store_int8(_convert_to_reference_decomposed_fx(prepared.eval()))
    note = metadata(model, method="quantization-aware training (FX x86 QAT)")
    return save_program(converted, output, torch.from_numpy(np.ascontiguousarray(example)), note)
