"""Every TF-slim MobileNet variant as data: one row per op, as in the papers' tables.

A spec lists the ops of `mobilenet_base` in order (slim's `layer_1 ... layer_N`), then the
classifier that slim's `mobilenet()` adds (global pool, dropout, 1x1 logits). The builder in
`model.py` turns any spec into a module, so variants differ only here.

Sources of the tables: TF-slim `nets/mobilenet/mobilenet_v3.py` (V3_LARGE, V3_SMALL, the
minimalistic defs, V3_EDGETPU, the detection "reduced tail") and `mobilenet_v2.py` (V2_DEF);
the MobileNetV3 paper, tables 1 and 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

RELU = "relu"
RELU6 = "relu6"
HARD_SWISH = "hard_swish"
IDENTITY = "identity"


@dataclass(frozen=True)
class Conv:
    """A plain convolution (stem, last 1x1 layers): slim's `op(slim.conv2d, ...)`."""

    kernel: int
    out: int
    stride: int = 1
    act: str = RELU
    batch_norm: bool = True  # False: the conv has biases instead (V3's last 1x1 conv)


@dataclass(frozen=True)
class Bottleneck:
    """An inverted residual block: slim's `expanded_conv`.

    `expand` is the expansion factor applied to the (scaled) input width, rounded to a multiple
    of 8 (`expand_input_by_factor`); no expansion layer exists when that is not wider than the
    input. `fused` (EdgeTPU) makes the expansion a `kernel`x`kernel` conv and drops the depthwise.
    """

    kernel: int
    expand: float
    out: int
    squeeze_excite: bool
    act: str
    stride: int
    fused: bool = False
    residual: bool = True
    expand_divisible_by: int = 8


@dataclass(frozen=True)
class ReduceTo1x1:
    """Slim's `reduce_to_1x1` before V3's last conv: a full-map average pool when the map is
    square, otherwise a fixed `default_size` VALID window."""

    default_size: int = 7


Layer = Conv | Bottleneck | ReduceTo1x1


@dataclass(frozen=True)
class NetSpec:
    scope: str  # slim variable scope: the prefix of every checkpoint name
    layers: tuple[Layer, ...]
    dropout: float = 0.2  # slim's training_scope: dropout_keep_prob=0.8


def _v3(*rows: tuple) -> tuple[Bottleneck, ...]:
    """Rows of the paper's tables: (kernel, expansion factor, out, SE, activation, stride)."""
    return tuple(Bottleneck(k, e, c, se, act, s) for k, e, c, se, act, s in rows)


HS, RE = HARD_SWISH, RELU

V3_LARGE = NetSpec(
    "MobilenetV3",
    (
        Conv(3, 16, stride=2, act=HS),
        *_v3(
            (3, 1, 16, False, RE, 1),
            (3, 4, 24, False, RE, 2),
            (3, 3, 24, False, RE, 1),
            (5, 3, 40, True, RE, 2),
            (5, 3, 40, True, RE, 1),
            (5, 3, 40, True, RE, 1),
            (3, 6, 80, False, HS, 2),
            (3, 2.5, 80, False, HS, 1),
            (3, 184 / 80, 80, False, HS, 1),
            (3, 184 / 80, 80, False, HS, 1),
            (3, 6, 112, True, HS, 1),
            (3, 6, 112, True, HS, 1),
            (5, 6, 160, True, HS, 2),
            (5, 6, 160, True, HS, 1),
            (5, 6, 160, True, HS, 1),
        ),
        Conv(1, 960, act=HS),
        ReduceTo1x1(),
        Conv(1, 1280, act=HS, batch_norm=False),
    ),
)

V3_SMALL = NetSpec(
    "MobilenetV3",
    (
        Conv(3, 16, stride=2, act=HS),
        *_v3(
            (3, 1, 16, True, RE, 2),
            (3, 72 / 16, 24, False, RE, 2),
            (3, 88 / 24, 24, False, RE, 1),
            (5, 4, 40, True, HS, 2),
            (5, 6, 40, True, HS, 1),
            (5, 6, 40, True, HS, 1),
            (5, 3, 48, True, HS, 1),
            (5, 3, 48, True, HS, 1),
            (5, 6, 96, True, HS, 2),
            (5, 6, 96, True, HS, 1),
            (5, 6, 96, True, HS, 1),
        ),
        Conv(1, 576, act=HS),
        ReduceTo1x1(),
        Conv(1, 1024, act=HS, batch_norm=False),
    ),
)


def minimalistic(spec: NetSpec) -> NetSpec:
    """No squeeze-excite, no hard-swish, no 5x5: what V3_*_MINIMALISTIC spell out row by row."""

    def simplify(layer: Layer) -> Layer:
        if isinstance(layer, Bottleneck):
            return replace(layer, kernel=3, squeeze_excite=False, act=RELU)
        return replace(layer, act=RELU) if isinstance(layer, Conv) else layer

    return replace(spec, layers=tuple(simplify(layer) for layer in spec.layers))


def reduced_tail(spec: NetSpec, first: int, last: int) -> NetSpec:
    """Halve the widths of ops first..last (0-based, inclusive): slim's detection defs
    (`_reduce_consecutive_layers`, rounding with np.round)."""
    layers = list(spec.layers)
    for i in range(first, last + 1):
        layers[i] = replace(layers[i], out=round(layers[i].out * 0.5))
    return replace(spec, layers=tuple(layers))


def segmentation_tail(spec: NetSpec, first: int, last: int) -> NetSpec:
    """DeepLab's `mobilenet_v3_*_seg`: the detection tail, whose first block also expands to
    half its width (Large: 336 channels instead of 672)."""
    layers = list(reduced_tail(spec, first, last).layers)
    layers[first] = replace(layers[first], expand=layers[first].expand / 2)
    return replace(spec, layers=tuple(layers))


def _edge_tpu_rows() -> tuple[Bottleneck, ...]:
    fused = [(1, 16, 1), (8, 32, 2), (4, 32, 1), (4, 32, 1), (4, 32, 1),
             (8, 48, 2), (4, 48, 1), (4, 48, 1), (4, 48, 1)]  # fmt: skip
    plain = [(3, 8, 96, 2), (3, 4, 96, 1), (3, 4, 96, 1), (3, 4, 96, 1), (3, 8, 96, 1),
             (3, 4, 96, 1), (3, 4, 96, 1), (3, 4, 96, 1), (5, 8, 160, 2), (5, 4, 160, 1),
             (5, 4, 160, 1), (5, 4, 160, 1), (3, 8, 192, 1)]  # fmt: skip
    rows = [Bottleneck(3, e, c, False, RE, s, fused=True) for e, c, s in fused]
    rows += [Bottleneck(k, e, c, False, RE, s) for k, e, c, s in plain]
    rows[13] = replace(rows[13], residual=False)  # slim: the 8x row at 96 has residual=False
    return tuple(rows)


V3_EDGETPU = NetSpec(
    "MobilenetEdgeTPU",
    (Conv(3, 32, stride=2), *_edge_tpu_rows(), Conv(1, 1280)),
)


def _v2_rows() -> tuple[Bottleneck, ...]:
    # (expansion t, channels c, repeats n, first stride s): MobileNetV2 paper, table 2.
    table = [(6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1)]  # fmt: skip
    rows = [Bottleneck(3, 1, 16, False, RELU6, 1, expand_divisible_by=1)]
    for t, c, n, s in table:
        rows += [Bottleneck(3, t, c, False, RELU6, s if i == 0 else 1) for i in range(n)]
    return tuple(rows)


V2 = NetSpec(
    "MobilenetV2",
    (Conv(3, 32, stride=2, act=RELU6), *_v2_rows(), Conv(1, 1280, act=RELU6)),
)

FAMILIES: dict[str, NetSpec] = {
    "v3_large": V3_LARGE,
    "v3_small": V3_SMALL,
    "v3_large_minimalistic": minimalistic(V3_LARGE),
    "v3_small_minimalistic": minimalistic(V3_SMALL),
    "v3_large_detection": reduced_tail(V3_LARGE, 13, 16),
    "v3_small_detection": reduced_tail(V3_SMALL, 9, 12),
    "v3_large_segmentation": segmentation_tail(V3_LARGE, 13, 16),
    "v3_small_segmentation": segmentation_tail(V3_SMALL, 9, 12),
    "edge_tpu": V3_EDGETPU,
    "v2": V2,
}


@dataclass(frozen=True)
class Variant:
    """A family at one depth multiplier: everything that fixes the architecture."""

    family: str
    depth_multiplier: float = 1.0
    finegrain_classification_mode: bool = False
    min_depth: int = 8
    divisible_by: int = 8

    @property
    def spec(self) -> NetSpec:
        return FAMILIES[self.family]

    @property
    def name(self) -> str:
        text = f"{self.depth_multiplier:g}"
        text = text if "." in text else text + ".0"
        return f"{self.family}_{text}{'_finegrain' if self.finegrain_classification_mode else ''}"


# The variants of ../shared/reference/figures.json, then the multipliers people deploy.
NAMED_VARIANTS: tuple[str, ...] = (
    "v3_large_1.0", "v3_large_0.75", "v3_large_0.75_finegrain", "v3_small_1.0",
    "v3_small_0.75", "v3_small_0.75_finegrain", "v3_large_minimalistic_1.0",
    "v3_small_minimalistic_1.0", "v3_large_detection_1.0", "v3_small_detection_1.0",
    "edge_tpu_1.0", "v2_1.0",
    "v3_large_0.5", "v3_large_0.35", "v3_small_0.5", "v3_small_0.35",
    "v2_1.4", "v2_0.75", "v2_0.5", "v2_0.35", "edge_tpu_0.75_finegrain",
)  # fmt: skip

_NAME = re.compile(r"^(?P<family>[a-z0-9_]+?)(?:_(?P<dm>\d+(?:\.\d+)?))?(?P<fine>_finegrain)?$")


def parse_variant(name: str, depth_multiplier: float | None = None) -> Variant:
    """`v3_large_0.75_finegrain` -> Variant; a bare family name takes `depth_multiplier`."""
    match = _NAME.match(name)
    family = match["family"] if match else None
    if family not in FAMILIES:
        raise ValueError(
            f"unknown model {name!r}: expected one of {', '.join(NAMED_VARIANTS)} "
            f"(or any family {', '.join(FAMILIES)} with a depth multiplier, e.g. v3_large_0.35)"
        )
    multiplier = multiplier_of(name, match["dm"], depth_multiplier)
    return Variant(family, multiplier, bool(match["fine"]))


def multiplier_of(name: str, named: str | None, depth_multiplier: float | None) -> float:
    """The depth multiplier a model name gives (`..._0.75`) or the argument does (they must
    agree), 1.0 when neither does."""
    from_name = float(named) if named else None
    if from_name is not None and depth_multiplier is not None and from_name != depth_multiplier:
        raise ValueError(f"{name!r} names depth multiplier {from_name}, not {depth_multiplier}")
    multiplier = next((m for m in (from_name, depth_multiplier) if m is not None), 1.0)
    if multiplier <= 0:
        raise ValueError(f"depth_multiplier must be > 0, got {multiplier}")
    return multiplier
