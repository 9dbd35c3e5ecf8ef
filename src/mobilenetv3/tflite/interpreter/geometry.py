"""Where a TFLite kernel's windows fall: strides, dilations and TF "SAME" padding from an
operator's options, shared by the float and the int8 kernels (convolutions and pools).

The SAME arithmetic itself is `core.layers.same_padding` (the model's own padding); a dilated
kernel pads like an undilated one of its effective size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mobilenetv3.core.layers import same_padding

Pair = tuple[int, int]


def strides(options: dict[str, Any]) -> Pair:
    return options.get("stride_h", 1), options.get("stride_w", 1)


def dilations(options: dict[str, Any]) -> Pair:
    return options.get("dilation_h_factor", 1), options.get("dilation_w_factor", 1)


def pool_kernel(options: dict[str, Any]) -> Pair:
    return options["filter_height"], options["filter_width"]


def pad(x: torch.Tensor, options: dict[str, Any], kernel: Pair, value: float = 0.0) -> torch.Tensor:
    """NCHW `x` padded as the operator's `padding` asks (nothing for VALID)."""
    if options.get("padding", "VALID") != "SAME":
        return x
    (sh, sw), (dh, dw) = strides(options), dilations(options)
    top, bottom = same_padding(x.shape[2], (kernel[0] - 1) * dh + 1, sh)
    left, right = same_padding(x.shape[3], (kernel[1] - 1) * dw + 1, sw)
    return F.pad(x, (left, right, top, bottom), value=value)
