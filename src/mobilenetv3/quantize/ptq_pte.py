"""int8 ExecuTorch program (.pte) through PT2E and the XNNPACK quantizer (extra `[executorch]`).

The graph is the one the float .pte exports (`export.pte.pte_graph`: the deployment graph with
the pool XNNPACK delegates), traced with a free batch, annotated by ExecuTorch's
`XNNPACKQuantizer` with its symmetric config (int8 per-channel symmetric weights, int8
per-tensor activations ranged by a histogram observer: the method `histogram`), calibrated on
the photos, converted (`convert_pt2e`: Q/DQ pairs around the ops) and lowered to XNNPACK, which
fuses each pair into an int8 kernel. Ops the quantizer does not annotate (the SE gate's clamp
and scale) run in float between a dequantize and a quantize.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobilenetv3.export.check import max_abs_diff
from mobilenetv3.export.pte import MAX_BATCH, pte_graph, trace, write_pte
from mobilenetv3.runtime.engines import make_runner, require_extra

BATCH = 16


MIN_AGREEMENT = 0.9  # correlation of ExecuTorch's int8 output with the converted graph's


def quantize_pte(model: nn.Module, output: str | os.PathLike, images: np.ndarray) -> Path:
    """`quantize --format pte`: the XNNPACK int8 program of `model`, calibrated on `images`,
    run in ExecuTorch after writing (its top class must match the calibrated graph's)."""
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
    converted = convert_pt2e(prepared)
    probe = np.ascontiguousarray(images[:2])
    batch = {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}
    example = (torch.from_numpy(probe),)
    with torch.no_grad():
        program = torch.export.export(converted, example, dynamic_shapes=(batch,))
        expected = converted(torch.from_numpy(probe)).numpy()

    def verify(path: Path) -> float:
        """XNNPACK's int8 kernels round differently from the Q/DQ graph they run, so a near
        tie may flip a top class; a broken scale or zero point scrambles the whole output."""
        out = make_runner("executorch", path, threads=1)(probe)
        agreement = float(np.corrcoef(out.ravel(), expected.ravel())[0, 1])
        if not agreement > MIN_AGREEMENT:
            raise RuntimeError(f"{output}: ExecuTorch's int8 run does not follow the converted "
                               f"graph on the calibration images (correlation "
                               f"{agreement:.3f} <= {MIN_AGREEMENT})")  # fmt: skip
        return max_abs_diff(out, expected)

    write_pte(program, output, verify)
    return Path(output)
