"""int8 ExecuTorch program (.pte) through PT2E and the XNNPACK quantizer (extra `[executorch]`).

The graph is the one the float .pte exports (`export.pte.pte_graph`: the deployment graph with
the pool XNNPACK delegates), traced with a free batch, annotated by ExecuTorch's
`XNNPACKQuantizer` with its symmetric config (int8 per-channel symmetric weights, int8
per-tensor activations ranged by a histogram observer: the method `histogram`), calibrated on
the photos, converted (`convert_pt2e`: Q/DQ pairs around the ops) and lowered to XNNPACK, which
fuses each pair into an int8 kernel. Ops the quantizer does not annotate (the SE gate's clamp
and scale) run in float between a dequantize and a quantize.

XNNPACK reproduces each Q/DQ pair to within a rounding tie (measured op by op: conv, depthwise
conv, add, linear and the SE gate exactly; the mean one step off on 1 value in 8), and a network
amplifies those ties as it amplifies quantization's own rounding. So the written file is
checked to depart from the converted graph less than that graph departs from float
(`departure`; a wrong scale or zero point scrambles the output and fails).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobilenetv3.export.check import max_abs_diff
from mobilenetv3.export.pte import MAX_BATCH, pte_graph, trace, write_pte
from mobilenetv3.quantize.files import metadata
from mobilenetv3.runtime.engines import make_runner, require_extra

BATCH = 16
PROBE = 8  # calibration images the written file is checked on


def calibrated_graph(model: nn.Module, images: np.ndarray) -> torch.fx.GraphModule:
    """The converted PT2E graph of `model` calibrated on `images`: in float torch, the Q/DQ
    pairs the .pte's XNNPACK int8 kernels run."""
    require_extra("executorch")
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    size = tuple(images.shape[-2:])
    config = get_symmetric_quantization_config(is_per_channel=True)
    quantizer = XNNPACKQuantizer().set_global(config)
    prepared = prepare_pt2e(trace(pte_graph(model, size), size, True).module(), quantizer)
    with torch.no_grad():
        for start in range(0, len(images), BATCH):
            prepared(torch.from_numpy(np.ascontiguousarray(images[start : start + BATCH])))
    return convert_pt2e(prepared)


def departure(a: np.ndarray, b: np.ndarray) -> float:
    """1 - the correlation of two outputs over all their values: 0 for the same logits."""
    return float(1 - np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def quantize_pte(model: nn.Module, output: str | os.PathLike, images: np.ndarray) -> Path:
    """`quantize --format pte`: the XNNPACK int8 program of `model`, calibrated on `images`,
    run in ExecuTorch after writing (see the module docstring for the check)."""
    converted = calibrated_graph(model, images)
    size = tuple(images.shape[-2:])
    probe = torch.from_numpy(np.ascontiguousarray(images[:PROBE]))
    batch = {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}
    with torch.no_grad():
        program = torch.export.export(converted, (probe[:2],), dynamic_shapes=(batch,))
        expected = converted(probe).numpy()
        loss = departure(expected, pte_graph(model, size)(probe).numpy())

    def verify(path: Path) -> float:
        out = make_runner("executorch", path, threads=1)(probe.numpy())
        drift = departure(out, expected)
        if not drift < loss:
            raise RuntimeError(f"{output}: ExecuTorch's int8 run departs from the converted graph "
                               f"more (1 - correlation {drift:.4f}) than that graph from float "
                               f"({loss:.4f}) on the calibration images")  # fmt: skip
        return max_abs_diff(out, expected)

    write_pte(program, output, verify, note=metadata(model, precision="int8", method="histogram"))
    return Path(output)
