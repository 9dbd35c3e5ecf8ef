"""`.safetensors` files: the sha256 written and verified, and every damaged or crafted header,
metadata value or tensor set refused with one WeightsError naming the file, before the model
is built from it."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import mobilenetv3
from mobilenetv3.weights.errors import WeightsError
from mobilenetv3.weights.safetensors_io import (
    load_safetensors,
    safetensors_metadata,
    save_safetensors,
    tensor_digest,
)

VARIANT = {"family": "v3_small", "depth_multiplier": 0.35,
           "finegrain_classification_mode": False, "min_depth": 8, "divisible_by": 8}  # fmt: skip


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return mobilenetv3.create_model("v3_small_0.35", num_classes=10)


@pytest.fixture(scope="module")
def tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _write(path: Path, tensors: dict[str, torch.Tensor], **meta: object) -> Path:
    """A file with `meta` on top of valid metadata (None drops a key), without a digest."""
    base = {"format": "mobilenetv3", "variant": json.dumps(VARIANT), "num_classes": "10"}
    base.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    save_file(tensors, str(path), metadata={k: v for k, v in base.items() if v != "null"})
    return path


def test_round_trip_writes_and_checks_the_digest(model, tensors, tmp_path: Path) -> None:
    path = save_safetensors(model, tmp_path / "m.safetensors", extra={"labels": list("abcdefghij")})
    meta = safetensors_metadata(path)
    assert meta["sha256"] == tensor_digest(tensors) and len(meta["sha256"]) == 64
    loaded = load_safetensors(path)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, tensors[key]), key
    data = bytearray(path.read_bytes())
    (header_len,) = struct.unpack_from("<Q", data)
    data[8 + header_len + 1000] ^= 0x01  # one bit of the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="m.safetensors: the tensor data does not match the sha"):
        load_safetensors(path)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"num_classes": 10**11}, r"metadata num_classes is '100000000000', expected an integer"),
        ({"num_classes": True}, "metadata num_classes is 'True'"),
        ({"variant": {**VARIANT, "min_depth": 10**6}}, "variant.min_depth is '1000000'"),
        ({"variant": {**VARIANT, "depth_multiplier": 1e6}}, "variant.depth_multiplier is '10"),
        ({"variant": {**VARIANT, "family": "v9"}}, "is not a known variant"),
        ({"variant": {"family": "v3_small"}}, "variant must hold exactly"),
        ({"variant": "{not json"}, "metadata 'variant' is not valid JSON"),
        ({"variant": None}, "metadata lacks 'variant'"),
        ({"preprocess": {"image_size": [100000, 100000]}},
         r"preprocess is invalid \(image_size .*100000"),
        ({"preprocess": {"kind": "nope"}}, "metadata preprocess is invalid"),
        ({"labels": [1, 2]}, "labels must be a list of class names"),
        ({"format": "other"}, "was not written by mobilenetv3"),
    ],
)
def test_bad_metadata_is_refused_before_building(tensors, tmp_path, meta, message) -> None:
    path = _write(tmp_path / "bad.safetensors", tensors, **meta)
    with pytest.raises(WeightsError, match=f"bad.safetensors.*{message}"):
        mobilenetv3.create_model(weights=path)


def test_tensors_not_fitting_the_metadata_are_refused(tensors, tmp_path: Path) -> None:
    missing = {k: v for k, v in tensors.items() if "features.3." not in k}
    extra = {**tensors, "surplus": torch.zeros(2)}
    wrong = {**tensors, "classifier.weight": torch.zeros(11, 1024)}
    for case, message in ((missing, "missing \\['"), (extra, "unexpected \\['surplus"),
                          (wrong, "other shapes \\['classifier.weight")):  # fmt: skip
        path = _write(tmp_path / "t.safetensors", case)
        with pytest.raises(WeightsError, match=f"t.safetensors does not fit .*{message}"):
            mobilenetv3.create_model(weights=path)


def test_non_finite_weights_name_the_tensor(tensors, tmp_path: Path) -> None:
    bad = {k: v.clone() for k, v in tensors.items()}
    name = next(k for k in bad if k.endswith("weight") and bad[k].is_floating_point())
    bad[name].view(-1)[0] = float("inf")
    path = _write(tmp_path / "inf.safetensors", bad)
    with pytest.raises(WeightsError, match=f"tensor {name} holds non-finite"):
        mobilenetv3.create_model(weights=path)


def test_header_longer_than_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b'{"__metadata__":{}}')
    with pytest.raises(WeightsError, match="short.safetensors is not a readable safetensors"):
        mobilenetv3.create_model(weights=path)
