"""The building blocks, computing what TF-slim computes.

Every weighted leaf module carries `slim_scope`, the TF variable scope it came from, so that
`naming.slim_names` can map checkpoint variables onto parameters without a hand-typed table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobilenetv3.core import specs

BATCH_NORM_EPS = 1e-3  # slim.batch_norm's default epsilon


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """TF-slim's `_make_divisible`: nearest multiple of `divisor`, never below 90% of `value`."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME": output ceil(size / stride), the odd pixel of padding goes at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class HardSwish(nn.Module):
    """Slim's `x * relu6(x + 3) * (1/6)`. PyTorch's fused kernel divides by 6 instead of
    multiplying by float32(1/6): the same value up to the last bit, in one pass over memory
    instead of four (a quarter of eager CPU time went to these elementwise passes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardswish(x)


class SlimHardSigmoid(nn.Module):
    """The squeeze-excite gate of slim's V3: `relu6(x + 3) * 0.16667` (not 1/6: the gate can
    reach 1.00002, and matching logits to 1e-4 needs the same constant)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) * 0.16667


ACTIVATIONS: dict[str, type[nn.Module]] = {
    specs.RELU: nn.ReLU,
    specs.RELU6: nn.ReLU6,
    specs.HARD_SWISH: HardSwish,
    specs.IDENTITY: nn.Identity,
}


class ConvBNAct(nn.Module):
    """Conv (TF "SAME" padding) -> BatchNorm (eps 1e-3) or bias -> activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        *,
        scope: str,
        stride: int = 1,
        depthwise: bool = False,
        act: str = specs.RELU,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        # Stride 1 with an odd kernel pads symmetrically for every size: let the conv do it.
        padding = (kernel - 1) // 2 if stride == 1 else 0
        groups = in_channels if depthwise else 1
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel, stride, padding, groups=groups, bias=not batch_norm
        )
        self.conv.slim_scope = scope
        if batch_norm:
            self.bn: nn.Module = nn.BatchNorm2d(out_channels, eps=BATCH_NORM_EPS)
            self.bn.slim_scope = f"{scope}/BatchNorm"
        else:
            self.bn = nn.Identity()
        self.act = ACTIVATIONS[act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            top, bottom = same_padding(x.shape[-2], self.kernel, self.stride)
            left, right = same_padding(x.shape[-1], self.kernel, self.stride)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Global mean -> 1x1 conv + ReLU -> 1x1 conv -> slim's hard-sigmoid gate -> rescale."""

    def __init__(self, channels: int, squeeze_channels: int, *, scope: str) -> None:
        super().__init__()
        self.reduce = ConvBNAct(channels, squeeze_channels, 1, scope=f"{scope}/Conv",
                                batch_norm=False)  # fmt: skip
        self.expand = ConvBNAct(squeeze_channels, channels, 1, scope=f"{scope}/Conv_1",
                                act=specs.IDENTITY, batch_norm=False)  # fmt: skip
        self.gate = SlimHardSigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.reduce(x.mean((2, 3), keepdim=True))))


class Bottleneck(nn.Module):
    """Slim's `expanded_conv`: [expand] -> [depthwise] -> [squeeze-excite] -> project [+ input]."""

    def __init__(self, in_channels: int, out_channels: int, row: specs.Bottleneck, *, scope: str):
        super().__init__()
        inner = make_divisible(in_channels * row.expand, row.expand_divisible_by)
        layers: list[nn.Module] = []
        if inner > in_channels:
            kernel, stride = (row.kernel, row.stride) if row.fused else (1, 1)
            layers.append(ConvBNAct(in_channels, inner, kernel, scope=f"{scope}/expand",
                                    stride=stride, act=row.act))  # fmt: skip
        else:
            inner = in_channels
        if not row.fused:
            layers.append(ConvBNAct(inner, inner, row.kernel, scope=f"{scope}/depthwise",
                                    stride=row.stride, depthwise=True, act=row.act))  # fmt: skip
        if row.squeeze_excite:
            squeeze = make_divisible(inner / 4, 8)
            layers.append(SqueezeExcite(inner, squeeze, scope=f"{scope}/squeeze_excite"))
        layers.append(ConvBNAct(inner, out_channels, 1, scope=f"{scope}/project",
                                act=specs.IDENTITY))  # fmt: skip
        self.block = nn.Sequential(*layers)
        self.residual = row.residual and row.stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


class ReduceTo1x1(nn.Module):
    """Slim's `reduce_to_1x1`: average the whole map when square, else a fixed VALID window.

    On a non-square map the result is not 1x1 (225x193 input -> 8x7 map -> 2x1); the 1x1 conv
    after it runs per position and the classifier averages. Maps smaller than the window (where
    TF fails) are pooled with the window clipped to the map.
    """

    def __init__(self, default_size: int) -> None:
        super().__init__()
        self.default_size = default_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        if height == width:
            return x.mean((2, 3), keepdim=True)
        kernel = (min(self.default_size, height), min(self.default_size, width))
        return F.avg_pool2d(x, kernel, stride=1)
