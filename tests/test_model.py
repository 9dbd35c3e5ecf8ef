"""The architecture against the original TF-slim code's own figures, names and shapes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import mobilenetv3
from mobilenetv3.core.init import randomize
from mobilenetv3.core.naming import slim_names, slim_shape

FIGURE_VARIANTS = [
    "v3_large_1.0", "v3_large_0.75", "v3_large_0.75_finegrain", "v3_small_1.0", "v3_small_0.75",
    "v3_small_0.75_finegrain", "v3_large_minimalistic_1.0", "v3_small_minimalistic_1.0",
    "v3_large_detection_1.0", "v3_small_detection_1.0", "edge_tpu_1.0", "v2_1.0",
]  # fmt: skip


@pytest.fixture(scope="module")
def figures(shared):
    return json.loads((shared / "reference" / "figures.json").read_text())


def test_every_reference_variant_is_listed(figures):
    assert set(FIGURE_VARIANTS) == {k for k in figures if not k.startswith("_")}
    assert set(FIGURE_VARIANTS) <= set(mobilenetv3.list_models())


@pytest.mark.parametrize("name", FIGURE_VARIANTS)
def test_params_and_macs_equal_slim(name, figures):
    expected = figures[name]
    model = mobilenetv3.create_model(name)
    assert mobilenetv3.count_params(model) == expected["trainable_params"]
    assert mobilenetv3.count_macs(model, (224, 224)) == expected["macs_224"]
    backbone = mobilenetv3.create_model(name, num_classes=0)
    assert mobilenetv3.count_params(backbone) == expected["trainable_params_excl_logits"]
    assert mobilenetv3.count_macs(backbone, 224) == expected["macs_224_excl_logits"]


def _reference_variables(shared, name: str) -> dict[str, tuple[int, ...]]:
    out = {}
    listing = shared / "reference" / "variables" / f"{name}_variables.txt"
    for line in listing.read_text().splitlines():
        var, shape, *_ = line.split("\t")
        if var != "global_step" and not var.endswith("/ExponentialMovingAverage"):
            out[var] = tuple(json.loads(shape))
    return out


@pytest.mark.parametrize("name", FIGURE_VARIANTS)
def test_name_map_covers_every_slim_variable_once(name, shared):
    reference = _reference_variables(shared, name)
    model = mobilenetv3.create_model(name)
    names = slim_names(model)
    state = model.state_dict()
    assert set(names) == set(reference)
    assert len(set(names.values())) == len(names)  # one parameter per variable
    leftover = {k for k in state if not k.endswith("num_batches_tracked")} - set(names.values())
    assert not leftover
    for var, key in names.items():
        assert slim_shape(tuple(state[key].shape), var) == reference[var], var


def _reference_endpoint_shapes(shared, variant: str) -> dict[str, dict[str, list[int]]]:
    with np.load(shared / "reference" / "slim" / variant / "reference.npz") as data:
        return json.loads(str(data["meta_json"]))["endpoint_shapes_batch2"]


@pytest.mark.parametrize("variant", ["v3_large_1.0", "v3_small_1.0"])
def test_endpoint_shapes_equal_slim_at_odd_sizes(variant, shared):
    model = mobilenetv3.create_model(variant).eval()
    for size, shapes in _reference_endpoint_shapes(shared, variant).items():
        height, width = map(int, size.split("x"))
        with torch.no_grad():
            endpoints = model.forward_endpoints(torch.zeros(2, 3, height, width))
        for name, nhwc in shapes.items():
            if "/" in name or name == "Predictions":
                continue
            got = endpoints[name]
            got = (*got.shape[:1], *got.shape[2:], got.shape[1]) if got.dim() == 4 else got.shape
            if name == "global_pool":
                nhwc = [nhwc[0], nhwc[3]]
            assert list(got) == nhwc, (size, name)


def _random_input(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _assert_visible(logits: torch.Tensor) -> None:
    """Logits that spread: an all-zeros or a vanishing output cannot pass the comparison."""
    assert logits.std() > 0.5, f"logits too small to compare: std {logits.std():.2g}"


def test_randomize_keeps_activations_at_unit_scale():
    model = randomize(mobilenetv3.create_model("v3_large_1.0"), seed=1)
    with torch.no_grad():
        endpoints = model.forward_endpoints(_random_input(2, 3, 128, 96, seed=5))
    for name in model.layer_names[: len(model.features)]:  # the feature maps, before pooling
        assert 0.25 < endpoints[name].std() < 5, name  # fresh weights: 2e-4 by layer_10
    _assert_visible(endpoints["Logits"])


def _same_size(size: int, strides: list[int]) -> int:
    for stride in strides:
        size = math.ceil(size / stride)
    return size


@pytest.mark.parametrize(
    "name", ["v3_large_1.0", "v3_small_minimalistic_1.0", "edge_tpu_1.0", "v2_1.0"]
)
@pytest.mark.parametrize("size", [(225, 193), (97, 131), (224, 224)])
def test_feature_map_follows_tf_same_arithmetic(name, size):
    model = mobilenetv3.create_model(name).eval()
    with torch.no_grad():
        features = model.forward_features(torch.zeros(1, 3, *size))
        logits = model(torch.zeros(1, 3, *size))
    assert features.shape[2:] == tuple(_same_size(s, [2] * 5) for s in size)
    assert logits.shape == (1, 1001)


def test_non_square_head_pools_with_slim_window():
    model = mobilenetv3.create_model("v3_small_1.0").eval()
    with torch.no_grad():
        endpoints = model.forward_endpoints(torch.zeros(1, 3, 225, 193))
    assert endpoints["layer_13"].shape[2:] == (8, 7)
    assert endpoints["layer_14"].shape[2:] == (2, 1)  # 7x7 VALID window, not a global pool


def test_depth_multiplier_rounding_follows_slim():
    from mobilenetv3.core.layers import make_divisible

    # slim keeps a multiple of 8, never more than 10% below the exact value, at least min_depth
    assert [make_divisible(v, 8) for v in (12, 5.6, 20.3, 147.2, 3)] == [16, 8, 24, 144, 8]
    for value in np.linspace(1, 2000, 4000):
        got = make_divisible(float(value), 8)
        assert got % 8 == 0 and got >= 0.9 * value and got >= 8
    small = mobilenetv3.create_model("v3_large", depth_multiplier=0.5)
    assert small.variant.name == "v3_large_0.5"
    assert mobilenetv3.create_model("v2_1.4").num_features == 1792
    assert mobilenetv3.create_model("v3_large_0.35").num_features == 448  # 1280 * 0.35
    assert mobilenetv3.create_model("v3_large_0.35_finegrain").num_features == 1280


def test_num_classes_dropout_and_reset_classifier():
    model = mobilenetv3.create_model("v3_small_1.0", num_classes=1000, dropout=0.5)
    assert model.dropout.p == 0.5
    assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)
    model.reset_classifier(7)
    assert model.eval()(torch.zeros(1, 3, 96, 96)).shape == (1, 7)
    model.reset_classifier(0)
    assert model(torch.zeros(1, 3, 96, 96)).shape == (1, 1024)


def test_forward_features_and_head_compose():
    model = randomize(mobilenetv3.create_model("v3_large_1.0"))
    x = _random_input(2, 3, 160, 160)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 960, 5, 5)
        logits = model(x)
        _assert_visible(logits)
        torch.testing.assert_close(model.forward_head(features), logits)
        assert model.forward_head(features, pre_logits=True).shape == (2, 1280)


def test_features_only_returns_slim_endpoints():
    backbone = mobilenetv3.create_model("v3_large_1.0", features_only=True).eval()
    with torch.no_grad():
        out = backbone(torch.zeros(1, 3, 224, 224))
    assert list(out) == [f"layer_{i}" for i in range(1, 18)]
    assert out["layer_17"].shape == (1, 960, 7, 7)
    chosen = mobilenetv3.create_model("v3_large_1.0", endpoints=["layer_4", "layer_7", "layer_13"])
    out = chosen.eval()(torch.zeros(1, 3, 224, 224))
    assert {k: v.shape[1:] for k, v in out.items()} == {
        "layer_4": (24, 56, 56), "layer_7": (40, 28, 28), "layer_13": (112, 14, 14)
    }  # fmt: skip
    assert [f["num_chs"] for f in chosen.feature_info] == [24, 40, 112]
    with pytest.raises(ValueError, match="unknown endpoints"):
        mobilenetv3.create_model("v3_large_1.0", endpoints=["layer_99"])


def test_channels_last_gives_the_same_logits():
    model = randomize(mobilenetv3.create_model("v3_large_1.0"))
    x = _random_input(2, 3, 224, 224)
    with torch.no_grad():
        expected = model(x)
        _assert_visible(expected)
        got = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# One variant per distinct graph (SE + hard-swish, no SE, detection tail, fused EdgeTPU
# blocks, V2): widths and finegrain change no op, so compiling them again only costs time.
COMPILE_VARIANTS = ["v3_large_1.0", "v3_small_1.0", "v3_large_minimalistic_1.0",
                    "v3_small_detection_1.0", "edge_tpu_1.0", "v2_1.0"]  # fmt: skip


@pytest.mark.parametrize("name", FIGURE_VARIANTS)
def test_torch_export(name):
    model = randomize(mobilenetv3.create_model(name))
    x = _random_input(1, 3, 96, 64)
    with torch.no_grad():
        expected = model(x)
        _assert_visible(expected)
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", COMPILE_VARIANTS)
def test_torch_compile(name):
    model = randomize(mobilenetv3.create_model(name))
    x = _random_input(1, 3, 96, 64)
    with torch.no_grad():
        expected = model(x)
        _assert_visible(expected)
        torch._dynamo.reset()  # each variant compiles afresh, not as a recompile of the last
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), expected, atol=1e-4, rtol=1e-4)


def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(ValueError, match="v3_large_1.0.*v2_1.0"):
        mobilenetv3.create_model("v3_huge_1.0")
    with pytest.raises(ValueError, match="depth_multiplier must be > 0"):
        mobilenetv3.create_model("v3_large", depth_multiplier=0)
    with pytest.raises(TypeError, match="unknown create_model option"):
        mobilenetv3.create_model("v3_large_1.0", squeeze=True)


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (torch.zeros(3, 224, 224), ValueError, r"\[N, 3, H, W\].*x\[None\]"),
        (torch.zeros(1, 224, 224, 3), ValueError, r"permute"),
        (torch.zeros(1, 1, 224, 224), ValueError, r"got shape \(1, 1, 224, 224\)"),
        (torch.zeros(1, 3, 224, 224, dtype=torch.uint8), TypeError, r"floating-point.*127.5"),
    ],
)
def test_bad_input_gets_one_clear_error(x, error, message):
    model = mobilenetv3.create_model("v3_small_1.0").eval()
    with pytest.raises(error, match=message):
        model(x)
