"""Official-format checkpoints into the model: outputs of the original TF-slim graph to float
precision (reference.npz holds what TF computed with the same variables)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import mobilenetv3
from mobilenetv3.weights.loading import WeightsError, load_slim_state, read_slim_state

SIZES = ["224x224", "160x160", "225x193"]
GROUPS = [("v3_large_1.0", "plain"), ("v3_small_1.0", "plain"), ("v3_small_1.0", "ema")]


def _fixture(shared, variant):
    return shared / "reference" / "slim" / variant


@pytest.fixture(scope="module")
def references(shared):
    variants = ("v3_large_1.0", "v3_small_1.0")
    return {v: dict(np.load(_fixture(shared, v) / "reference.npz")) for v in variants}


@pytest.mark.parametrize(("variant", "group"), GROUPS)
def test_outputs_match_slim(variant, group, shared, references):
    reference = references[variant]
    model = mobilenetv3.create_model(
        weights=_fixture(shared, variant) / "model.ckpt", use_ema=group == "ema"
    )
    assert model.variant.name == variant  # inferred from the checkpoint
    for size in SIZES:
        x = torch.from_numpy(reference[f"input_{size}"]).permute(0, 3, 1, 2)
        with torch.no_grad():
            endpoints = model.forward_endpoints(x)
        key = f"{group}_{size}"
        logits = endpoints["Logits"].numpy()
        np.testing.assert_allclose(logits, reference[f"{key}/Logits"], atol=1e-4, rtol=0)
        assert (logits.argmax(1) == reference[f"{key}/Logits"].argmax(1)).all()
        pool = reference[f"{key}/global_pool"].reshape(2, -1)
        np.testing.assert_allclose(endpoints["global_pool"].numpy(), pool, atol=1e-4, rtol=0)
        layers = [k for k in reference if k.startswith(f"{key}/layer_") and k.count("/") == 1]
        assert layers
        for name in layers:
            expected = reference[name].astype(np.float32)
            got = endpoints[name.split("/")[1]].permute(0, 2, 3, 1).numpy()
            # the fixture stores block outputs in float16: half a float16 step of tolerance
            np.testing.assert_allclose(got, expected, atol=2e-3, rtol=1e-3, err_msg=name)


def test_ema_is_the_default_and_differs_from_plain(shared, references):
    prefix = _fixture(shared, "v3_small_1.0") / "model.ckpt"
    x = torch.from_numpy(references["v3_small_1.0"]["input_224x224"]).permute(0, 3, 1, 2)
    with torch.no_grad():
        ema = mobilenetv3.create_model("v3_small_1.0", weights=prefix)(x).numpy()
    plain_ref = references["v3_small_1.0"]["plain_224x224/Logits"]
    np.testing.assert_allclose(ema, references["v3_small_1.0"]["ema_224x224/Logits"], atol=1e-4)
    assert np.abs(ema - plain_ref).max() > 0.1


@pytest.mark.parametrize("form", ["prefix", "index", "folder"])
def test_checkpoint_path_forms(form, shared):
    folder = _fixture(shared, "v3_large_1.0")
    path = {"prefix": folder / "model.ckpt", "index": folder / "model.ckpt.index", "folder": folder}
    model = mobilenetv3.create_model(weights=path[form])
    assert model.variant.name == "v3_large_1.0"
    assert model.load_report["unexpected"] == ["global_step"]


def test_1000_classes_drop_background(shared, references):
    prefix = _fixture(shared, "v3_large_1.0") / "model.ckpt"
    model = mobilenetv3.create_model(weights=prefix, num_classes=1000)
    x = torch.from_numpy(references["v3_large_1.0"]["input_224x224"]).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits = model(x).numpy()
    expected = references["v3_large_1.0"]["plain_224x224/Logits"][:, 1:]
    np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_a_missing_variable_fails(shared):
    state, _ = read_slim_state(_fixture(shared, "v3_large_1.0") / "model.ckpt")
    del state["MobilenetV3/expanded_conv_7/depthwise/BatchNorm/moving_variance"]
    model = mobilenetv3.create_model("v3_large_1.0")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError, match="expanded_conv_7/depthwise/BatchNorm/moving_variance"):
        load_slim_state(model, state)
    for key, value in model.state_dict().items():  # nothing half-loaded
        assert torch.equal(value, before[key]), key


def test_checkpoint_of_another_variant_names_it(shared):
    with pytest.raises(WeightsError, match="holds v3_small_1.0 weights, not v3_large_1.0"):
        mobilenetv3.create_model("v3_large_1.0", weights=_fixture(shared, "v3_small_1.0"))


def test_truncated_data_and_missing_index_fail_clearly(shared, tmp_path):
    src = _fixture(shared, "v3_small_1.0")
    shutil.copy(src / "model.ckpt.index", tmp_path / "model.ckpt.index")
    data = (src / "model.ckpt.data-00000-of-00001").read_bytes()
    (tmp_path / "model.ckpt.data-00000-of-00001").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated|past the end|shorter"):
        mobilenetv3.create_model(weights=tmp_path / "model.ckpt")
    (tmp_path / "model.ckpt.index").unlink()
    with pytest.raises(ValueError, match="index"):
        mobilenetv3.create_model(weights=tmp_path)


def test_safetensors_round_trip(shared, tmp_path, references):
    from mobilenetv3.commands.convert import run_convert

    source = _fixture(shared, "v3_small_1.0") / "model.ckpt"
    out = run_convert(source, tmp_path / "small.safetensors")
    model = mobilenetv3.create_model(weights=out)
    assert model.variant.name == "v3_small_1.0"
    x = torch.from_numpy(references["v3_small_1.0"]["input_160x160"]).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits = model(x).numpy()
    np.testing.assert_allclose(logits, references["v3_small_1.0"]["ema_160x160/Logits"], atol=1e-4)
    assert model.pretrained_info["preprocess"]["image_size"] == [224, 224]
    assert [p.name for p in tmp_path.iterdir()] == ["small.safetensors"]  # no temp files left
