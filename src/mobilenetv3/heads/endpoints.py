"""Slim's backbone endpoints by name, inner ones included: `layer_N`, `layer_N/expansion_output`
(the expansion conv's output), `layer_N/depthwise_output` (the depthwise conv's, before SE)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mobilenetv3.core.layers import Bottleneck

_INNER = {"expand": "expansion_output", "depthwise": "depthwise_output"}


def layer_number(endpoint: str) -> int:
    """`layer_14/expansion_output` -> 14."""
    return int(endpoint.split("/")[0].removeprefix("layer_"))


def endpoint_channels(layers: nn.Sequential, endpoint: str) -> int:
    """The width of an endpoint of `layers` (slim's layer_1, layer_2, ... in order)."""
    layer = layers[layer_number(endpoint) - 1]
    if "/" not in endpoint:
        return [m for m in layer.modules() if isinstance(m, nn.Conv2d)][-1].out_channels
    inner = endpoint.split("/", 1)[1]
    for module in getattr(layer, "block", []):
        if _inner_name(module) == inner:
            return module.conv.out_channels
    raise ValueError(
        f"layer_{layer_number(endpoint)} ({type(layer).__name__}) has no {inner}; "
        f"inner endpoints are {sorted(_INNER.values())} of a bottleneck"
    )


def run_endpoints(layers: nn.Sequential, x: torch.Tensor, wanted: Sequence[str]
                  ) -> dict[str, torch.Tensor]:  # fmt: skip
    """Run `layers` as far as the last wanted endpoint; returns those endpoints by name."""
    found: dict[str, torch.Tensor] = {}
    for number in range(1, max(layer_number(name) for name in wanted) + 1):
        layer, prefix = layers[number - 1], f"layer_{number}/"
        inner = {name.removeprefix(prefix) for name in wanted if name.startswith(prefix)}
        x = _run_tapped(layer, x, inner, prefix, found) if inner else layer(x)
        found[f"layer_{number}"] = x
    return {name: found[name] for name in wanted}


def _run_tapped(layer: nn.Module, x: torch.Tensor, inner: set[str], prefix: str,
                found: dict[str, torch.Tensor]) -> torch.Tensor:  # fmt: skip
    """A bottleneck run module by module, keeping the inner outputs asked for."""
    if not isinstance(layer, Bottleneck):
        raise ValueError(f"{prefix.rstrip('/')} is a {type(layer).__name__}, it has no {inner}")
    out = x
    for module in layer.block:
        out = module(out)
        if _inner_name(module) in inner:
            found[prefix + _inner_name(module)] = out
    return out + x if layer.residual else out


def _inner_name(module: nn.Module) -> str | None:
    scope = getattr(getattr(module, "conv", None), "slim_scope", "")
    return _INNER.get(scope.rsplit("/", 1)[-1])
