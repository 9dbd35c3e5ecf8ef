"""ONNX export: native HardSwish/HardSigmoid, TF "SAME" padding as static Pad ops, BN folded.

The model is first rewritten into its deployment graph (`core.deploy`), whose every shape
decision is made in Python at the known image size (the slim padding and `reduce_to_1x1` read
`x.shape`, which a tracer would otherwise record as Shape/Gather/Slice chains), and whose
squeeze-excite gate is one native HardSigmoid and a Mul (max abs logit difference ~1e-6). The
TorchScript exporter (`dynamo=False`) then gives a graph of only Pad, Conv, Relu/Clip,
HardSwish, HardSigmoid, ReduceMean, GlobalAveragePool, Mul, Add and Gemm in ~1 s; the dynamo
exporter gives a similarly clean graph from the unmodified model but takes ~15 s per variant
and cannot emit the gate's custom HardSigmoid constants without a translation table.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from mobilenetv3.atomic import atomic_output
from mobilenetv3.core.deploy import deploy_graph
from mobilenetv3.export.check import ExportResult, engine_difference, example_input

OPSET = 17


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    image_size: tuple[int, int] = (224, 224),
    dynamic_batch: bool = False,
    softmax: bool = False,
    opset: int = OPSET,
    check: bool = True,
) -> ExportResult:
    """Write `model` as ONNX (input `input` NCHW float in [-1, 1], output `logits` or
    `probabilities`), then run it in ONNX Runtime against PyTorch."""
    if opset < 14:
        raise ValueError(f"opset {opset} lacks native HardSwish; use 14 or newer")
    image_size = tuple(image_size)
    graph = deploy_graph(model, image_size, softmax)
    output = "probabilities" if softmax else "logits"
    axes = {"input": {0: "batch"}, output: {0: "batch"}} if dynamic_batch else None
    with atomic_output(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(graph, (example_input(image_size),), str(tmp), input_names=["input"],
                          output_names=[output], dynamic_axes=axes, opset_version=opset,
                          dynamo=False, do_constant_folding=True)  # fmt: skip
        batch = 2 if dynamic_batch else 1
        diff = (engine_difference("onnxruntime", tmp, model, image_size, softmax, batch)
                if check else None)  # fmt: skip
    return ExportResult(Path(path), "onnx", diff)
