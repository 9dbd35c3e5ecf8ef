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
from mobilenetv3.export.check import (
    ExportResult,
    engine_difference,
    example_input,
    refuse_head,
)

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
    refuse_head(model, "export_onnx")
    image_size = tuple(image_size)
    output = "probabilities" if softmax else "logits"
    with atomic_output(path) as tmp:
        write_onnx(deploy_graph(model, image_size, softmax), tmp, image_size, [output],
                   dynamic_batch, opset)  # fmt: skip
        batch = 2 if dynamic_batch else 1
        diff = (engine_difference("onnxruntime", tmp, model, image_size, softmax, batch)
                if check else None)  # fmt: skip
    return ExportResult(Path(path), "onnx", diff)


def write_onnx(graph: nn.Module, path: Path, image_size: tuple[int, int], outputs: list[str],
               dynamic_batch: bool, opset: int = OPSET,
               unbatched: tuple[str, ...] = ()) -> None:  # fmt: skip
    """Trace `graph` (a deployment graph: shapes static) into an ONNX file with input `input`
    and these outputs, batch-first but the `unbatched` (constants); `dynamic_batch` leaves
    the batch dimension free."""
    if opset < 14:
        raise ValueError(f"opset {opset} lacks native HardSwish; use 14 or newer")
    batched = [name for name in ["input", *outputs] if name not in unbatched]
    axes = {name: {0: "batch"} for name in batched} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(graph, (example_input(image_size),), str(path), input_names=["input"],
                          output_names=outputs, dynamic_axes=axes, opset_version=opset,
                          dynamo=False, do_constant_folding=True)  # fmt: skip

