"""One builder for every spec: `MobileNet(variant)`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mobilenetv3.core import specs
from mobilenetv3.core.layers import Bottleneck, ConvBNAct, ReduceTo1x1, make_divisible


def _scoped_names(spec: specs.NetSpec) -> list[str]:
    """Slim's scope per op: conv2d -> Conv, Conv_1, ...; expanded_conv -> expanded_conv, _1, ..."""
    counts: dict[str, int] = {}
    names = []
    for layer in spec.layers:
        base = {specs.Conv: "Conv", specs.Bottleneck: "expanded_conv"}.get(type(layer), "AvgPool2D")
        n = counts.get(base, 0)
        counts[base] = n + 1
        names.append(f"{spec.scope}/{base}" + (f"_{n}" if n else ""))
    return names


def build_layers(variant: specs.Variant) -> tuple[list[nn.Module], int]:
    """The modules of `mobilenet_base` (slim's layer_1..layer_N) and the final width."""
    spec, multiplier = variant.spec, variant.depth_multiplier
    last_conv = max(i for i, layer in enumerate(spec.layers) if isinstance(layer, specs.Conv))
    channels, modules = 3, []
    for i, (layer, scope) in enumerate(zip(spec.layers, _scoped_names(spec), strict=True)):
        if isinstance(layer, specs.ReduceTo1x1):
            modules.append(ReduceTo1x1(layer.default_size))
            continue
        keep_width = variant.finegrain_classification_mode and i == last_conv and multiplier < 1
        out = layer.out if keep_width else make_divisible(
            layer.out * multiplier, variant.divisible_by, variant.min_depth
        )
        if isinstance(layer, specs.Bottleneck):
            modules.append(Bottleneck(channels, out, layer, scope=scope))
        else:
            modules.append(ConvBNAct(channels, out, layer.kernel, scope=scope, stride=layer.stride,
                                     act=layer.act, batch_norm=layer.batch_norm))  # fmt: skip
        channels = out
    return modules, channels


LABEL_SETS = {1001: "imagenet: 0 = background, then the 1000 ImageNet classes (slim)",
              1000: "imagenet: the 1000 ImageNet classes"}  # fmt: skip


class MobileNet(nn.Module):
    """A TF-slim MobileNet: input NCHW float in [-1, 1], output logits [N, num_classes].

    `features` holds slim's ops up to the last feature map (before any pooling); `head` holds
    what V3 runs after it (reduce_to_1x1, the 1x1 conv); then mean, dropout, `classifier`.
    """

    def __init__(
        self, variant: specs.Variant, num_classes: int = 1001, dropout: float | None = None
    ) -> None:
        super().__init__()
        self.variant = variant
        modules, self.num_features = build_layers(variant)
        split = next((i for i, m in enumerate(modules) if isinstance(m, ReduceTo1x1)), len(modules))
        self.features = nn.Sequential(*modules[:split])
        self.head = nn.Sequential(*modules[split:])
        self.feature_channels = _out_channels(self.features)
        self.dropout = nn.Dropout(variant.spec.dropout if dropout is None else dropout)
        self.reset_classifier(num_classes)
        self._init_weights()

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """What the weights expect of an input, and what the outputs mean (timm's name):
        `mobilenetv3.preprocessing(model)` builds the transform from it."""
        from mobilenetv3.data.preprocess import SLIM_EVAL, Preprocess  # a leaf: no cycle

        info = getattr(self, "pretrained_info", {})
        stored = info.get("preprocess")
        preprocess = Preprocess.from_dict(stored) if stored else SLIM_EVAL
        if info.get("labels"):
            label_set = "stored with the weights"
        else:
            label_set = LABEL_SETS.get(self.num_classes, "class indices")
        return {
            "input_size": (3, *preprocess.image_size),
            "crop": preprocess.kind,
            "crop_pct": preprocess.central_fraction,
            "interpolation": preprocess.resize,
            "mean": preprocess.mean,
            "std": preprocess.std,
            "input_range": "mean/std applied to pixels scaled to [0, 1]",
            "num_classes": self.num_classes,
            "label_set": label_set,
            "source": info.get("source"),
            "preprocess": preprocess.to_dict(),
        }

    @property
    def layer_names(self) -> list[str]:
        return [f"layer_{i + 1}" for i in range(len(self.features) + len(self.head))]

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh logits layer (slim: Logits/Conv2d_1c_1x1); 0 gives pooled features."""
        self.num_classes = num_classes
        if num_classes:
            self.classifier: nn.Module = nn.Linear(self.num_features, num_classes)
            self.classifier.slim_scope = f"{self.variant.spec.scope}/Logits/Conv2d_1c_1x1"
            nn.init.normal_(self.classifier.weight, std=0.01)
            nn.init.zeros_(self.classifier.bias)
        else:
            self.classifier = nn.Identity()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before pooling (slim's Conv_1 output), NCHW."""
        check_input(x)
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head(x).mean((2, 3))  # slim's global_pool
        x = self.dropout(x)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_endpoints(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every slim endpoint: layer_1..layer_N (NCHW), global_pool [N, C], Logits."""
        check_input(x)
        endpoints = {}
        for name, module in zip(self.layer_names, [*self.features, *self.head], strict=True):
            x = module(x)
            endpoints[name] = x
        endpoints["global_pool"] = x.mean((2, 3))
        endpoints["Logits"] = self.classifier(self.dropout(endpoints["global_pool"]))
        return endpoints


class FeatureExtractor(nn.Module):
    """The backbone for detection/segmentation (timm's `features_only`): forward returns the
    chosen slim endpoints by name; `feature_info` describes each in timm's keys (`num_chs`;
    `reduction`: the map's stride relative to the input; `module`: the slim endpoint name).

    Choose by name with `endpoints`: `layer_N`, or an inner endpoint of a bottleneck,
    `layer_N/expansion_output` (the expand conv's output, which slim's SSD heads take) or
    `layer_N/depthwise_output` (the depthwise conv's, before squeeze-excite, DeepLab's decoder
    input); or with `out_indices` into the stages (timm's convention: the last layer at each
    reduction, e.g. 2, 4, 8, 16, 32). Layers after the last chosen endpoint are dropped.
    """

    def __init__(self, model: MobileNet, endpoints: Sequence[str] | None = None,
                 out_indices: Sequence[int] | None = None) -> None:  # fmt: skip
        super().__init__()
        points = feature_points(model.features)
        if endpoints and out_indices is not None:
            raise ValueError("choose features by endpoints (names) or out_indices, not both")
        if out_indices is not None:
            endpoints = [p["module"] for p in _pick(stages(points), out_indices)]
        by_name = {p["module"]: p for p in points}
        self.endpoints = list(endpoints or [n for n in by_name if "/" not in n])
        unknown = [name for name in self.endpoints if name not in by_name]
        if unknown:
            raise ValueError(f"unknown endpoints {unknown}: this backbone has {list(by_name)}")
        self.feature_info = [by_name[name] for name in self.endpoints]
        self.features = model.features[: max(map(_layer_number, self.endpoints))]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_input(x)
        found: dict[str, torch.Tensor] = {}
        for number, layer in enumerate(self.features, start=1):
            prefix = f"layer_{number}/"
            inner = {n.removeprefix(prefix) for n in self.endpoints if n.startswith(prefix)}
            x = _run_tapped(layer, x, inner, prefix, found) if inner else layer(x)
            found[f"layer_{number}"] = x
        return {name: found[name] for name in self.endpoints}


def _run_tapped(layer: Bottleneck, x: torch.Tensor, inner: set[str], prefix: str,
                found: dict[str, torch.Tensor]) -> torch.Tensor:  # fmt: skip
    """A bottleneck run module by module, keeping the inner outputs asked for."""
    out = x
    for module in layer.block:
        out = module(out)
        if inner_endpoint(module) in inner:
            found[prefix + inner_endpoint(module)] = out
    return out + x if layer.residual else out


_INNER = {"expand": "expansion_output", "depthwise": "depthwise_output"}


def inner_endpoint(module: nn.Module) -> str | None:
    """Slim's inner endpoint a bottleneck's part gives (its conv's scope ends in the key)."""
    scope = getattr(getattr(module, "conv", None), "slim_scope", "")
    return _INNER.get(scope.rsplit("/", 1)[-1])


def feature_points(features: nn.Sequential) -> list[dict[str, Any]]:
    """Every endpoint of the feature layers in order: `layer_N` and, before it where the layer
    is a bottleneck, its inner endpoints (`layer_N/expansion_output`, `.../depthwise_output`)."""
    points, reduction = [], 1
    for number, module in enumerate(features, start=1):
        name = f"layer_{number}"
        for part in module.block if isinstance(module, Bottleneck) else [module]:
            reduction *= math.prod(conv.stride[0] for conv in _convs(part))
            inner = inner_endpoint(part)  # None for a plain conv (scope Conv, Conv_1)
            if inner:
                points.append({"module": f"{name}/{inner}", "num_chs": part.conv.out_channels,
                               "reduction": reduction})  # fmt: skip
        points.append({"module": name, "num_chs": _out_channels(module), "reduction": reduction})
    return points


def stages(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """timm's stages: the last `layer_N` at each reduction."""
    last = {p["reduction"]: p for p in points if "/" not in p["module"]}
    return list(last.values())


def _pick(items: list[dict[str, Any]], indices: Sequence[int]) -> list[dict[str, Any]]:
    bad = [i for i in indices if not -len(items) <= i < len(items)]
    if bad:
        raise ValueError(f"out_indices {bad} out of range: this backbone has {len(items)} stages "
                         f"(reductions {[p['reduction'] for p in items]})")  # fmt: skip
    return [items[i] for i in indices]


def _layer_number(endpoint: str) -> int:
    """`layer_14/expansion_output` -> 14."""
    return int(endpoint.split("/")[0].removeprefix("layer_"))


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def _out_channels(modules: nn.Module) -> int:
    return _convs(modules)[-1].out_channels


def check_input(x: torch.Tensor) -> None:
    """One clear error for what the network cannot take."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(
            f"expected an NCHW batch of RGB images [N, 3, H, W], got shape {tuple(x.shape)}; "
            "add a batch dimension with x[None] or move channels first with x.permute(0, 3, 1, 2)"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"expected a floating-point tensor scaled to [-1, 1], got dtype {x.dtype}; "
            "convert uint8 pixels with x.float() / 127.5 - 1"
        )
