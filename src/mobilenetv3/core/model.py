"""One builder for every spec: `MobileNet(variant)`."""

from __future__ import annotations

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
    """The backbone for detection/segmentation: returns the chosen slim endpoints by name."""

    def __init__(self, model: MobileNet, endpoints: list[str] | None = None) -> None:
        super().__init__()
        self.features = model.features
        available = model.layer_names[: len(model.features)]
        self.endpoints = list(endpoints or available)
        unknown = sorted(set(self.endpoints) - set(available))
        if unknown:
            raise ValueError(f"unknown endpoints {unknown}: this backbone has {available}")
        self.feature_info = [
            {"name": name, "channels": _out_channels(self.features[: available.index(name) + 1])}
            for name in self.endpoints
        ]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_input(x)
        wanted, out = set(self.endpoints), {}
        last = max(int(name.split("_")[1]) for name in wanted)
        for i, module in enumerate(self.features[:last]):
            x = module(x)
            if f"layer_{i + 1}" in wanted:
                out[f"layer_{i + 1}"] = x
        return out


def _out_channels(modules: nn.Sequential) -> int:
    convs = [m for m in modules.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


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
