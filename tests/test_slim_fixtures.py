"""Every family the ../shared fixtures leave out, against the original TF-slim code.

tests/fixtures/slim/ holds, per variant, a real `tf.train.Saver` checkpoint packed like a release
tarball and what TF computed with it (tools/fixtures/make_slim_fixtures.py ran the slim nets on
random weights that keep activations at unit scale). Inputs are regenerated from their seeds.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import mobilenetv3
from mobilenetv3.core import specs

FIXTURES = Path(__file__).parent / "fixtures" / "slim"
# V2, EdgeTPU, both detection tails, both minimalistic, 0.75 and 0.75 finegrain, a multiplier > 1
VARIANTS = [
    "v2_0.35", "edge_tpu_0.35", "v3_large_detection_0.35", "v3_small_detection_1.25",
    "v3_large_minimalistic_0.35", "v3_small_minimalistic_0.35", "v3_small_0.75",
    "v3_small_0.75_finegrain",
]  # fmt: skip


def test_every_family_has_an_outside_anchor():
    """Large and Small 1.0 have ../shared's fixtures (test_checkpoint_loading.py), the
    segmentation backbones DeepLab's LR-ASPP fixtures (test_heads_lraspp.py); the rest here."""
    elsewhere = {"v3_large", "v3_small", "v3_large_segmentation", "v3_small_segmentation"}
    covered = {specs.parse_variant(v).family for v in VARIANTS} | elsewhere
    assert covered == set(specs.FAMILIES)
    multipliers = {specs.parse_variant(v).depth_multiplier for v in VARIANTS}
    assert min(multipliers) < 1 < max(multipliers)


def _inputs(reference: np.lib.npyio.NpzFile) -> dict[str, torch.Tensor]:
    """The generator's inputs: uniform [-1, 1), NHWC batch 2, from each size's seed (NCHW here)."""
    seeds = json.loads(str(reference["meta_json"]))["input_seeds"]
    out = {}
    for key, seed in seeds.items():
        height, width = map(int, key.split("x"))
        x = np.random.default_rng(seed).uniform(-1.0, 1.0, (2, height, width, 3))
        out[key] = torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2)
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_outputs_match_slim(variant):
    reference = np.load(FIXTURES / f"{variant}.npz")
    model = mobilenetv3.create_model(weights=FIXTURES / f"{variant}.tgz")
    assert model.variant.name == variant  # inferred from the checkpoint's shapes
    for key, x in _inputs(reference).items():
        with torch.no_grad():
            endpoints = model.forward_endpoints(x)
        expected = reference[f"{key}/Logits"]
        assert expected.std() > 0.1, "the fixture's logits must be far from constant"
        scale = np.abs(expected).max()
        np.testing.assert_allclose(endpoints["Logits"].numpy(), expected, atol=1e-4 * scale, rtol=0)
        pool = reference[f"{key}/global_pool"].reshape(2, -1)
        np.testing.assert_allclose(endpoints["global_pool"].numpy(), pool, atol=1e-4 * scale)
        layers = [k.split("/")[1] for k in reference.files if k.startswith(f"{key}/layer_")]
        assert len(layers) >= 2
        for name in layers:
            expected = reference[f"{key}/{name}"].astype(np.float32)
            got = endpoints[name].permute(0, 2, 3, 1).numpy()
            # block outputs are stored in float16: half a float16 step of tolerance
            np.testing.assert_allclose(got, expected, atol=2e-3, rtol=1e-3, err_msg=name)


def test_checkpoint_prefix_loads_as_the_tarball(tmp_path):
    """The same weights through the plain checkpoint path (prefix of .index/.data files)."""
    with tarfile.open(FIXTURES / "v2_0.35.tgz") as tar:
        tar.extractall(tmp_path, filter="data")
    from_prefix = mobilenetv3.create_model(weights=tmp_path / "v2_0.35" / "model.ckpt")
    from_tar = mobilenetv3.create_model(weights=FIXTURES / "v2_0.35.tgz")
    assert from_prefix.variant == from_tar.variant
    for (name, a), b in zip(from_prefix.state_dict().items(), from_tar.state_dict().values(),
                            strict=True):  # fmt: skip
        assert torch.equal(a, b), name
